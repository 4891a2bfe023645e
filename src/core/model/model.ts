import { RullamaError, throwIfAborted } from '../errors.js';
import { sha256 } from '../ollama/sha256.js';
import { GpuSampler } from '../gpu/sampler.js';
import { checkSamplingOptions, usesPenalties, type SampledToken, type SamplingOptions } from '../sampling.js';
import { readGGUF, readTensorBytes } from '../gguf/read.js';
import { dequantize } from '../quant/dequant.js';
import type { ByteSource } from '../gguf/source.js';
import type { GGUFFile, GGUFTensorInfo } from '../gguf/types.js';
import { readGemma4Config, type Gemma4Config } from './config.js';
import { PipelineCache } from '../gpu/pipelines.js';
import { GpuForward, type KernelProfile } from './gpu-forward.js';
import { GpuLoraSet, stateHash, type AppliedAdapter } from './lora-weights.js';
import { PleRows } from './ple-rows.js';
import { resolveTensors, type ModelTensors } from './tensors.js';
import { decodeSnapshot, encodeSnapshot } from './snapshot.js';
import { GpuWeights, type UploadProgress } from './weights.js';

export interface LoadModelOptions {
  /** Context size in tokens (default: the smaller of the model's and 4,096). */
  contextSize?: number;
  /** Prompt tokens per prefill block (default 128). */
  prefillChunk?: number;
  /** Keep a [prefillChunk][vocab] logits buffer so every position's logits can be read (tests, `rullama logits`). */
  allLogits?: boolean;
  /** The decode kernels, 'gpu' or 'software' (see KernelProfile; default: by device). */
  kernelProfile?: KernelProfile;
  /**
   * Keep the per-layer-embedding table on the GPU (E2B: 4.7 GB more GPU memory; default: no, its
   * rows are read on the CPU). Then a decode step can start before the CPU knows its token, so
   * decoding overlaps the CPU's work with the GPU's (see {@link Gemma4Model.chainSample}).
   */
  perLayerTableOnGpu?: boolean;
  /**
   * Prefill's Q4_K and Q6_K matmuls round their input to 8 bits (in blocks of 32) and multiply in integers,
   * as llama.cpp does: about 1.5 to 2 times faster on GPUs with fast dot4I8Packed (an H200), and
   * the logits of a prompt differ from the f32 ones by that rounding (decode is unchanged).
   * Default: off. Needs WGSL's `packed_4x8_integer_dot_product`.
   */
  int8Prefill?: boolean;
  signal?: AbortSignal;
  onProgress?: (p: UploadProgress) => void;
  /** The source's header, when the caller has read it already. */
  file?: GGUFFile;
}

export interface FeedOptions {
  /** Cancels the work; a block of several tokens stops within one layer's work. */
  signal?: AbortSignal;
  /** Which logits to read back: the last token's (default), every token's, or none (a sampler reads them on the GPU). */
  logits?: 'last' | 'all' | 'none';
  /** Records more GPU work into the last block's command encoder (the sampler). */
  after?: (encoder: GPUCommandEncoder) => void;
}

const DEFAULT_CONTEXT = 4096;
const DEFAULT_PREFILL_CHUNK = 128;

/** What every session of one loaded model shares: the file, the weights on the GPU, the pipelines. */
interface SharedModel {
  readonly file: GGUFFile;
  readonly config: Gemma4Config;
  readonly tensors: ModelTensors;
  readonly device: GPUDevice;
  readonly weights: GpuWeights;
  readonly ple: PleRows | null;
  readonly ropeFactors: Float32Array | null;
  readonly pipelines: PipelineCache;
  readonly layoutHash: Uint8Array;
  /** Sessions alive; the weights go with the last one. */
  sessions: number;
}

