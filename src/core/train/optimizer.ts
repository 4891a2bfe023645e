import { RullamaError } from '../errors.js';

export interface AdamWOptions {
  /** Peak learning rate (the schedule scales it). */
  learningRate: number;
  beta1?: number;
  beta2?: number;
  epsilon?: number;
  /** Decoupled weight decay (AdamW): θ ← θ − lr·wd·θ, separate from the gradient. */
  weightDecay?: number;
}

/** The optimiser state that a checkpoint keeps. */
export interface AdamWState {
  step: number;
  m: Float32Array[];
  v: Float32Array[];
}

/**
 * AdamW with bias correction and decoupled weight decay over a list of float32 parameter arrays
 * (for LoRA: each adapted tensor's A and B). Updates in place. The arithmetic is float64 per
 * element and the moments are stored as float32, as the GPU optimiser will.
 */
export class AdamW {
  readonly beta1: number;
  readonly beta2: number;
  readonly epsilon: number;
  readonly weightDecay: number;
  private state: AdamWState;

  constructor(readonly params: readonly Float32Array[], readonly options: AdamWOptions) {
    this.beta1 = options.beta1 ?? 0.9;
    this.beta2 = options.beta2 ?? 0.999;
    this.epsilon = options.epsilon ?? 1e-8;
    this.weightDecay = options.weightDecay ?? 0;
    const ok = (x: number, lo: number, hi: number) => Number.isFinite(x) && x >= lo && x < hi;
    if (!ok(options.learningRate, 0, Infinity) || !ok(this.beta1, 0, 1) || !ok(this.beta2, 0, 1) || !(this.epsilon > 0) || !ok(this.weightDecay, 0, Infinity)) {
      throw new RullamaError('bad-argument', `invalid AdamW options ${JSON.stringify(options)}`);
    }
    this.state = { step: 0, m: params.map((p) => new Float32Array(p.length)), v: params.map((p) => new Float32Array(p.length)) };
  }

  get step(): number {
    return this.state.step;
  }

  /** One update with `grads` (same shapes as the parameters) at learning rate `lr`. */
  update(grads: readonly Float32Array[], lr = this.options.learningRate): void {
    if (grads.length !== this.params.length || grads.some((g, i) => g.length !== this.params[i]!.length)) {
      throw new RullamaError('bad-argument', 'gradients do not match the parameters');
    }
    const t = ++this.state.step;
    const { beta1: b1, beta2: b2, epsilon: eps, weightDecay: wd } = this;
    const c1 = 1 - b1 ** t;
    const c2 = 1 - b2 ** t;
    for (let k = 0; k < this.params.length; k++) {
      const p = this.params[k]!;
      const g = grads[k]!;
      const m = this.state.m[k]!;
      const v = this.state.v[k]!;
      for (let i = 0; i < p.length; i++) {
        const gi = g[i]!;
        m[i] = b1 * m[i]! + (1 - b1) * gi;
        v[i] = b2 * v[i]! + (1 - b2) * gi * gi;
        const update = m[i]! / c1 / (Math.sqrt(v[i]! / c2) + eps);
        p[i] = p[i]! - lr * (update + wd * p[i]!);
      }
    }
  }

  /** A copy of the state (moments and step) for a checkpoint. */
  saveState(): AdamWState {
    return { step: this.state.step, m: this.state.m.map((a) => a.slice()), v: this.state.v.map((a) => a.slice()) };
  }

  loadState(state: AdamWState): void {
    const fits = (list: Float32Array[]) => list.length === this.params.length && list.every((a, i) => a.length === this.params[i]!.length);
    if (!Number.isInteger(state.step) || state.step < 0 || !fits(state.m) || !fits(state.v)) {
      throw new RullamaError('bad-argument', 'the optimiser state does not match these parameters');
    }
    this.state = { step: state.step, m: state.m.map((a) => a.slice()), v: state.v.map((a) => a.slice()) };
  }
}

export interface ScheduleOptions {
  /** Steps of linear warm-up from 0 to the peak. */
  warmupSteps?: number;
  totalSteps: number;
  /** Decay after warm-up: cosine (default), linear, or constant. */
  decay?: 'cosine' | 'linear' | 'constant';
  /** The learning rate at the end, as a fraction of the peak (default 0). */
  minRatio?: number;
}

/** The learning-rate multiplier for step `step` (0-based): warm-up, then decay to minRatio. */
export function learningRateFactor(step: number, options: ScheduleOptions): number {
  const warmup = options.warmupSteps ?? 0;
  const minRatio = options.minRatio ?? 0;
  if (step < warmup) return (step + 1) / warmup;
  const span = Math.max(1, options.totalSteps - warmup);
  const progress = Math.min(1, (step - warmup) / span);
  switch (options.decay ?? 'cosine') {
    case 'constant':
      return 1;
    case 'linear':
      return minRatio + (1 - minRatio) * (1 - progress);
    default:
      return minRatio + (1 - minRatio) * 0.5 * (1 + Math.cos(Math.PI * progress));
  }
}

/** Scales the gradients in place so their global L2 norm is at most `maxNorm`; returns the norm before. */
export function clipByGlobalNorm(grads: readonly Float32Array[], maxNorm: number): number {
  let sum = 0;
  for (const g of grads) for (const x of g) sum += x * x;
  const norm = Math.sqrt(sum);
  if (!Number.isFinite(norm)) throw new RullamaError('bad-argument', 'a gradient is not finite (the step is skipped; lower the learning rate)');
  if (maxNorm > 0 && norm > maxNorm) {
    const scale = maxNorm / norm;
    for (const g of grads) for (let i = 0; i < g.length; i++) g[i]! *= scale;
  }
  return norm;
}
