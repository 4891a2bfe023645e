import { RullamaError, throwIfAborted } from './errors.js';
import type { Gemma4Model } from './model/model.js';
import { SeededRandom, sampleToken, type SamplingOptions } from './sampling.js';
import type { Tokenizer } from './tokenizer/tokenizer.js';

export interface GenerateOptions extends SamplingOptions {
  /** Most tokens to generate (default 256). */
  maxTokens?: number;
  /** Token ids that end the answer (the chat template's stop tokens). */
  stopTokens?: readonly number[];
  /** Strings that end the answer; the text stops before them. */
  stopStrings?: readonly string[];
  signal?: AbortSignal;
}

export interface TokenEvent {
  id: number;
  /** Text this token completes (may be empty while a multi-byte character is incomplete). */
  text: string;
  logprob: number;
}

export interface GenerateStats {
  promptTokens: number;
  generatedTokens: number;
  prefillTokensPerSecond: number;
  decodeTokensPerSecond: number;
  timeToFirstTokenMs: number;
  stoppedBy: 'stop-token' | 'stop-string' | 'max-tokens';
  tokens: number[];
}

/**
 * Feeds `prompt` (token ids) to the model and yields generated tokens one by one; the return
 * value of the iterator holds the stats. Prefill covers only what is new: the model keeps its KV
 * cache between calls, so a follow-up turn passes just its own tokens.
 */
export async function* generate(
  model: Gemma4Model,
  tokenizer: Tokenizer,
  prompt: readonly number[],
  options: GenerateOptions = {},
): AsyncGenerator<TokenEvent, GenerateStats> {
  const maxTokens = options.maxTokens ?? 256;
  if (!Number.isInteger(maxTokens) || maxTokens < 1) throw new RullamaError('bad-argument', `maxTokens must be a positive integer, not ${maxTokens}`);
  const stopTokens = new Set(options.stopTokens ?? []);
  const stopStrings = options.stopStrings ?? [];
  const random = new SeededRandom(options.seed);
  const decoder = tokenizer.createStreamDecoder();
  const tokens: number[] = [];
  let text = '';
  let stoppedBy: GenerateStats['stoppedBy'] = 'max-tokens';

  const start = performance.now();
  let [logits] = await model.feed(prompt, { signal: options.signal });
  const prefillMs = performance.now() - start;
  let firstTokenMs = 0;
  for (let i = 0; i < maxTokens; i++) {
    throwIfAborted(options.signal);
    const { id, logprob } = sampleToken(logits!, options, random);
    if (i === 0) firstTokenMs = performance.now() - start;
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
      if (cut > before) yield { id, text: text.slice(before, cut), logprob };
      stoppedBy = 'stop-string';
      break;
    }
    yield { id, text: piece, logprob };
    if (i + 1 < maxTokens) [logits] = await model.feed([id], { signal: options.signal });
  }
  const decodeMs = performance.now() - start - firstTokenMs;
  return {
    promptTokens: prompt.length,
    generatedTokens: tokens.length,
    prefillTokensPerSecond: prompt.length / (prefillMs / 1000),
    decodeTokensPerSecond: tokens.length > 1 ? (tokens.length - 1) / (decodeMs / 1000) : 0,
    timeToFirstTokenMs: firstTokenMs,
    stoppedBy,
    tokens,
  };
}
