/**
 * llama.cpp (node-llama-cpp 3.21.1, CPU) as an independent judge of next-token distributions.
 *
 * node-llama-cpp does not expose raw logits, but `LlamaContextSequence.controlledEvaluate` with
 * `generateNext: {probabilities: true}` returns, for a greedy sampler (temperature 0, no
 * penalties), the softmax of the logits over the WHOLE vocabulary: the greedy chain does not
 * truncate the candidate list, and the addon computes `expf(logit − max) / Σ` in float32 for every
 * entry. With Gemma 4's soft-cap of 30 the logits span at most 60, so no probability underflows
 * (e^−60 ≈ 1e−26 is a normal float32) and `log p` recovers `logit − logsumexp(logits)` to float32
 * precision for all 262,144 entries. A zero probability (only possible without a soft-cap) comes
 * back as −Infinity; callers should treat such entries as absent.
 *
 * Memory stays bounded: the prompt is evaluated a few positions per call, and each position's
 * Map (262,144 entries) is turned at once into one Float32Array of log-probabilities.
 *
 * Numerics worth knowing when reading the figures: node-llama-cpp's default flash attention
 * ("auto") is on for the CPU; with fewer than 64 query rows per batch (our chunks of 8, and every
 * single-token step) ggml's CPU flash attention accumulates attention·V in f16, while batches of
 * 64+ rows take a tiled f32 path. The KV cache is f16, and quantized matmuls round activations
 * to 8 bits. Cost: about 0.25 s per position on one core pair, dominated by moving the
 * 262,144-entry distribution into JavaScript.
 */
import type { Llama, LlamaContext, LlamaContextSequence, LlamaModel, Token } from 'node-llama-cpp';

export interface OracleOptions {
  /** Context size (tokens); the prompt plus any generation must fit. Default 256. */
  contextSize?: number;
  /** Positions evaluated per controlledEvaluate call (bounds the Maps alive at once). Default 8. */
  chunk?: number;
  /** CPU threads for llama.cpp. Default 2. */
  threads?: number;
  /** LoRA adapter GGUFs to apply, each with its scale. */
  lora?: { filePath: string; scale?: number }[];
}

/** Top-two summary of a distribution given as log-probabilities (or logits). */
export interface TopTwo {
  best: number;
  second: number;
  /** value[best] − value[second]: for log-probabilities this equals the logit margin. */
  margin: number;
}

export function topTwo(v: ArrayLike<number>): TopTwo {
  let best = -1;
  let second = -1;
  for (let i = 0; i < v.length; i++) {
    const x = v[i]!;
    if (best < 0 || x > v[best]!) {
      second = best;
      best = i;
    } else if (second < 0 || x > v[second]!) {
      second = i;
    }
  }
  return { best, second, margin: v[best]! - v[second]! };
}

interface Next {
  token: number;
  logProbs?: Float32Array;
}

/** One model loaded in llama.cpp; every query starts from an empty sequence. */
export class LlamaOracle {
  private constructor(
    readonly model: LlamaModel,
    private readonly context: LlamaContext,
    private readonly sequence: LlamaContextSequence,
    private readonly options: Required<OracleOptions>,
  ) {}

  static async load(llama: Llama, modelPath: string, options: OracleOptions = {}): Promise<LlamaOracle> {
    const o: Required<OracleOptions> = { contextSize: 256, chunk: 8, threads: 2, lora: [], ...options };
    const model = await llama.loadModel({ modelPath });
    try {
      const context = await model.createContext({ contextSize: o.contextSize, batchSize: Math.max(o.chunk, 8), threads: o.threads, sequences: 1, ...(o.lora.length ? { lora: { adapters: o.lora } } : {}) });
      return new LlamaOracle(model, context, context.getSequence(), o);
    } catch (e) {
      await model.dispose();
      throw e;
    }
  }

