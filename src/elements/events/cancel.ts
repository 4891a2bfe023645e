/** Why a generation was cancelled. */
export type RullamaCancelReason = 'stop' | 'reset' | 'superseded' | 'disconnected' | 'model-changed';

/** The detail of `rullama-cancel`. */
export interface RullamaCancelDetail {
  reason: RullamaCancelReason;
  /** The answer's text so far (kept in `messages` when not empty). */
  partial: string;
}

/** Fired by <rullama-chat> when a running answer is cancelled (stop(), Escape, reset, a new send). */
export class RullamaCancelEvent extends CustomEvent<RullamaCancelDetail> {
  static readonly type = 'rullama-cancel';
  constructor(detail: RullamaCancelDetail) {
    super(RullamaCancelEvent.type, { detail, bubbles: true, composed: true });
  }
}
