export * from './types.js';
export * from './source.js';
export { readGGUF, readTensorBytes, findTensor, metaString, metaNumber, type ReadGGUFOptions } from './read.js';
export { summarizeGGUF, jsonValue, type GGUFSummary } from './inspect.js';
export * from './write.js';
