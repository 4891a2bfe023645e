import type { ChatMessage } from '../../core/chat/index.js';
import type { GenerateStats } from '../../core/generate.js';

/** The detail of `rullama-message`. */
export interface RullamaMessageDetail {
  /** The finished assistant message (as added to `messages`). */
  message: ChatMessage;
  /** Speed and token counts of the answer: prefill/decode tokens per second, time to first token… */
  stats: GenerateStats;
}

/** Fired by <rullama-chat> when an answer is complete. */
export class RullamaMessageEvent extends CustomEvent<RullamaMessageDetail> {
  static readonly type = 'rullama-message';
  constructor(message: ChatMessage, stats: GenerateStats) {
    super(RullamaMessageEvent.type, { detail: { message, stats }, bubbles: true, composed: true });
  }
}
