/** Node-only parts: local files and Ollama's models folder by path. */
export { nodeFileSource } from './core/gguf/node-source.js';
export { fromNodePath, defaultOllamaModelsPath, ollamaModelsPathCandidates, openNodeOllamaStore } from './core/ollama/node-dir.js';
