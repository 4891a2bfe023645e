/** Node-only parts: local files and Ollama's models folder by path. */
export { nodeFileSource } from './core/gguf/node-source.js';
export { fromNodePath, defaultOllamaModelsPath, ollamaModelsPathCandidates, openNodeOllamaStore } from './core/ollama/node-dir.js';

import { Engine, type EngineLoadOptions } from './core/engine.js';
import { nodeFileSource as openFile } from './core/gguf/node-source.js';

/** Loads a GGUF file by path; the file is closed when the engine is disposed. */
export async function loadEngineFromFile(path: string, options: EngineLoadOptions = {}): Promise<Engine> {
  return Engine.load(await openFile(path), { ...options, closeSource: true });
}
