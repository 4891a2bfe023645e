export * from './error.js';
export * from './inspect-ready.js';
import type { RullamaErrorEvent } from './error.js';
import type { RullamaInspectReadyEvent } from './inspect-ready.js';

declare global {
  interface GlobalEventHandlersEventMap {
    'rullama-error': RullamaErrorEvent;
    'rullama-inspect-ready': RullamaInspectReadyEvent;
  }
}
