import { RullamaError, throwIfAborted } from './errors.js';
import type { Gemma4Model, PendingSample } from './model/model.js';
import { checkSamplingOptions, usesPenalties, type SamplingOptions } from './sampling.js';
import type { Tokenizer } from './tokenizer/tokenizer.js';

export interface GenerateOptions extends SamplingOptions {
  /** Most tokens to generate (default 256). */
  maxTokens?: number;
  /** Token ids that end the answer (the chat template's stop tokens). */
  stopTokens?: readonly number[];
  /** Strings that end the answer; the text stops before them. */
  stopStrings?: readonly string[];
  /** How many recent tokens the repetition, presence and frequency penalties look at (default 64). */
  penaltyWindow?: number;
  signal?: AbortSignal;
}

export interface TokenEvent {
  id: number;
  /** Text this token completes (may be empty while a multi-byte character is incomplete). */
  text: string;
  /** Natural log of the token's probability under the model (temperature 1, no filters). */
  logprob: number;
}

export interface GenerateStats {
  /** Tokens of the whole prompt (conversation so far). */
  promptTokens: number;
  /** Of those, tokens already in the KV cache from an earlier call (not computed again). */
  reusedTokens: number;
  /** Of those, tokens this call ran through the model. */
  prefilledTokens: number;
  generatedTokens: number;
  prefillTokensPerSecond: number;
  decodeTokensPerSecond: number;
  timeToFirstTokenMs: number;
  stoppedBy: 'stop-token' | 'stop-string' | 'max-tokens' | 'context-full';
  /** Generated token ids (without the stop token). */
  tokens: number[];
  /** Generated text (cut before a stop string). */
  text: string;
}

const DEFAULT_PENALTY_WINDOW = 64;

/**
 * The random number for the token at `position` of a sequence: a hash of (seed, position), so the
 * same seed gives the same text, and a conversation restored from a snapshot continues with
 * exactly the draws it would have had.
 */
