/**
 * Choosing the next token from one position's logits: the CPU sampler, and the reference that the
 * GPU sampler (src/core/gpu/sampler.ts) implements bit for bit where it can (scores, thresholds) and
 * to float rounding where it cannot (sums of weights).
 *
 * Semantics, for a logits row of V values, the options below, a penalty window (the last N tokens,
 * passed by the caller) and a uniform r in [0, 1):
 *
 *  1. Scores (float32, every step rounded to float32 as the GPU does): s_i = logit_i + bias_i; for
 *     each distinct token i that occurs c ≥ 1 times in the window: if repetitionPenalty ≠ 1,
 *     s_i = s_i > 0 ? s_i / rep : s_i · rep; then s_i −= c·frequencyPenalty + presencePenalty
 *     (that amount rounded to float32 once). The window and the bias become one short list of
 *     distinct {id, count, bias} entries ({@link samplingEntries}); every other token keeps its logit.
 *  2. temperature = 0: greedy, the lowest index of the largest score. No random number is used.
 *  3. Otherwise z_i = s_i / T. Kept set K = every token, then
 *       top-k (k > 0): z_i ≥ the k-th largest z (ties at the threshold are all kept; k ≥ V keeps all);
 *       min-p (> 0):   z_i ≥ max z + ln(minP);
 *       top-p (< 1):   with p = softmax of z over what is kept so far, z_i ≥ t for the largest t whose
 *                      kept mass of {z ≥ t} is ≥ topP.
 *     The draw: the first kept token in index order whose running sum of exp(z_i − max z) exceeds
 *     r × (total kept weight), else the last kept token.
 *  4. logprob: the log-softmax of the raw logits (temperature 1, no bias, no penalties) at the id.
 *
 * Logits must be finite (the model's final softcap makes them so).
 *
 * Because T > 0, every comparison in z is made in s with the threshold multiplied through by T
 * (z_i ≥ max z + ln minP ⇔ s_i ≥ max s + T·ln minP, evaluated as float32(max s + float32(T·ln minP)));
 * top-k and top-p thresholds are score values; the weights are exp((s_i − max s)/T). Keeping the
 * comparisons on float32 scores lets the GPU reproduce the kept set exactly.
 */
import { RullamaError } from './errors.js';

/** How the next token is chosen. Temperature 0 (the default) is greedy. */
export interface SamplingOptions {
  temperature?: number;
  /** Keep only the k most likely tokens, ties at the k-th included (0 = no limit). */
  topK?: number;
  /** Keep the most likely tokens whose probability (over what top-k and min-p kept) reaches p (1 = no limit). */
  topP?: number;
  /** Drop tokens less likely than minP × the top token's probability (0 = off). */
  minP?: number;
  /** Divides positive (multiplies negative) scores of tokens in the penalty window (1 = off). */
  repetitionPenalty?: number;
  /** Subtracted once from the score of every distinct token in the penalty window (0 = off). */
  presencePenalty?: number;
  /** Subtracted from a token's score once per occurrence in the penalty window (0 = off). */
  frequencyPenalty?: number;
  /** Added to the logits of these token ids before anything else. */
  logitBias?: Readonly<Record<number, number>> | ReadonlyMap<number, number>;
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
  /** Natural log of the token's probability under the unfiltered distribution (temperature 1, no bias, no penalties). */
  logprob: number;
}

/** Options with defaults filled in and checked (see {@link checkSamplingOptions}). */
export interface CheckedSamplingOptions {
  readonly temperature: number;
  readonly topK: number;
  readonly topP: number;
  readonly minP: number;
  readonly repetitionPenalty: number;
  readonly presencePenalty: number;
  readonly frequencyPenalty: number;
  /** Token id → bias, ids checked against the vocabulary. */
  readonly bias: ReadonlyMap<number, number>;
}

/** One token whose score differs from its logit: in the penalty window (count ≥ 1) and/or biased. */
export interface SamplingEntry {
  readonly id: number;
  /** Occurrences in the penalty window (0 for a token that is only biased). */
  readonly count: number;
  /** The bias added to its logit (0 when none). */
  readonly bias: number;
}

function bad(message: string): never {
  throw new RullamaError('bad-argument', message);
}

/**
 * Fills in defaults and checks the options: temperature ≥ 0 and finite, topK a non-negative
 * integer, 0 < topP ≤ 1, 0 ≤ minP ≤ 1, repetitionPenalty > 0, finite penalties, finite biases on
 * integer ids inside [0, vocabSize). Throws RullamaError('bad-argument').
 */
