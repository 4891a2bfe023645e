/** rullama: Gemma 4 on WebGPU. The core (no DOM) and the Web Components. */
export * from './core/index.js';
export * from './elements/index.js';
export * from './web/index.js';
