/** The attributes of <rullama-trainer> as the worker's training options. */
import { RullamaError } from '../../core/errors.js';
import { LORA_TARGETS, type LoraTarget } from '../../core/lora/adapter.js';
import type { WireTrainOptions } from '../../worker/protocol.js';
import type { RullamaTrainer } from './trainer.js';

/** `targets="q,v"`: the LoRA target names (an unknown one is an error, not ignored). */
export function parseTargets(text: string | null): LoraTarget[] | undefined {
  if (!text || !text.trim()) return undefined;
  const names = text.split(/[\s,]+/).filter(Boolean);
  for (const n of names) if (!(n in LORA_TARGETS)) throw new RullamaError('bad-argument', `unknown LoRA target "${n}" (use ${Object.keys(LORA_TARGETS).join(', ')})`);
  return names as LoraTarget[];
}

const defined = <T extends object>(o: T): T => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined && v !== null && !Number.isNaN(v))) as T;

export function trainOptions(el: RullamaTrainer): WireTrainOptions {
  return defined({
    rank: el.rank,
    alpha: el.alpha,
    learningRate: el.learningRate,
    steps: el.steps,
    epochs: el.epochs,
    batchSize: el.batchSize,
    maxLength: el.maxLength,
    targets: parseTargets(el.targets),
    seed: el.seed,
    validationFraction: el.validationFraction,
    warmupSteps: el.warmupSteps,
    checkpoint: el.checkpoint || undefined,
    checkpointEvery: el.checkpointEvery,
  });
}