export function checkSamplingOptions(options: SamplingOptions, vocabSize: number): CheckedSamplingOptions {
  const {
    temperature = 0,
    topK = 0,
    topP = 1,
    minP = 0,
    repetitionPenalty = 1,
    presencePenalty = 0,
    frequencyPenalty = 0,
  } = options;
  if (typeof temperature !== 'number' || !(temperature >= 0) || !Number.isFinite(temperature)) bad(`temperature must be a finite number ≥ 0, not ${temperature}`);
  if (typeof topK !== 'number' || !Number.isSafeInteger(topK) || topK < 0) bad(`topK must be a non-negative integer, not ${topK}`);
  if (typeof topP !== 'number' || !(topP > 0 && topP <= 1)) bad(`topP must be in (0, 1], not ${topP}`);
  if (typeof minP !== 'number' || !(minP >= 0 && minP <= 1)) bad(`minP must be in [0, 1], not ${minP}`);
  if (typeof repetitionPenalty !== 'number' || !(repetitionPenalty > 0) || !Number.isFinite(repetitionPenalty)) {
    bad(`repetitionPenalty must be a finite number > 0, not ${repetitionPenalty}`);
  }
  if (typeof presencePenalty !== 'number' || !Number.isFinite(presencePenalty)) bad(`presencePenalty must be finite, not ${presencePenalty}`);
  if (typeof frequencyPenalty !== 'number' || !Number.isFinite(frequencyPenalty)) bad(`frequencyPenalty must be finite, not ${frequencyPenalty}`);
  const bias = new Map<number, number>();
  const raw = options.logitBias;
  if (raw !== undefined && raw !== null) {
    const pairs: Iterable<readonly [number | string, number]> = raw instanceof Map ? raw.entries() : Object.entries(raw);
    for (const [key, value] of pairs) {
      const id = typeof key === 'number' ? key : key.trim() === '' ? NaN : Number(key);
      if (!Number.isInteger(id) || id < 0 || id >= vocabSize) bad(`logitBias names token ${String(key)}, outside the vocabulary of ${vocabSize}`);
      if (typeof value !== 'number' || !Number.isFinite(value)) bad(`logitBias of token ${id} must be finite, not ${value}`);
      bias.set(id, (bias.get(id) ?? 0) + value);
    }
  }
  return { temperature, topK, topP, minP, repetitionPenalty, presencePenalty, frequencyPenalty, bias };
}

/** Whether any penalty is on (then the recent tokens matter). */
export function usesPenalties(options: CheckedSamplingOptions): boolean {
  return options.repetitionPenalty !== 1 || options.presencePenalty !== 0 || options.frequencyPenalty !== 0;
}

/**
 * The distinct tokens whose score differs from their logit, sorted by id: every token of the
 * penalty window (with its count; only when a penalty is on) and every biased token. Window ids
 * must be integers in [0, vocabSize).
 */
export function samplingEntries(options: CheckedSamplingOptions, recent: readonly number[], vocabSize: number): SamplingEntry[] {
  const counts = new Map<number, number>();
  const penalised = usesPenalties(options);
  for (const id of recent) {
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) bad(`penalty window holds token ${id}, outside the vocabulary of ${vocabSize}`);
    if (penalised) counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  const ids = new Set<number>([...counts.keys(), ...options.bias.keys()]);
  return [...ids].sort((a, b) => a - b).map((id) => ({ id, count: counts.get(id) ?? 0, bias: options.bias.get(id) ?? 0 }));
}

const f32 = Math.fround;

/** The score of one entry's token from its logit, in float32 steps (the GPU does the same). */
export function entryScore(logit: number, entry: SamplingEntry, options: CheckedSamplingOptions): number {
  let s = f32(logit + f32(entry.bias));
  if (entry.count > 0) {
    const rep = f32(options.repetitionPenalty);
    if (rep !== 1) s = s > 0 ? f32(s / rep) : f32(s * rep);
    s = f32(s - penaltyAmount(entry, options));
  }
  return s;
}

/** c·frequencyPenalty + presencePenalty as float32 (0 for a token outside the window). */
export function penaltyAmount(entry: SamplingEntry, options: CheckedSamplingOptions): number {
  return entry.count > 0 ? f32(entry.count * options.frequencyPenalty + options.presencePenalty) : 0;
}

/** T·ln(minP) as float32: the min-p threshold is float32(max s + this). */
export function minPOffset(options: CheckedSamplingOptions): number {
  return f32(options.temperature * Math.log(options.minP));
}

/** The kept set and weights of one sampling step (see the module comment). */
export interface SamplingDistribution {
  /** Scores after bias and penalties (float32). */
  readonly scores: Float32Array;
  /** The largest score, and the lowest index holding it (the greedy choice). */
  readonly maxScore: number;
  readonly argmax: number;
  /**
   * The smallest kept score: token i is kept iff scores[i] ≥ threshold (−Infinity when no filter
   * is on; the max score when greedy, where only `argmax` is kept).
   */
  readonly threshold: number;
  /** Kept token ids in index order, and their weights exp((s − max s)/T) (float64). */
  readonly ids: Uint32Array;
  readonly weights: Float64Array;
  /** Sum of `weights`. */
  readonly total: number;
  /**
   * How close top-p was to choosing another threshold: |topP·W − (kept mass at the neighbouring
   * thresholds)| / W at its nearest (Infinity when top-p is off). A GPU that sums the mass in another
   * order may choose differently when this is below its rounding (about 1e-6).
   */
  readonly topPMargin: number;
  /** log-softmax of the raw logits at `id`. */
  logprob(id: number): number;
}