export interface SessionOptions {
  /** Context size in tokens (default: the smaller of the model's and 4,096). */
  contextSize?: number;
  /** Prompt tokens per prefill block (default 128). */
  prefillChunk?: number;
  /** Keep a [prefillChunk][vocab] logits buffer so every position's logits can be read. */
  allLogits?: boolean;
  /** The decode kernels, 'gpu' or 'software' (see KernelProfile; default: by device). */
  kernelProfile?: KernelProfile;
  /** Prefill's Q4_K and Q6_K matmuls in 8-bit integers (see {@link LoadModelOptions.int8Prefill}). */
  int8Prefill?: boolean;
}

/**
 * A Gemma 4 model on the GPU with one conversation's state (the tokens in its KV cache): feed it
 * tokens, read logits, rewind, save and restore the state. More conversations on the same weights
 * come from `newSession`. Tokenising, sampling and the chat loop sit on top of this.
 */
export class Gemma4Model {
  /** The tokens in the KV cache, in order. */
  private history: number[] = [];
  /** Sliding layers' rings hold no position before this one (after a restore). */
  private ringFloor = 0;
  private lostReason: string | null = null;
  private destroyed = false;
  /** Made on first use: tests and `rullama logits` never sample. */
  private sampler: Promise<GpuSampler> | null = null;
  /** The last sample encoded, while nothing else has been fed since: a chained step may follow it. */
  private lastSample: PendingSample | null = null;
  /** One past the highest position written to the KV cache since the last reset or restore. */
  private written = 0;
  /** Counts rewinds, resets and restores: a chained token read late fills its place only if none came between. */
  private epoch = 0;
  private lora: GpuLoraSet | null = null;

  private constructor(
    private readonly shared: SharedModel,
    private readonly forward: GpuForward,
  ) {
    shared.sessions++;
    shared.device.lost.then((info) => {
      this.lostReason = info.message || info.reason || 'unknown';
    });
  }

  get file(): GGUFFile {
    return this.shared.file;
  }

  get config(): Gemma4Config {
    return this.shared.config;
  }

  /** Identifies the model (shapes, dtypes and a fingerprint of its norm weights) in snapshots. */
  get layoutHash(): Uint8Array {
    return this.shared.layoutHash;
  }

  private get device(): GPUDevice {
    return this.shared.device;
  }

  /** @internal What the trainer builds on: the shared weights, per-layer rows and pipelines. */
  get parts(): Pick<SharedModel, 'file' | 'config' | 'tensors' | 'device' | 'weights' | 'ple' | 'ropeFactors' | 'pipelines'> {
    return this.shared;
  }

  private get ple(): PleRows | null {
    return this.shared.ple;
  }

  static async load(device: GPUDevice, source: ByteSource, options: LoadModelOptions = {}): Promise<Gemma4Model> {
    const file = options.file ?? (await readGGUF(source, { signal: options.signal }));
    const config = readGemma4Config(file);
    const tensors = resolveTensors(file, config);
    const weights = await GpuWeights.upload(device, source, tensors, {
      signal: options.signal, onProgress: options.onProgress, perLayerTable: options.perLayerTableOnGpu,
    });
    try {
      const ropeFactors = tensors.ropeFreqs
        ? dequantize(tensors.ropeFreqs.type, await readTensorBytes(source, tensors.ropeFreqs), tensors.ropeFreqs.elementCount)
        : null;
      const shared: SharedModel = {
        file, config, tensors, device, weights, ropeFactors,
        ple: tensors.pleTokenEmbd ? new PleRows(source, tensors.pleTokenEmbd) : null,
        pipelines: new PipelineCache(device),
        layoutHash: await modelLayoutHash(file, source, [tensors.outputNorm, tensors.layers[0]!.attnNorm]),
        sessions: 0,
      };
      return await Gemma4Model.session(shared, options);
    } catch (e) {
      weights.destroy();
      throw e;
    }
  }

  /** Another conversation on the same weights, with its own KV cache and activations. */
  async newSession(options: SessionOptions = {}): Promise<Gemma4Model> {
    this.checkDevice();
    if (this.destroyed) throw new RullamaError('bad-argument', 'this model was destroyed');
    return Gemma4Model.session(this.shared, options);
  }

