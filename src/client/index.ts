export { RullamaClient, ModelRef, RemoteConversation, configureRullama, type ModelInput, type ClientOptions, type AcquireOptions, type AdapterInput } from './client.js';
export { RemoteGeneration } from './generation.js';
export { canPickFolder, grantOllamaFolder, pickOllamaFolder, rememberedOllamaFolder, setOllamaFolder } from './ollama-folder.js';
export { getConversation, putConversation, deleteConversation, SAVED_CONVERSATION_VERSION, type SavedConversation } from './storage.js';
export type { LoadProgressDetail, ModelInfo, SourceSpec, AdaptersResult } from '../worker/protocol.js';
export { RemoteTrainer, TrainedAdapter, type TrainerOptions } from './training.js';
export type { TrainJobInfo, WireTrainProgress as TrainProgressDetail, WireTrainResult as TrainResultDetail } from '../worker/protocol.js';
