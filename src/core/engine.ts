import { encodeChat, stopTokens, type ChatMessage, type RenderChatOptions } from './chat/index.js';
import { RullamaError, throwIfAborted } from './errors.js';
import { generate, type GenerateOptions, type GenerateStats, type TokenEvent } from './generate.js';
import { openDevice } from './gpu/device.js';
import { readGGUF } from './gguf/read.js';
import { blobSource, urlSource, type ByteSource } from './gguf/source.js';
import { readGemma4Config } from './model/config.js';
import { Gemma4Model } from './model/model.js';
import type { AppliedAdapter } from './model/lora-weights.js';
import { checkAdapterFits, readLoraGGUF, type LoraAdapter } from './lora/adapter.js';
import type { OllamaStore } from './ollama/store.js';
import { Tokenizer } from './tokenizer/tokenizer.js';

/**
 * Where a model comes from: a File or Blob, a URL (served with HTTP Range), a model in an Ollama
 * store (a folder handle in the browser, a path in Node), or any ByteSource (a Node file).
 */
export type ModelSource = Blob | string | URL | ByteSource | { ollama: OllamaStore; model: string };

export interface LoadProgress {
  /** 'open': reading the header; 'weights': uploading to the GPU; 'kernels': compiling; 'ready'. */
  phase: 'open' | 'weights' | 'kernels' | 'ready';
  /** Bytes done and in all (weights), else 0 and 0. */
  loaded: number;
  total: number;
}

export interface EngineLoadOptions {
  /** The WebGPU entry point (`navigator.gpu`, or `create([])` of the `webgpu` package in Node)… */
  gpu?: GPU;
  /** …or a device opened already. */
  device?: GPUDevice;
  /** Context size in tokens (default: the smaller of the model's and 4,096). */
  contextSize?: number;
  /** Prompt tokens per prefill block (default 128). */
  prefillChunk?: number;
  /**
   * Keep the per-layer-embedding table on the GPU (E2B: 4.7 GB more GPU memory). Decoding is then
   * faster: each step starts before the CPU has read the token before it. Default: off.
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
  onProgress?: (p: LoadProgress) => void;
  /** Close the source on dispose. Default: yes for sources the engine opens, no for a ByteSource passed in. */
  closeSource?: boolean;
}

export interface ChatOptions extends GenerateOptions {
  /** Chat template options: thinking, tools. */
  template?: Omit<RenderChatOptions, 'addGenerationPrompt'>;
  /**
   * When the conversation does not fit the context: 'error' (default) throws 'context-overflow';
   * 'drop-oldest' drops the oldest turns after the system message until the prompt and room for
   * the answer (maxTokens, at most half the context) fit.
   */
  overflow?: 'error' | 'drop-oldest';
}

export interface GenerationResult {
  text: string;
  tokens: number[];
  stats: GenerateStats;
  /** Messages dropped to fit the context (chat with overflow 'drop-oldest'). */
  droppedMessages: number;
}

/**
 * One generation: iterate it for the tokens as they come, and/or await `result` for the text and
 * stats (awaiting `result` alone runs it to the end).
 */
export class Generation implements AsyncIterable<TokenEvent> {
  private started = false;
  private resolve!: (r: GenerationResult) => void;
  private reject!: (e: unknown) => void;
  private readonly settled: Promise<GenerationResult>;

  constructor(
    private readonly run: () => AsyncGenerator<TokenEvent, GenerateStats>,
    private readonly droppedMessages = 0,
  ) {
    this.settled = new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    this.settled.catch(() => {}); // reported to whoever iterates or awaits `result`
  }

