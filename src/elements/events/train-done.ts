export interface RullamaTrainDoneDetail {
  /** Optimiser steps done (all of them). */
  steps: number;
  /** The last step's training loss, and the last validation loss (null without validation data). */
  loss: number;
  val_loss: number | null;
  /** Training tokens per second of the last run (since the last start or resume). */
  tokens_per_s: number;
  /** The loss curve: one entry per step (`val_loss` where it was measured). */
  history: { step: number; loss: number; val_loss: number | null }[];
}

/** Fired by <rullama-trainer> when the last step is done. */
export class RullamaTrainDoneEvent extends CustomEvent<RullamaTrainDoneDetail> {
  static readonly type = 'rullama-train-done';
  constructor(detail: RullamaTrainDoneDetail) {
    super(RullamaTrainDoneEvent.type, { detail, bubbles: true, composed: true });
  }
}
