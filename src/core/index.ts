/**
 * The rullama core: no DOM, no globals. Runs in pages, workers and Node (pass the WebGPU entry
 * point in: `navigator.gpu`, or `create([])` from the `webgpu` package).
 */
export * from './errors.js';
export * from './gguf/index.js';
export * from './quant/index.js';
export * from './tokenizer/index.js';
export * from './chat/index.js';
export * from './ollama/index.js';
export * from './lora/index.js';
export * from './train/index.js';
export { openDevice, type OpenDeviceOptions, type OpenedDevice } from './gpu/device.js';
export { readGemma4Config, type Gemma4Config, type LayerConfig } from './model/config.js';
export { resolveTensors, type ModelTensors, type LayerTensors } from './model/tensors.js';
export { ReferenceModel } from './reference/forward.js';
export { Gemma4Model, type LoadModelOptions, type FeedOptions } from './model/model.js';
export type { KernelProfile } from './model/gpu-forward.js';
export { generate, uniformAt, type GenerateOptions, type GenerateStats, type TokenEvent } from './generate.js';
export { Engine, Conversation, Generation, type ModelSource, type LoadProgress, type EngineLoadOptions, type ChatOptions, type GenerationResult } from './engine.js';
export { SNAPSHOT_VERSION } from './model/snapshot.js';
export type { AppliedAdapter } from './model/lora-weights.js';
export { sampleToken, sampleTokenAt, samplingDistribution, checkSamplingOptions, SeededRandom, type SamplingOptions, type SampledToken, type SamplingDistribution } from './sampling.js';
export { GpuSampler, type GpuSample, type GpuSamplerBinding } from './gpu/sampler.js';