  /**
   * Settles when the generation ends: the result, or the error (cancellation included). Reading
   * it before iterating runs the generation to the end without yielding tokens.
   */
  get result(): Promise<GenerationResult> {
    if (!this.started) void this.drain();
    return this.settled;
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<TokenEvent, void> {
    if (this.started) throw new RullamaError('bad-argument', 'a generation can be iterated only once');
    this.started = true;
    const it = this.run();
    try {
      for (;;) {
        const step = await it.next();
        if (step.done) {
          this.resolve({ text: step.value.text, tokens: step.value.tokens, stats: step.value, droppedMessages: this.droppedMessages });
          return;
        }
        yield step.value;
      }
    } catch (e) {
      this.reject(e);
      throw e;
    } finally {
      // The consumer broke out early: end the underlying generator too.
      this.reject(new RullamaError('aborted', 'the generation was not read to the end'));
      await it.return?.(undefined as never);
    }
  }

  private async drain(): Promise<void> {
    try {
      for await (const _ of this) void _;
    } catch {
      // already passed to `result`
    }
  }
}

/**
 * Hands the GPU to one model step at a time, first come first served: conversations that generate
 * at once take turns token by token, so none waits for another's whole answer.
 */
class StepQueue {
  private tail: Promise<void> = Promise.resolve();

  run<T>(step: () => Promise<T>): Promise<T> {
    const result = this.tail.then(step);
    this.tail = result.then(() => {}, () => {});
    return result;
  }
}

/**
 * A Gemma 4 model ready to talk: the weights on the GPU, the tokenizer, and a main conversation
 * (`chat`, `generate`, `saveState`, … act on it). `createConversation` adds more conversations on
 * the same weights, each with its own KV cache.
 *
 *   const engine = await Engine.load(file, { gpu: navigator.gpu, onProgress });
 *   const g = engine.chat([{ role: 'user', content: 'Hello' }]);
 *   for await (const t of g) output.append(t.text);
 *   console.log((await g.result).stats);
 */
export class Engine {
  private disposed = false;
  private readonly steps = new StepQueue();
  private readonly conversations = new Set<Conversation>();
  /** The conversation that `chat`, `generate`, `reset`, `saveState` and `loadState` use. */
  readonly main: Conversation;

  private constructor(
    model: Gemma4Model,
    readonly tokenizer: Tokenizer,
    private readonly ownsDevice: GPUDevice | null,
    private readonly closeSource: () => Promise<void>,
  ) {
    this.main = this.adopt(model);
  }

  static async load(from: ModelSource, options: EngineLoadOptions = {}): Promise<Engine> {
    const { signal } = options;
    const progress = (phase: LoadProgress['phase'], loaded = 0, total = 0) => options.onProgress?.({ phase, loaded, total });
    progress('open');
    let device = options.device;
    let ownsDevice: GPUDevice | null = null;
    let source: ByteSource | null = null;
    let owned = false;
    try {
      ({ source, owned } = await openSource(from, signal));
      owned = options.closeSource ?? owned;
      if (!device) {
        const opened = await openDevice({
          gpu: options.gpu,
          // Bigger buffers mean fewer weight tiles; the adapter's own maximum is the ceiling.
          preferredLimits: { maxStorageBufferBindingSize: 2 ** 31, maxBufferSize: 2 ** 31 },
        });
        device = ownsDevice = opened.device;
      }
      const file = await readGGUF(source, { signal });
      readGemma4Config(file); // the architecture error comes before any tokenizer complaint
      const tokenizer = Tokenizer.fromGGUF(file);
      throwIfAborted(signal);
      let uploaded = false;
      const model = await Gemma4Model.load(device, source, {
        file,
        contextSize: options.contextSize,
        prefillChunk: options.prefillChunk,
        perLayerTableOnGpu: options.perLayerTableOnGpu,
        int8Prefill: options.int8Prefill,
        signal,
        onProgress: (p) => {
          progress('weights', p.loaded, p.total);
          if (p.loaded === p.total && !uploaded) {
            uploaded = true;
            progress('kernels');
          }
        },
      });
      progress('ready');
      const opened = source;
      return new Engine(model, tokenizer, ownsDevice, async () => {
        if (owned) await opened.close?.();
      });
    } catch (e) {
      if (owned) await source?.close?.();
      ownsDevice?.destroy();
      throw e;
    }
  }

  /** The main conversation's model session (logits, rewind, state; see Gemma4Model). */
  get model(): Gemma4Model {
    return this.main.model;
  }

  /** Text to token ids (with `<bos>` and special tokens parsed by default). */
  tokenize(text: string, options: { addBos?: boolean; parseSpecial?: boolean } = {}): number[] {
    return this.tokenizer.encode(text, options);
  }

  detokenize(ids: readonly number[]): string {
    return this.tokenizer.decode(ids);
  }

