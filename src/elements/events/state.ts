/**
 * What a chat is doing: 'idle' (no model yet, or ready for a message), 'loading' (the model),
 * 'prefill' (reading the prompt), 'generating' (writing the answer), 'error'.
 */
export type RullamaChatState = 'idle' | 'loading' | 'prefill' | 'generating' | 'error';

/**
 * What a trainer is doing: 'idle' (not started), 'loading' (the model), 'preparing' (reading the
 * dataset, setting up the job), 'training', 'paused', 'done', 'error'.
 */
export type RullamaTrainerState = 'idle' | 'loading' | 'preparing' | 'training' | 'paused' | 'done' | 'error';

/** Fired by <rullama-chat> and <rullama-trainer> when their state changes. */
export class RullamaStateEvent<S extends string = RullamaChatState> extends CustomEvent<{ state: S; previous: S }> {
  static readonly type = 'rullama-state';
  constructor(state: S, previous: S) {
    super(RullamaStateEvent.type, { detail: { state, previous }, bubbles: true, composed: true });
  }
}