export function uniformAt(seed: number, position: number): number {
  const lo = seed >>> 0;
  const hi = Math.floor(seed / 2 ** 32) >>> 0;
  let h = Math.imul(lo ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(hi + 0x7f4a7c15, 0x27d4eb2f) ^ Math.imul(position + 0x632be5ab, 0xc2b2ae35);
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  h = Math.imul(h, 0x846ca68b);
  h ^= h >>> 16;
  return (h >>> 0) / 2 ** 32;
}

/** Length of the longest common prefix of two token lists. */
function commonPrefix(a: readonly number[], b: readonly number[]): number {
  let n = 0;
  while (n < a.length && n < b.length && a[n] === b[n]) n++;
  return n;
}

/**
 * Generates a continuation of `prompt`, the WHOLE token sequence so far (for a chat: the rendered
 * conversation). The model's KV cache is reused: only the part of `prompt` after what the cache
 * already holds is run through the model, so a follow-up turn costs just its new tokens.
 * Yields tokens one by one; the iterator's return value holds the stats.
 */
export async function* generate(
  model: Gemma4Model,
  tokenizer: Tokenizer,
  prompt: readonly number[],
  options: GenerateOptions = {},
  /** Runs each model step; an engine passes its queue so conversations take turns on the GPU. */
  schedule: <T>(step: () => Promise<T>) => Promise<T> = (step) => step(),
): AsyncGenerator<TokenEvent, GenerateStats> {
  const maxTokens = options.maxTokens ?? 256;
  if (!Number.isInteger(maxTokens) || maxTokens < 1) throw new RullamaError('bad-argument', `maxTokens must be a positive integer, not ${maxTokens}`);
  if (prompt.length === 0) throw new RullamaError('bad-argument', 'the prompt is empty');
  if (prompt.length >= model.contextSize) {
    throw new RullamaError('context-overflow', `the prompt of ${prompt.length} tokens leaves no room in the context of ${model.contextSize} tokens`);
  }
  const window = options.penaltyWindow ?? DEFAULT_PENALTY_WINDOW;
  const seed = options.seed ?? Math.floor(Math.random() * 2 ** 32);
  const stopTokens = new Set(options.stopTokens ?? []);
  const stopStrings = options.stopStrings ?? [];
  const decoder = tokenizer.createStreamDecoder();
  const tokens: number[] = [];
  let text = '';
  let stoppedBy: GenerateStats['stoppedBy'] = 'max-tokens';

  // Reuse the cache: keep the common prefix (at least one token must be fed to get logits).
  const start = performance.now();
  let reused = Math.min(commonPrefix(model.tokens, prompt), prompt.length - 1);
  if (!model.rewind(reused)) {
    model.reset();
    reused = 0;
  }
  const prefilled = prompt.length - reused;
  // Without penalties (whose window needs each token on the CPU), each decode step is chained on
  // the GPU where the model allows it: submitted before the token before it is read.
  const chain = model.chainable && !usesPenalties(checkSamplingOptions(options, model.config.vocabSize));
  const recentWith = (pending: readonly number[]) => (window > 0 ? [...model.tokens.slice(-window), ...pending].slice(-window) : []);
  let prefillMs = 0;
  let firstTokenMs = 0;
  let current: PendingSample;
  /** Where a chained step fed the current token ahead, before the answer continued past it (else −1). */
  let aheadAt = -1;
  try {
    throwIfAborted(options.signal);
    const pending = prompt.slice(reused);
    const t0 = performance.now();
    current = await schedule(() => model.startSample(pending, options, recentWith(pending), uniformAt(seed, prompt.length), options.signal));
    for (let i = 0; ; i++) {
      let next: PendingSample | null = null;
      if (chain && i + 1 < maxTokens && model.position + 1 < model.contextSize) {
        const from: PendingSample = current;
        const r = uniformAt(seed, model.position + 1);
        aheadAt = from.position;
        next = await schedule(() => model.chainSample(from, options, r, options.signal));
      }
      const { id, logprob } = await current.read();
      if (i === 0) {
        prefillMs = performance.now() - t0;
        firstTokenMs = performance.now() - start;
      }
      if (stopTokens.has(id)) {
        stoppedBy = 'stop-token';
        break;
      }
      tokens.push(id);
      const piece = decoder.push(id);
      const before = text.length;
      text += piece;
      const hit = stopStrings.map((s) => text.indexOf(s, Math.max(0, before - s.length + 1))).filter((at) => at >= 0);
      if (hit.length > 0) {
        const cut = Math.min(...hit);
        text = text.slice(0, cut);
        if (cut > before) yield { id, text: text.slice(before), logprob };
        stoppedBy = 'stop-string';
        break;
      }
      yield { id, text: piece, logprob };
      if (i + 1 >= maxTokens) break;
      throwIfAborted(options.signal);
      if (!next) {
        if (model.position + 1 >= model.contextSize) {
          stoppedBy = 'context-full';
          break;
        }
        const r = uniformAt(seed, model.position + 1);
        next = await schedule(() => model.startSample([id], options, recentWith([id]), r, options.signal));
      }
      current = next;
      aheadAt = -1;
    }
  } finally {
    // Drop a token fed ahead that the answer does not continue from (as if it was never fed).
    if (aheadAt >= 0 && model.position > aheadAt && !model.rewind(aheadAt)) model.reset();
  }
  const decodeMs = performance.now() - start - firstTokenMs;
  return {
    promptTokens: prompt.length,
    reusedTokens: reused,
    prefilledTokens: prefilled,
    generatedTokens: tokens.length,
    prefillTokensPerSecond: prefillMs > 0 ? prefilled / (prefillMs / 1000) : 0,
    decodeTokensPerSecond: tokens.length > 1 ? (tokens.length - 1) / (decodeMs / 1000) : 0,
    timeToFirstTokenMs: firstTokenMs,
    stoppedBy,
    tokens,
    text,
  };
}