  private static async session(shared: SharedModel, options: SessionOptions): Promise<Gemma4Model> {
    const { device, config } = shared;
    const contextSize = options.contextSize ?? Math.min(config.contextLength, DEFAULT_CONTEXT);
    const maxTokens = Math.min(options.prefillChunk ?? DEFAULT_PREFILL_CHUNK, contextSize);
    device.pushErrorScope('out-of-memory');
    let forward: GpuForward;
    let oom: GPUError | null;
    try {
      forward = await GpuForward.create(
        device, config, shared.tensors, shared.weights, shared.ropeFactors, { contextSize, maxTokens, allLogits: options.allLogits, kernelProfile: options.kernelProfile, int8Prefill: options.int8Prefill }, shared.pipelines,
      );
    } finally {
      oom = await device.popErrorScope();
    }
    if (oom) {
      forward.destroy();
      throw new RullamaError('oom', `the GPU ran out of memory for the KV cache and activations of a ${contextSize}-token context: try a smaller context`);
    }
    return new Gemma4Model(shared, forward);
  }

  get contextSize(): number {
    return this.forward.options.contextSize;
  }

  /** Tokens per prefill block. */
  get prefillChunk(): number {
    return this.forward.options.maxTokens;
  }

  /** Whether prefill's Q4_K and Q6_K matmuls run in 8-bit integers (see {@link LoadModelOptions.int8Prefill}). */
  get int8Prefill(): boolean {
    return this.forward.options.int8Prefill === true;
  }

  /** The LoRA adapters this session applies (none by default). */
  get adapters(): readonly AppliedAdapter[] {
    return this.lora?.applied ?? [];
  }

  /**
   * Applies LoRA adapters, each at its scale, replacing those applied before ([] removes them);
   * the base weights stay as they are. Every later forward pass (prefill, decode, logits) adds the
   * adapters' terms. The KV cache was computed without them, so the conversation starts afresh.
   * An adapter that does not fit the model is refused before anything changes.
   */
  async setAdapters(adapters: readonly AppliedAdapter[]): Promise<void> {
    this.checkDevice();
    const next = adapters.length > 0 ? GpuLoraSet.create(this.device, this.file, this.forward.adaptable, [...adapters]) : null;
    const previous = this.lora;
    try {
      await this.forward.setLora(next);
    } catch (e) {
      next?.destroy();
      await this.forward.setLora(previous).catch(() => {});
      throw await this.explain(e);
    }
    this.lora = next;
    previous?.destroy();
    this.reset();
  }

  /** Tokens already in the KV cache. */
  get position(): number {
    return this.history.length;
  }

  /** The tokens in the KV cache, in order. */
  get tokens(): readonly number[] {
    return this.history;
  }

  /** GPU bytes in use: the shared weights plus this session's KV cache and activations. */
  get gpuBytes(): number {
    return this.shared.weights.bytes + this.forward.bytes;
  }

  /** GPU bytes of this session alone (KV cache and activations). */
  get sessionBytes(): number {
    return this.forward.bytes;
  }

  /** The GPU buffer whose row 0 holds the last fed token's logits (for a GPU sampler). */
  get logitsBuffer(): GPUBuffer {
    return this.forward.logits;
  }

  /** Forgets the conversation (the KV cache is simply overwritten from position 0). */
  reset(): void {
    this.history = [];
    this.ringFloor = 0;
    this.written = 0;
    this.lastSample = null;
    this.epoch++;
  }

