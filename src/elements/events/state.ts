/**
 * What a chat is doing: 'idle' (no model yet, or ready for a message), 'loading' (the model),
 * 'prefill' (reading the prompt), 'generating' (writing the answer), 'error'.
 */
export type RullamaChatState = 'idle' | 'loading' | 'prefill' | 'generating' | 'error';

/** Fired by <rullama-chat> when its state changes. */
export class RullamaStateEvent extends CustomEvent<{ state: RullamaChatState; previous: RullamaChatState }> {
  static readonly type = 'rullama-state';
  constructor(state: RullamaChatState, previous: RullamaChatState) {
    super(RullamaStateEvent.type, { detail: { state, previous }, bubbles: true, composed: true });
  }
}