/** Scores s (float32) for a row: a copy of the logits with the entries' tokens rescored. */
export function samplingScores(logits: Float32Array, options: CheckedSamplingOptions, entries: readonly SamplingEntry[]): Float32Array {
  const scores = Float32Array.from(logits);
  for (const e of entries) scores[e.id] = entryScore(logits[e.id]!, e, options);
  return scores;
}

function rawLogSumExp(logits: Float32Array): number {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i]! > max) max = logits[i]!;
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i]! - max);
  return max + Math.log(sum);
}

/**
 * The distribution one sampling step draws from (temperature 0 gives the greedy token alone).
 * Checks the options like {@link sampleToken}.
 */
export function samplingDistribution(logits: Float32Array, options: SamplingOptions, recent: readonly number[] = []): SamplingDistribution {
  const V = logits.length;
  if (V === 0) bad('empty logits');
  const o = checkSamplingOptions(options, V);
  const scores = samplingScores(logits, o, samplingEntries(o, recent, V));
  let argmax = 0;
  for (let i = 1; i < V; i++) if (scores[i]! > scores[argmax]!) argmax = i;
  const maxScore = scores[argmax]!;
  const lse = rawLogSumExp(logits);
  const logprob = (id: number) => logits[id]! - lse;
  if (o.temperature === 0) {
    return { scores, maxScore, argmax, threshold: maxScore, ids: Uint32Array.of(argmax), weights: Float64Array.of(1), total: 1, topPMargin: Infinity, logprob };
  }
  const T = o.temperature;
  let threshold = -Infinity;
  if (o.topK > 0 && o.topK < V) {
    const sorted = Float32Array.from(scores).sort();
    threshold = Math.max(threshold, sorted[V - o.topK]!);
  }
  if (o.minP > 0) threshold = Math.max(threshold, f32(maxScore + minPOffset(o)));
  const weightOf = (s: number) => Math.exp((s - maxScore) / T);
  let topPMargin = Infinity;
  if (o.topP < 1) {
    // Kept values, largest first, grouped by value: the threshold is the first group at which the
    // cumulative mass reaches topP·W.
    const kept: number[] = [];
    for (let i = 0; i < V; i++) if (scores[i]! >= threshold) kept.push(scores[i]!);
    const values = Float32Array.from(kept).sort().reverse();
    let total = 0;
    for (const v of values) total += weightOf(v);
    const target = o.topP * total;
    let cumulative = 0;
    for (let j = 0; j < values.length; ) {
      const v = values[j]!;
      const before = cumulative;
      while (j < values.length && values[j] === v) cumulative += weightOf(values[j++]!);
      if (cumulative >= target) {
        threshold = v;
        topPMargin = Math.min(target - before, cumulative - target) / total;
        break;
      }
    }
  }
  let n = 0;
  for (let i = 0; i < V; i++) if (scores[i]! >= threshold) n++;
  const ids = new Uint32Array(n);
  const weights = new Float64Array(n);
  let total = 0;
  for (let i = 0, j = 0; i < V; i++) {
    if (scores[i]! >= threshold) {
      ids[j] = i;
      total += weights[j++] = weightOf(scores[i]!);
    }
  }
  return { scores, maxScore, argmax, threshold, ids, weights, total, topPMargin, logprob };
}

/** The token a uniform r ∈ [0, 1) picks from a distribution: the first whose running weight exceeds r·W. */
export function drawFrom(distribution: SamplingDistribution, r: number): number {
  const { ids, weights, total } = distribution;
  const target = r * total;
  let running = 0;
  for (let j = 0; j < ids.length; j++) {
    running += weights[j]!;
    if (running > target) return ids[j]!;
  }
  return ids[ids.length - 1]!;
}

/** One sampling step with a given uniform r ∈ [0, 1) (ignored when greedy). */
export function sampleTokenAt(logits: Float32Array, options: SamplingOptions, recent: readonly number[], r: number): SampledToken {
  if (!(r >= 0 && r < 1)) bad(`the uniform draw must be in [0, 1), not ${r}`);
  const distribution = samplingDistribution(logits, options, recent);
  const id = distribution.ids.length === 1 ? distribution.ids[0]! : drawFrom(distribution, r);
  return { id, logprob: distribution.logprob(id) };
}

/**
 * Picks the next token from one position's logits. `recent` is the penalty window (the last N
 * tokens, oldest first; only counts matter). A random number is drawn only when temperature > 0.
 */
export function sampleToken(logits: Float32Array, options: SamplingOptions, random: SeededRandom, recent: readonly number[] = []): SampledToken {
  const temperature = options.temperature ?? 0;
  const r = temperature > 0 ? random.next() : 0;
  return sampleTokenAt(logits, options, recent, r);
}
