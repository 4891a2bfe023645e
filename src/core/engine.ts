import { encodeChat, stopTokens, type ChatMessage, type RenderChatOptions } from './chat/index.js';
import { RullamaError, throwIfAborted } from './errors.js';
import { generate, type GenerateOptions, type GenerateStats, type TokenEvent } from './generate.js';
import { openDevice } from './gpu/device.js';
import { readGGUF } from './gguf/read.js';
import { blobSource, urlSource, type ByteSource } from './gguf/source.js';
import { readGemma4Config } from './model/config.js';
import { Gemma4Model } from './model/model.js';
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
 * A Gemma 4 model ready to talk: the weights on the GPU, the tokenizer, and one conversation's
 * state. Calls are queued: one generation runs at a time.
 *
 *   const engine = await Engine.load(file, { gpu: navigator.gpu, onProgress });
 *   const g = engine.chat([{ role: 'user', content: 'Hello' }]);
 *   for await (const t of g) output.append(t.text);
 *   console.log((await g.result).stats);
 */
export class Engine {
  private queue: Promise<unknown> = Promise.resolve();
  private disposed = false;

  private constructor(
    readonly model: Gemma4Model,
    readonly tokenizer: Tokenizer,
    private readonly ownsDevice: GPUDevice | null,
    private readonly closeSource: () => Promise<void>,
  ) {}

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

  /** Text to token ids (with `<bos>` and special tokens parsed by default). */
  tokenize(text: string, options: { addBos?: boolean; parseSpecial?: boolean } = {}): number[] {
    return this.tokenizer.encode(text, options);
  }

  detokenize(ids: readonly number[]): string {
    return this.tokenizer.decode(ids);
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

  /** GPU bytes in use (weights, KV cache, activations). */
  get gpuBytes(): number {
    return this.model.gpuBytes;
  }

  /** Frees every GPU buffer (and the device, when the engine opened it). */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await this.queue.catch(() => {});
    this.model.destroy();
    this.ownsDevice?.destroy();
    await this.closeSource();
  }

  private checkOpen(): void {
    if (this.disposed) throw new RullamaError('bad-argument', 'this engine was disposed');
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
      return yield* generate(this.model, this.tokenizer, ids, options);
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