  /**
   * Reads a LoRA adapter GGUF (llama.cpp / Ollama `ADAPTER` format) from a File/Blob, a URL or a
   * ByteSource and checks that it fits this engine's model; apply it with `setAdapters`.
   */
  async loadAdapter(from: Blob | string | URL | ByteSource, options: { signal?: AbortSignal } = {}): Promise<LoraAdapter> {
    this.checkOpen();
    const { source, owned } = await openSource(from, options.signal);
    try {
      const adapter = await readLoraGGUF(source, options);
      checkAdapterFits(adapter, this.model.file);
      return adapter;
    } finally {
      if (owned) await source.close?.();
    }
  }

  /** Applies LoRA adapters to the main conversation (see Conversation.setAdapters). */
  setAdapters(adapters: readonly AppliedAdapter[]): Promise<void> {
    return this.main.setAdapters(adapters);
  }

  /** A new conversation on the same weights, with its own KV cache (default: the main one's context size). */
  async createConversation(options: { contextSize?: number; prefillChunk?: number } = {}): Promise<Conversation> {
    this.checkOpen();
    const model = await this.main.model.newSession({
      contextSize: options.contextSize ?? this.main.model.contextSize,
      prefillChunk: options.prefillChunk ?? this.main.model.prefillChunk,
      int8Prefill: this.main.model.int8Prefill,
    });
    return this.adopt(model);
  }

  generate(prompt: string | readonly number[], options: GenerateOptions = {}): Generation {
    return this.main.generate(prompt, options);
  }

  chat(messages: readonly ChatMessage[], options: ChatOptions = {}): Generation {
    return this.main.chat(messages, options);
  }

  reset(): void {
    this.main.reset();
  }

  saveState(): Promise<Uint8Array<ArrayBuffer>> {
    return this.main.saveState();
  }

  loadState(bytes: Uint8Array): Promise<void> {
    return this.main.loadState(bytes);
  }

  /** GPU bytes in use: weights plus every conversation's KV cache and activations. */
  get gpuBytes(): number {
    let bytes = this.main.model.gpuBytes;
    for (const c of this.conversations) if (c !== this.main) bytes += c.model.sessionBytes;
    return bytes;
  }

  /** Frees every GPU buffer (and the device, when the engine opened it). */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    for (const c of [...this.conversations]) await c.dispose();
    this.ownsDevice?.destroy();
    await this.closeSource();
  }

  private checkOpen(): void {
    if (this.disposed) throw new RullamaError('bad-argument', 'this engine was disposed');
  }

  private adopt(model: Gemma4Model): Conversation {
    const conversation = new Conversation(model, this.tokenizer, this.steps, () => this.conversations.delete(conversation));
    this.conversations.add(conversation);
    return conversation;
  }
}

/** One conversation: its tokens and KV cache, on an engine's shared weights. One generation runs at a time. */
export class Conversation {
  private queue: Promise<unknown> = Promise.resolve();
  private disposed = false;

  /** @internal Made by Engine. */
  constructor(
    readonly model: Gemma4Model,
    private readonly tokenizer: Tokenizer,
    private readonly steps: StepQueue,
    private readonly forget: () => void,
  ) {}

  get contextSize(): number {
    return this.model.contextSize;
  }

  /** Tokens in the KV cache. */
  get position(): number {
    return this.model.position;
  }

  /** Continues `prompt` (text, or token ids), reusing whatever prefix the KV cache already holds. */
  generate(prompt: string | readonly number[], options: GenerateOptions = {}): Generation {
    this.checkOpen();
    const ids = typeof prompt === 'string' ? this.tokenizer.encode(prompt) : prompt;
    return new Generation(() => this.queued(ids, options));
  }

