// Browser-safe exports. The Node folder adapter (fromNodePath, defaultOllamaModelsPath) is in
// ./node-dir.js and is deliberately not re-exported here.
export { checkPathSegments, type StoreDirectory, type StoreEntry } from './directory.js';
export { fromDirectoryHandle } from './handle-dir.js';
export {
  OllamaMediaType,
  blobFileName,
  isSha256Digest,
  parseOllamaManifest,
  type OllamaLayer,
  type OllamaManifest,
} from './manifest.js';
export {
  OLLAMA_DEFAULT_HOST,
  OLLAMA_DEFAULT_NAMESPACE,
  OLLAMA_DEFAULT_TAG,
  checkOllamaReference,
  ollamaDisplayName,
  ollamaFullName,
  parseOllamaName,
  sameOllamaModel,
  type OllamaModelReference,
} from './name.js';
export { Sha256, sha256, sha256Hex } from './sha256.js';
export {
  OllamaStore,
  type OllamaModelEntry,
  type OllamaProgress,
  type OllamaScan,
  type OllamaStoreProblem,
  type OpenLayerOptions,
  type ReadLayerTextOptions,
  type ResolvedOllamaModel,
} from './store.js';