  /**
   * Keeps only the first `length` tokens, so a conversation that diverges (an edited message, a
   * regenerated answer) refills just its new part. Returns false, changing nothing, when the
   * sliding layers' rings no longer hold the positions that part would attend to; then reset
   * and feed everything again.
   */
  rewind(length: number): boolean {
    if (!Number.isInteger(length) || length < 0 || length > this.position) throw new RullamaError('bad-argument', `cannot rewind to ${length} of ${this.position} tokens`);
    if (length === this.position) return true;
    // A ring holds the last `capacity` positions written, which may lie past the tokens kept
    // (a step fed ahead by chainSample, or an earlier rewind).
    const needed = Math.max(0, length - this.config.slidingWindow + 1);
    for (const kv of this.forward.kv.entries) {
      const layer = this.config.layers[kv.layer]!;
      if (layer.sliding && needed < Math.max(this.ringFloor, this.written - kv.capacity)) return false;
    }
    this.history.length = length;
    this.lastSample = null;
    this.epoch++;
    return true;
  }

  /**
   * Runs `tokens` through the model in prefill blocks, continuing the conversation. Returns the
   * last token's logits, every token's (one Float32Array per token), or none. On cancellation or
   * any failure the tokens of the unfinished block are not counted, so the model stays usable.
   */
  async feed(tokens: readonly number[], options: FeedOptions = {}): Promise<Float32Array[]> {
    this.checkDevice();
    const { vocabSize } = this.config;
    for (const t of tokens) {
      if (!Number.isInteger(t) || t < 0 || t >= vocabSize) throw new RullamaError('bad-token', `token id ${t} is outside the vocabulary (0..${vocabSize - 1})`);
    }
    if (tokens.length === 0) throw new RullamaError('bad-argument', 'no tokens to feed');
    if (this.position + tokens.length > this.contextSize) {
      throw new RullamaError('context-overflow', `${this.position} + ${tokens.length} tokens exceed the context of ${this.contextSize}`);
    }
    const read = options.logits ?? 'last';
    const chunk = this.forward.options.maxTokens;
    const out: Float32Array[] = [];
    this.lastSample = null;
    try {
      for (let i = 0; i < tokens.length; i += chunk) {
        throwIfAborted(options.signal);
        const block = tokens.slice(i, i + chunk);
        const rows = this.ple && this.forward.needsPerLayerRows ? await this.ple.rows(block, options.signal) : null;
        const last = i + chunk >= tokens.length;
        this.written = Math.max(this.written, this.position + block.length);
        await this.forward.run(Uint32Array.from(block), this.position, rows as Float32Array<ArrayBuffer> | null, {
          all: read === 'all', signal: options.signal, after: last ? options.after : undefined,
        });
        if (read === 'all') {
          const logits = await this.forward.readLogits(block.length);
          for (let t = 0; t < block.length; t++) out.push(logits.slice(t * vocabSize, (t + 1) * vocabSize));
        } else if (last && read === 'last') {
          out.push(await this.forward.readLogits(1));
        }
        this.history.push(...block);
      }
    } catch (e) {
      throw await this.explain(e);
    }
    return out;
  }

  /**
   * Feeds `tokens` and picks the next token from the last one's logits with the sampling
   * options, the recent tokens (for penalties) and the uniform random number `r`. The sampler runs
   * on the GPU in the same submit as the forward pass: a token reads back 16 bytes.
   */
  async sampleNext(tokens: readonly number[], options: SamplingOptions, recent: readonly number[], r: number, signal?: AbortSignal): Promise<SampledToken> {
    return (await this.startSample(tokens, options, recent, r, signal)).read();
  }

  /**
   * Like {@link sampleNext}, but returns once the work is submitted: read the token from the
   * result, and meanwhile the CPU is free, for instance to chain the next step.
   */
  async startSample(tokens: readonly number[], options: SamplingOptions, recent: readonly number[], r: number, signal?: AbortSignal): Promise<PendingSample> {
    checkSamplingOptions(options, this.config.vocabSize); // fail before any GPU work
    const gpu = await this.gpuSampler();
    let ticket = 0;
    await this.feed(tokens, { signal, logits: 'none', after: (encoder) => (ticket = gpu.encode(encoder, options, recent, r)) });
    return (this.lastSample = new PendingSample(this.position, () => this.readSample(gpu, ticket)));
  }

