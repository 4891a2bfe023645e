import { RullamaError } from './errors.js';

/** How the next token is chosen. Temperature 0 (the default) is greedy. */
export interface SamplingOptions {
  temperature?: number;
  /** Keep only the k most likely tokens (0 = no limit). */
  topK?: number;
  /** Keep the smallest set of tokens whose probability reaches p (1 = no limit). */
  topP?: number;
  /** Drop tokens less likely than minP × the top token's probability (0 = off). */
  minP?: number;
  /** Seed of the random choice: the same seed gives the same text. */
  seed?: number;
}

/** A small seeded generator (xorshift128+ folded to doubles in [0, 1)). */
export class SeededRandom {
  private s0: number;
  private s1: number;

  constructor(seed = Date.now()) {
    this.s0 = (seed >>> 0) ^ 0x9e3779b9 || 1;
    this.s1 = Math.imul(seed >>> 0, 0x85ebca6b) ^ 0xc2b2ae35 || 2;
  }

  next(): number {
    let x = this.s0;
    const y = this.s1;
    this.s0 = y;
    x ^= x << 23;
    x ^= x >>> 17;
    x ^= y ^ (y >>> 26);
    this.s1 = x;
    return ((this.s0 + this.s1) >>> 0) / 2 ** 32;
  }
}

export interface SampledToken {
  id: number;
  /** Natural log of the token's probability under the unfiltered distribution (temperature 1). */
  logprob: number;
}

/** Picks the next token from one position's logits. */
export function sampleToken(logits: Float32Array, options: SamplingOptions, random: SeededRandom): SampledToken {
  const { temperature = 0, topK = 0, topP = 1, minP = 0 } = options;
  if (!(temperature >= 0) || !(topP > 0 && topP <= 1) || !(minP >= 0 && minP <= 1) || !(topK >= 0)) {
    throw new RullamaError('bad-argument', `invalid sampling options ${JSON.stringify(options)}`);
  }
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
  let logSum = 0;
  const max = logits[best]!;
  for (let i = 0; i < logits.length; i++) logSum += Math.exp(logits[i]! - max);
  const logprobOf = (id: number) => logits[id]! - max - Math.log(logSum);
  if (temperature === 0) return { id: best, logprob: logprobOf(best) };

  // Candidates: top-k (or all), sorted by logit, then softmax at the temperature.
  let ids = Array.from(logits.keys());
  ids.sort((a, b) => logits[b]! - logits[a]!);
  if (topK > 0) ids = ids.slice(0, topK);
  const weights = ids.map((id) => Math.exp((logits[id]! - max) / temperature));
  const total = weights.reduce((a, b) => a + b, 0);
  let keep = ids.length;
  let cumulative = 0;
  for (let i = 0; i < ids.length; i++) {
    const p = weights[i]! / total;
    if (minP > 0 && p < minP * (weights[0]! / total)) { keep = i; break; }
    cumulative += p;
    if (cumulative >= topP) { keep = i + 1; break; }
  }
  keep = Math.max(1, keep);
  const kept = weights.slice(0, keep).reduce((a, b) => a + b, 0);
  let r = random.next() * kept;
  for (let i = 0; i < keep; i++) {
    r -= weights[i]!;
    if (r <= 0) return { id: ids[i]!, logprob: logprobOf(ids[i]!) };
  }
  return { id: ids[keep - 1]!, logprob: logprobOf(ids[keep - 1]!) };
}
