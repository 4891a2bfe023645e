import type { TrainPhase } from '../../core/train/trainer.js';

export interface RullamaTrainProgressDetail {
  /** Optimiser steps done, and in all. */
  step: number;
  total: number;
  /** What the GPU is doing: 'forward', 'loss', 'backward', 'optimizer', 'validation'. */
  phase: TrainPhase;
  /** The layer of the forward or backward pass. */
  layer: number;
  /** Mean training loss of the last finished step, and the latest validation loss (when known). */
  loss: number | null;
  val_loss: number | null;
  /** Training tokens per second (since the last start or resume). */
  tokens_per_s: number;
  /** Seconds to the last step (estimated; 0 until a step has finished). */
  eta: number;
}

/** Fired by <rullama-trainer> while it trains: at most about ten times a second, and at the end of every step. */
export class RullamaTrainProgressEvent extends CustomEvent<RullamaTrainProgressDetail> {
  static readonly type = 'rullama-train-progress';
  constructor(detail: RullamaTrainProgressDetail) {
    super(RullamaTrainProgressEvent.type, { detail, bubbles: true, composed: true });
  }
}