  /** Whether {@link chainSample} works here: the model needs nothing of a token on the CPU. */
  get chainable(): boolean {
    return this.forward.chainable;
  }

  /**
   * Feeds the token `previous` picks, before the CPU knows it, and samples the one after it: the
   * token goes from the sampler's result to the forward's input on the GPU, so this step is
   * submitted while the GPU still runs the one before, and reading a token no longer leaves the
   * GPU idle. `previous` must be the last sample, with nothing fed since. Until it is read, its
   * place in {@link tokens} holds −1. The step cannot use penalties (their window would need the
   * token): `options` must have none. A caller that stops at `previous`'s token (a stop token)
   * rewinds to `previous.position`.
   */
  async chainSample(previous: PendingSample, options: SamplingOptions, r: number, signal?: AbortSignal): Promise<PendingSample> {
    this.checkDevice();
    const checked = checkSamplingOptions(options, this.config.vocabSize);
    if (usesPenalties(checked)) throw new RullamaError('bad-argument', 'a chained step cannot apply penalties: the penalty window would need the token it feeds');
    if (!this.chainable) throw new RullamaError('unsupported', 'this model reads per-layer rows on the CPU: load it with perLayerTableOnGpu to chain decode steps');
    if (previous !== this.lastSample || previous.position !== this.position) throw new RullamaError('bad-argument', 'a chained step must follow the last sample, with nothing fed since');
    if (this.position + 1 > this.contextSize) throw new RullamaError('context-overflow', `${this.position} + 1 tokens exceed the context of ${this.contextSize}`);
    throwIfAborted(signal);
    const gpu = await this.gpuSampler();
    const at = this.position;
    let ticket = 0;
    try {
      this.written = Math.max(this.written, at + 1);
      await this.forward.run(gpu.result, at, null, { signal, after: (encoder) => (ticket = gpu.encode(encoder, options, [], r)) });
    } catch (e) {
      this.lastSample = null;
      throw await this.explain(e);
    }
    this.history.push(UNKNOWN_TOKEN);
    const epoch = this.epoch;
    void previous.read().then(({ id }) => {
      if (this.epoch === epoch && this.history[at] === UNKNOWN_TOKEN) this.history[at] = id;
    }, () => {});
    return (this.lastSample = new PendingSample(this.position, () => this.readSample(gpu, ticket)));
  }

  private gpuSampler(): Promise<GpuSampler> {
    return (this.sampler ??= GpuSampler.create(this.device, this.shared.pipelines, { logits: this.forward.logits, vocabSize: this.config.vocabSize }));
  }

  private async readSample(gpu: GpuSampler, ticket: number): Promise<SampledToken> {
    try {
      const { id, logprob } = await gpu.read(ticket);
      return { id, logprob };
    } catch (e) {
      throw await this.explain(e);
    }
  }

  /** The whole generation state as bytes (see snapshot.ts): restore it with `loadState`. */
  async saveState(): Promise<Uint8Array<ArrayBuffer>> {
    this.checkDevice();
    const pos = this.position;
    const ranges = this.forward.kv.entries.map((kv) => {
      // Sliding layers keep what the next queries can see; global layers keep everything.
      const first = this.config.layers[kv.layer]!.sliding ? Math.max(0, pos - this.config.slidingWindow, this.ringFloor) : 0;
      return { layer: kv.layer, first, count: pos - first };
    });
    try {
      const layers = await this.forward.kv.read(this.device, ranges);
      return encodeSnapshot({ layoutHash: this.stateHash, tokens: Uint32Array.from(this.history), layers });
    } catch (e) {
      throw await this.explain(e);
    }
  }

