export * from './error.js';
export * from './inspect-ready.js';
export * from './load-progress.js';
export * from './ready.js';
export * from './send.js';
export * from './token.js';
export * from './message.js';
export * from './state.js';
export * from './cancel.js';
export * from './train-progress.js';
export * from './train-done.js';
export * from './adapter-applied.js';
import type { RullamaCancelEvent } from './cancel.js';
import type { RullamaErrorEvent } from './error.js';
import type { RullamaInspectReadyEvent } from './inspect-ready.js';
import type { RullamaLoadProgressEvent } from './load-progress.js';
import type { RullamaMessageEvent } from './message.js';
import type { RullamaReadyEvent } from './ready.js';
import type { RullamaSendEvent } from './send.js';
import type { RullamaStateEvent } from './state.js';
import type { RullamaTokenEvent } from './token.js';
import type { RullamaTrainProgressEvent } from './train-progress.js';
import type { RullamaTrainDoneEvent } from './train-done.js';
import type { RullamaAdapterAppliedEvent } from './adapter-applied.js';

declare global {
  interface GlobalEventHandlersEventMap {
    'rullama-error': RullamaErrorEvent;
    'rullama-inspect-ready': RullamaInspectReadyEvent;
    'rullama-load-progress': RullamaLoadProgressEvent;
    'rullama-ready': RullamaReadyEvent;
    'rullama-send': RullamaSendEvent;
    'rullama-token': RullamaTokenEvent;
    'rullama-message': RullamaMessageEvent;
    'rullama-state': RullamaStateEvent;
    'rullama-cancel': RullamaCancelEvent;
    'rullama-train-progress': RullamaTrainProgressEvent;
    'rullama-train-done': RullamaTrainDoneEvent;
    'rullama-adapter-applied': RullamaAdapterAppliedEvent;
  }
  interface HTMLElementEventMap {
    'rullama-error': RullamaErrorEvent;
    'rullama-inspect-ready': RullamaInspectReadyEvent;
    'rullama-load-progress': RullamaLoadProgressEvent;
    'rullama-ready': RullamaReadyEvent;
    'rullama-send': RullamaSendEvent;
    'rullama-token': RullamaTokenEvent;
    'rullama-message': RullamaMessageEvent;
    'rullama-state': RullamaStateEvent;
    'rullama-cancel': RullamaCancelEvent;
    'rullama-train-progress': RullamaTrainProgressEvent;
    'rullama-train-done': RullamaTrainDoneEvent;
    'rullama-adapter-applied': RullamaAdapterAppliedEvent;
  }
}
