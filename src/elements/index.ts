export { RullamaInspect, INSPECT_STRINGS } from './inspect/inspect.js';
export { defineElements } from './define.js';
export * from './events/index.js';
