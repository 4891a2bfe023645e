/** Browser and worker code that needs navigator.storage, OPFS or fetch (not part of the DOM-free core). */
export {
  cachedModel,
  listCachedModels,
  deleteCachedModel,
  type CachedModelOptions,
  type CachedModelProgress,
  type CachedModelInfo,
} from './model-cache.js';
export { saveCheckpoint, loadCheckpoint, deleteCheckpoint } from './checkpoints.js';