  /**
   * Answers the last message of a conversation. Pass the whole conversation each time: the part
   * the KV cache already holds (the earlier turns) is not computed again.
   */
  chat(messages: readonly ChatMessage[], options: ChatOptions = {}): Generation {
    this.checkOpen();
    let kept = [...messages];
    let ids = encodeChat(this.tokenizer, kept, options.template);
    let dropped = 0;
    const room = Math.min(options.maxTokens ?? 256, Math.floor(this.model.contextSize / 2));
    if (options.overflow === 'drop-oldest') {
      while (ids.length + room > this.model.contextSize) {
        const next = dropOldestTurn(kept);
        if (!next) break;
        dropped += kept.length - next.length;
        kept = next;
        ids = encodeChat(this.tokenizer, kept, options.template);
      }
    }
    if (ids.length >= this.model.contextSize) {
      throw new RullamaError('context-overflow', `the conversation is ${ids.length} tokens, more than the context of ${this.model.contextSize}${options.overflow === 'drop-oldest' ? ' even with only its last turn' : " (use overflow: 'drop-oldest' to drop old turns)"}`);
    }
    const stops = [...stopTokens(this.tokenizer), ...(options.stopTokens ?? [])];
    return new Generation(() => this.queued(ids, { ...options, stopTokens: stops }), dropped);
  }

  /** Forgets the conversation. */
  reset(): void {
    this.checkOpen();
    this.model.reset();
  }

  /** The LoRA adapters this conversation applies. */
  get adapters(): readonly AppliedAdapter[] {
    return this.model.adapters;
  }

  /**
   * Applies LoRA adapters to this conversation, each at its scale (1 = as trained), replacing the
   * ones before; [] removes them. The shared base weights stay untouched, so other conversations
   * are unaffected. Runs after any generation in progress and starts the conversation afresh
   * (its KV cache was computed with the old adapters). A misfit adapter changes nothing.
   */
  async setAdapters(adapters: readonly AppliedAdapter[]): Promise<void> {
    this.checkOpen();
    return this.exclusive(() => this.model.setAdapters(adapters));
  }

  /** The conversation state (KV cache and tokens) as bytes, after any running generation. */
  async saveState(): Promise<Uint8Array<ArrayBuffer>> {
    this.checkOpen();
    return this.exclusive(() => this.model.saveState());
  }

  /** Restores `saveState` bytes of this same model; a bad snapshot changes nothing. */
  async loadState(bytes: Uint8Array): Promise<void> {
    this.checkOpen();
    return this.exclusive(async () => this.model.loadState(bytes));
  }

  /** Frees this conversation's KV cache and activations (the weights go with the engine's last conversation). */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await this.queue.catch(() => {});
    this.model.destroy();
    this.forget();
  }

  private checkOpen(): void {
    if (this.disposed) throw new RullamaError('bad-argument', 'this conversation (or its engine) was disposed');
  }

  /** Runs `work` after everything queued before it. */
  private exclusive<T>(work: () => Promise<T>): Promise<T> {
    const run = this.queue.then(work, work);
    this.queue = run.catch(() => {});
    return run;
  }

  private async *queued(ids: readonly number[], options: GenerateOptions): AsyncGenerator<TokenEvent, GenerateStats> {
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const before = this.queue;
    this.queue = before.then(() => mine);
    try {
      await before;
      return yield* generate(this.model, this.tokenizer, ids, options, (step) => this.steps.run(step));
    } finally {
      release();
    }
  }
}

/** Opens the source; `owned` says whether the engine closes it (a caller's ByteSource stays the caller's). */
async function openSource(from: ModelSource, signal?: AbortSignal): Promise<{ source: ByteSource; owned: boolean }> {
  if (typeof from === 'string' || from instanceof URL) return { source: await urlSource(String(from), { signal }), owned: true };
  if (typeof Blob !== 'undefined' && from instanceof Blob) return { source: blobSource(from), owned: true };
  if ('ollama' in from) return { source: await from.ollama.openModel(from.model, { signal }), owned: true };
  if (typeof (from as ByteSource).read === 'function') return { source: from as ByteSource, owned: false };
  throw new RullamaError('bad-argument', 'a model source is a File/Blob, a URL, an Ollama store and model name, or a ByteSource');
}

/**
 * The conversation without its oldest turn: the first non-system message and the replies up to
 * the next user message. Null when only the last user turn is left.
 */
function dropOldestTurn(messages: readonly ChatMessage[]): ChatMessage[] | null {
  const first = messages.findIndex((m) => m.role !== 'system' && m.role !== 'developer');
  if (first < 0) return null;
  let end = first + 1;
  while (end < messages.length && messages[end]!.role !== 'user') end++;
  if (end >= messages.length) return null;
  return [...messages.slice(0, first), ...messages.slice(end)];
}