  get vocabSize(): number {
    return this.model.fileInfo.metadata.tokenizer.ggml.tokens.length;
  }

  /** Log-probabilities of the next token after each prefix of `tokens` (one vector per position). */
  async logProbs(tokens: readonly number[]): Promise<Float32Array[]> {
    this.checkFits(tokens.length);
    await this.sequence.clearHistory();
    const out: Float32Array[] = [];
    for (let at = 0; at < tokens.length; at += this.options.chunk) {
      for (const next of await this.evaluate(tokens.slice(at, at + this.options.chunk), true)) out.push(next.logProbs!);
    }
    return out;
  }

  /** Log-probabilities of the next token after the whole of `tokens` (the prefix costs no outputs). */
  async nextLogProbs(tokens: readonly number[]): Promise<Float32Array> {
    this.checkFits(tokens.length);
    await this.prefill(tokens.slice(0, -1));
    return (await this.evaluate(tokens.slice(-1), true))[0]!.logProbs!;
  }

  /**
   * llama.cpp's own greedy continuation of `prompt` (its sampler at temperature 0): `steps`
   * tokens. Cheap: no distribution crosses into JavaScript.
   */
  async greedy(prompt: readonly number[], steps: number): Promise<number[]> {
    this.checkFits(prompt.length + steps);
    await this.prefill(prompt.slice(0, -1));
    const tokens: number[] = [];
    let last = prompt[prompt.length - 1]!;
    for (let s = 0; s < steps; s++) {
      last = (await this.evaluate([last], false))[0]!.token;
      tokens.push(last);
    }
    return tokens;
  }

  async dispose(): Promise<void> {
    await this.context.dispose();
    await this.model.dispose();
  }

  private checkFits(n: number): void {
    if (n === 0) throw new Error('an empty prompt has no next-token distribution');
    if (n > this.options.contextSize) throw new Error(`${n} tokens exceed the oracle's context (${this.options.contextSize})`);
  }

  /** Empties the sequence and evaluates `tokens` without outputs. */
  private async prefill(tokens: readonly number[]): Promise<void> {
    await this.sequence.clearHistory();
    for (let at = 0; at < tokens.length; at += 64) await this.sequence.controlledEvaluate(tokens.slice(at, at + 64) as Token[]);
  }

  /**
   * Appends `tokens` to the sequence; after each, llama.cpp's greedy choice (its own sampler,
   * temperature 0) and, when asked, the log-probability vector it chose from.
   */
  private async evaluate(tokens: readonly number[], probabilities: boolean): Promise<Next[]> {
    const V = this.vocabSize;
    const input = tokens.map((t) => [t as Token, { generateNext: { token: true, probabilities, options: { temperature: 0 } } }] as const);
    const results = await this.sequence.controlledEvaluate(input as never);
    return tokens.map((_, i) => {
      const next = results[i]?.next;
      if (next?.token == null) throw new Error(`llama.cpp returned no next token for position ${i}`);
      if (!probabilities) return { token: next.token };
      const probs = next.probabilities;
      if (!probs || probs.size !== V) throw new Error(`llama.cpp returned ${probs?.size ?? 0} probabilities, expected the whole vocabulary (${V})`);
      const lp = new Float32Array(V);
      for (const [token, p] of probs) lp[token] = Math.log(p);
      return { token: next.token, logProbs: lp };
    });
  }
}

/**
 * One-shot form: llama.cpp's next-token log-probabilities after every position of `tokens`
 * (include the BOS yourself), for the GGUF at `modelPath`.
 */
export async function llamaLogProbs(llama: Llama, modelPath: string, tokens: readonly number[], options: OracleOptions = {}): Promise<Float32Array[]> {
  const oracle = await LlamaOracle.load(llama, modelPath, { contextSize: Math.max(256, tokens.length), ...options });
  try {
    return await oracle.logProbs(tokens);
  } finally {
    await oracle.dispose();
  }
}
