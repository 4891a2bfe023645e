import { RullamaError, throwIfAborted } from '../errors.js';
import { readGGUF, readTensorBytes } from '../gguf/read.js';
import { dequantize } from '../quant/dequant.js';
import type { ByteSource } from '../gguf/source.js';
import type { GGUFFile } from '../gguf/types.js';
import { readGemma4Config, type Gemma4Config } from './config.js';
import { GpuForward } from './gpu-forward.js';
import { PleRows } from './ple-rows.js';
import { resolveTensors } from './tensors.js';
import { GpuWeights, type UploadProgress } from './weights.js';

export interface LoadModelOptions {
  /** Context size in tokens (default: the smaller of the model's and 4,096). */
  contextSize?: number;
  /** Prompt tokens per prefill block (default 128). */
  prefillChunk?: number;
  /** Keep a [prefillChunk][vocab] logits buffer so every position's logits can be read (tests, `rullama logits`). */
  allLogits?: boolean;
  signal?: AbortSignal;
  onProgress?: (p: UploadProgress) => void;
}

const DEFAULT_CONTEXT = 4096;
const DEFAULT_PREFILL_CHUNK = 128;

/**
 * A Gemma 4 model on the GPU with one conversation's state (position and KV cache): feed it
 * tokens, read logits. Tokenising, sampling and the chat loop sit on top of this.
 */
export class Gemma4Model {
  /** Tokens already in the KV cache. */
  position = 0;

  private constructor(
    readonly file: GGUFFile,
    readonly config: Gemma4Config,
    private readonly weights: GpuWeights,
    private readonly forward: GpuForward,
    private readonly ple: PleRows | null,
  ) {}

  static async load(device: GPUDevice, source: ByteSource, options: LoadModelOptions = {}): Promise<Gemma4Model> {
    const file = await readGGUF(source, { signal: options.signal });
    const config = readGemma4Config(file);
    const tensors = resolveTensors(file, config);
    const weights = await GpuWeights.upload(device, source, tensors, { signal: options.signal, onProgress: options.onProgress });
    try {
      const contextSize = options.contextSize ?? Math.min(config.contextLength, DEFAULT_CONTEXT);
      const maxTokens = Math.min(options.prefillChunk ?? DEFAULT_PREFILL_CHUNK, contextSize);
      const ropeFactors = tensors.ropeFreqs
        ? dequantize(tensors.ropeFreqs.type, await readTensorBytes(source, tensors.ropeFreqs), tensors.ropeFreqs.elementCount)
        : null;
      const forward = await GpuForward.create(device, config, tensors, weights, ropeFactors, { contextSize, maxTokens, allLogits: options.allLogits });
      const ple = tensors.pleTokenEmbd ? new PleRows(source, tensors.pleTokenEmbd) : null;
      return new Gemma4Model(file, config, weights, forward, ple);
    } catch (e) {
      weights.destroy();
      throw e;
    }
  }

  get contextSize(): number {
    return this.forward.options.contextSize;
  }

  /** GPU bytes in use: weights, KV cache and activations. */
  get gpuBytes(): number {
    return this.weights.bytes + this.forward.bytes;
  }

  /** Forgets the conversation (the KV cache is simply overwritten from position 0). */
  reset(): void {
    this.position = 0;
  }

  /**
   * Runs `tokens` through the model in prefill blocks, continuing the conversation. Returns the
   * logits of the last token, or with `all` every token's (one Float32Array per token).
   */
  async feed(tokens: readonly number[], options: { all?: boolean; signal?: AbortSignal } = {}): Promise<Float32Array[]> {
    const { vocabSize } = this.config;
    for (const t of tokens) {
      if (!Number.isInteger(t) || t < 0 || t >= vocabSize) throw new RullamaError('bad-token', `token id ${t} is outside the vocabulary (0..${vocabSize - 1})`);
    }
    if (tokens.length === 0) throw new RullamaError('bad-argument', 'no tokens to feed');
    if (this.position + tokens.length > this.contextSize) {
      throw new RullamaError('context-overflow', `${this.position} + ${tokens.length} tokens exceed the context of ${this.contextSize}`);
    }
    const chunk = this.forward.options.maxTokens;
    const out: Float32Array[] = [];
    for (let i = 0; i < tokens.length; i += chunk) {
      throwIfAborted(options.signal);
      const block = tokens.slice(i, i + chunk);
      const rows = this.ple ? await this.ple.rows(block, options.signal) : null;
      const last = i + chunk >= tokens.length;
      this.forward.encode(Uint32Array.from(block), this.position, rows as Float32Array<ArrayBuffer> | null, options.all);
      this.position += block.length;
      if (options.all) {
        const logits = await this.forward.readLogits(block.length);
        for (let t = 0; t < block.length; t++) out.push(logits.slice(t * vocabSize, (t + 1) * vocabSize));
      } else if (last) {
        out.push(await this.forward.readLogits(1));
      }
    }
    return out;
  }

  destroy(): void {
    this.forward.destroy();
    this.weights.destroy();
  }
}
