/** rullama: Gemma 4 on WebGPU. The core (no DOM), the model cache, the page-side client of the engine worker, and the Web Components. */
export * from './core/index.js';
export * from './web/index.js';
export * from './client/index.js';
export * from './elements/index.js';