  /**
   * Restores a state saved by `saveState` of this same model (any context size that holds it).
   * The snapshot is checked completely first; a bad one throws 'bad-snapshot' and changes nothing.
   */
  loadState(bytes: Uint8Array): void {
    this.checkDevice();
    const snapshot = decodeSnapshot(bytes, this.stateHash);
    const pos = snapshot.tokens.length;
    if (pos > this.contextSize) throw new RullamaError('context-overflow', `the saved state holds ${pos} tokens, more than this context of ${this.contextSize}`);
    const { vocabSize, slidingWindow } = this.config;
    if (snapshot.tokens.some((t) => t >= vocabSize)) throw new RullamaError('bad-snapshot', 'the saved state holds token ids outside the vocabulary');
    const entries = this.forward.kv.entries;
    if (snapshot.layers.length !== entries.length) throw new RullamaError('bad-snapshot', `the saved state has ${snapshot.layers.length} KV layers, the model ${entries.length}`);
    let floor = 0;
    for (const [i, kv] of entries.entries()) {
      const l = snapshot.layers[i]!;
      const sliding = this.config.layers[kv.layer]!.sliding;
      const needed = sliding ? Math.max(0, pos - slidingWindow) : 0;
      if (l.layer !== kv.layer || l.width !== kv.width || l.first > needed || l.first + l.count !== pos || l.count > (sliding ? kv.capacity : pos)) {
        throw new RullamaError('bad-snapshot', `the saved KV of layer ${l.layer} does not fit this model's layer ${kv.layer}`);
      }
      if (sliding) floor = Math.max(floor, l.first);
    }
    this.forward.kv.write(this.device, snapshot.layers);
    this.history = Array.from(snapshot.tokens);
    this.ringFloor = floor;
    this.written = pos;
    this.lastSample = null;
    this.epoch++;
  }

  /** What a saved state must match: the model, and the adapters applied when it was saved. */
  private get stateHash(): Uint8Array {
    return stateHash(this.layoutHash, this.adapters);
  }

  /** Frees this session's GPU buffers, and the weights with the last session. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    void this.sampler?.then((s) => s.destroy(), () => {});
    this.forward.destroy();
    this.lora?.destroy();
    if (--this.shared.sessions === 0) this.shared.weights.destroy();
  }

  private checkDevice(): void {
    if (this.destroyed) throw new RullamaError('bad-argument', 'this model session was destroyed');
    if (this.lostReason !== null) throw new RullamaError('device-lost', `the GPU device was lost (${this.lostReason}): load the model again to continue`);
  }

  /** Failures of GPU work after the device is lost become 'device-lost'. */
  private async explain(e: unknown): Promise<unknown> {
    if (e instanceof RullamaError && e.code !== 'io') return e;
    // The lost promise may settle just after the failed call.
    await Promise.race([this.device.lost, new Promise((r) => setTimeout(r, 50))]);
    if (this.lostReason !== null) return new RullamaError('device-lost', `the GPU device was lost (${this.lostReason}): load the model again to continue`, { cause: e });
    return e;
  }
}

/** What {@link Gemma4Model.tokens} holds where a chained step fed a token not read yet. */
const UNKNOWN_TOKEN = -1;

/** A sampled token whose work is submitted: `read` waits for it (once; later calls share the result). */
export class PendingSample {
  private result: Promise<SampledToken> | null = null;

  constructor(
    /** Where the token goes when fed: the model's position once this sample's step was fed. */
    readonly position: number,
    private readonly fetch: () => Promise<SampledToken>,
  ) {}

  read(): Promise<SampledToken> {
    return (this.result ??= this.fetch());
  }
}

/** SHA-256 over the architecture, shapes and dtypes, and the bytes of a few small tensors. */
async function modelLayoutHash(file: GGUFFile, source: ByteSource, fingerprint: GGUFTensorInfo[]): Promise<Uint8Array> {
  const shape = file.tensors.map((t) => `${t.name}:${t.type}:${t.dims.join('x')}`).join(';');
  const parts: Uint8Array[] = [new TextEncoder().encode(`gemma4;${file.metadata.get('general.architecture')};${shape}`)];
  for (const t of fingerprint) parts.push(await readTensorBytes(source, t));
  const all = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.byteLength;
  }
  return sha256(all).slice(0, 16);
}
