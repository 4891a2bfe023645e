import type { ModelInfo } from '../../worker/protocol.js';

export type { ModelInfo };

/** Fired by <rullama-chat> and <rullama-model> when the model is loaded: `{model}` summarises it. */
export class RullamaReadyEvent extends CustomEvent<{ model: ModelInfo }> {
  static readonly type = 'rullama-ready';
  constructor(model: ModelInfo) {
    super(RullamaReadyEvent.type, { detail: { model }, bubbles: true, composed: true });
  }
}
