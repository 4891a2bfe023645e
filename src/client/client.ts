/**
 * The page side of the engine worker. One RullamaClient per page (`RullamaClient.shared()`) owns
 * one worker, and one loaded model per distinct source, reference counted: every element that
 * uses a model `acquire`s it and `release`s it when it goes; the last release frees the weights.
 * Each element opens its own conversation (its own KV cache) on the shared weights.
 *
 *   const model = RullamaClient.shared().acquire('/models/gemma4.gguf', { contextSize: 2048 });
 *   model.onProgress((p) => bar.value = p.loaded / p.total);
 *   await model.ready;
 *   const chat = await model.openConversation();
 *   const g = chat.chat([{ role: 'user', content: 'Hello' }], { maxTokens: 64, signal });
 *   for await (const t of g) out.append(t.text);
 *   model.release();
 */
import type { ChatMessage } from '../core/chat/index.js';
import { RullamaError } from '../core/errors.js';
import type { ChatOptions, GenerationResult } from '../core/engine.js';
import type { GenerateOptions, TokenEvent } from '../core/generate.js';
import {
  PROTOCOL_VERSION,
  type AdapterSpec,
  type AdaptersResult,
  type Endpoint,
  type LoadProgressDetail,
  type ModelInfo,
  type SourceSpec,
  type TrainJobInfo,
  type WireTrainOptions,
  type WireTrainProgress,
  type WorkerReply,
  type WorkerRequest,
} from '../worker/protocol.js';
import { RemoteGeneration } from './generation.js';
import { RemoteTrainer, TrainedAdapter } from './training.js';

/** What a model can be loaded from, on the page side. */
export type ModelInput =
  /** A URL (relative URLs resolve against the page). */
  | string
  | URL
  /** A File or Blob: a picked or dropped file. */
  | Blob
  /** A model in an Ollama models folder (see pickOllamaFolder / rememberedOllamaFolder). */
  | { ollama: FileSystemDirectoryHandle; model: string; verify?: boolean };

/**
 * A LoRA adapter GGUF (llama.cpp / Ollama `ADAPTER` format) on the page side: a URL (relative
 * URLs resolve against the page; blob: URLs work) or a File/Blob, with its scale (default 1).
 */
export interface AdapterInput {
  source: string | URL | Blob;
  scale?: number;
}

export interface ClientOptions {
  /** URL of rullama-worker.js (default: next to this module). */
  workerUrl?: string | URL;
  /** Run the engine on the page's thread instead of a worker (debugging; the page may jank). */
  inline?: boolean;
}

export interface AcquireOptions {
  /** Context size of the first conversation (used when this acquire loads the model). */
  contextSize?: number;
  /**
   * Keep the per-layer-embedding table on the GPU (E2B: 4.7 GB more GPU memory) for faster
   * decoding (see EngineLoadOptions.perLayerTableOnGpu; used when this acquire loads the model).
   */
  perLayerTableOnGpu?: boolean;
  /**
   * Prefill's Q4_K and Q6_K matmuls round their input to 8 bits and multiply in integers: faster
   * prompts on GPUs with fast dot4I8Packed, whose logits differ from the f32 ones by that rounding
   * (see EngineLoadOptions.int8Prefill; used when this acquire loads the model). Needs WGSL's
   * packed_4x8_integer_dot_product, else the load fails with 'unsupported'.
   */
  int8Prefill?: boolean;
  /** Expected SHA-256 (hex) of a URL's file, checked by the download cache. */
  sha256?: string;
  /** Keep a URL's file in the OPFS cache (default true); false reads it with range requests every time. */
  cache?: boolean;
}

type Pending = {
  onProgress?: (p: LoadProgressDetail) => void;
  onToken?: (t: TokenEvent) => void;
  onTrainProgress?: (p: WireTrainProgress) => void;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
};

let defaultClient: RullamaClient | null = null;
let defaultOptions: ClientOptions = {};

const ids = new WeakMap<object, number>();
let nextObjectId = 1;
const objectId = (o: object): number => {
  let id = ids.get(o);
  if (id === undefined) ids.set(o, (id = nextObjectId++));
  return id;
};

function hasWebGPU(): boolean {
  return typeof navigator !== 'undefined' && !!(navigator as Navigator & { gpu?: GPU }).gpu;
}

const noWebGPU = () =>
  new RullamaError('no-webgpu', 'this browser has no WebGPU: use a recent Chrome, Edge or Safari 26, or Firefox 141+ on Windows');

/** Asks once that the model cache survive storage pressure (pages only; the worker cannot ask). */
let persistenceRequested = false;
function requestPersistence(): void {
  if (persistenceRequested) return;
  persistenceRequested = true;
  const storage = typeof navigator === 'undefined' ? undefined : navigator.storage;
  storage?.persisted?.().then((yes) => yes || storage.persist?.()).catch(() => {});
}

/** Sets the options of the shared client before it starts (the worker URL, inline mode). */
export function configureRullama(options: ClientOptions): void {
  defaultOptions = { ...defaultOptions, ...options };
  if (defaultClient && !defaultClient.started) defaultClient = null;
}

export class RullamaClient {
  private endpoint: Endpoint | null = null;
  private worker: Worker | null = null;
  private broken: RullamaError | null = null;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly models = new Map<string, SharedModel>();
  private hello: Promise<unknown> | null = null;

  constructor(private readonly options: ClientOptions = {}) {}

  /** The page's client (created on first use; replaced if its worker died). */
  static shared(): RullamaClient {
    if (!defaultClient || defaultClient.broken) defaultClient = new RullamaClient(defaultOptions);
    return defaultClient;
  }

  /** Whether the engine runs on the page's thread. */
  get inline(): boolean {
    return !!this.options.inline;
  }

  /** Whether the worker has been started. */
  get started(): boolean {
    return this.endpoint !== null;
  }

  /** The loaded (or loading) models: key, reference count, state. For tests and dev tools. */
  get loadedModels(): { key: string; refs: number; state: SharedModel['state'] }[] {
    return [...this.models.values()].map((m) => ({ key: m.key, refs: m.refs, state: m.state }));
  }

  /**
   * A counted reference to the model at `input`, loading it if no one has yet. Call `release()`
   * when done: the last release frees it in the worker.
   */
  acquire(input: ModelInput, options: AcquireOptions = {}): ModelRef {
    const key = sourceKey(input);
    let model = this.models.get(key);
    if (!model || model.state === 'lost' || model.state === 'error') {
      if (model) this.models.delete(key);
      model = new SharedModel(this, key, toSpec(input, options), options.contextSize, options.perLayerTableOnGpu === true, options.int8Prefill === true);
      this.models.set(key, model);
      model.start();
    }
    model.refs++;
    return new ModelRef(model);
  }

  /** Stops the worker: every model and conversation is gone. */
  terminate(): void {
    this.fail(new RullamaError('aborted', 'the rullama client was terminated'));
    this.worker?.terminate();
  }

  /** @internal */
  forget(model: SharedModel): void {
    if (this.models.get(model.key) === model) this.models.delete(model.key);
  }

  /** @internal Sends a request; resolves with its `done` value. */
  async call<T>(request: DistributiveOmit<WorkerRequest, 'id'>, hooks: Omit<Pending, 'resolve' | 'reject'> = {}, transfer: Transferable[] = [], onId?: (id: number) => void): Promise<T> {
    const endpoint = await this.connect();
    const id = this.nextId++;
    const done = new Promise<T>((resolve, reject) => {
      if (this.broken) return reject(this.broken);
      this.pending.set(id, { ...hooks, resolve: resolve as (v: unknown) => void, reject });
      endpoint.postMessage({ ...request, id }, transfer);
    });
    onId?.(id);
    return done;
  }

  /** @internal Cancels a running request (fire and forget). */
  cancel(target: number): void {
    if (this.endpoint && this.pending.has(target)) this.endpoint.postMessage({ type: 'cancel', id: this.nextId++, target } satisfies WorkerRequest);
  }

  private async connect(): Promise<Endpoint> {
    if (this.broken) throw this.broken;
    if (!this.endpoint) {
      this.endpoint = this.options.inline ? await this.startInline() : this.startWorker();
      this.endpoint.addEventListener('message', (e) => this.receive(e.data as WorkerReply));
      const id = this.nextId++;
      this.hello = new Promise((resolve, reject) => this.pending.set(id, { resolve, reject }));
      this.endpoint.postMessage({ type: 'hello', id, version: PROTOCOL_VERSION } satisfies WorkerRequest);
    }
    await this.hello;
    return this.endpoint;
  }

  private startWorker(): Endpoint {
    let url: URL;
    let worker: Worker;
    try {
      if (this.options.workerUrl) {
        url = new URL(String(this.options.workerUrl), document.baseURI);
        worker = createWorker(url);
      } else {
        // Bundlers (and our rollup build) recognise this pattern and ship the worker file.
        url = new URL('../worker/worker.ts', import.meta.url);
        worker = url.origin === location.origin ? new Worker(new URL('../worker/worker.ts', import.meta.url), { type: 'module', name: 'rullama' }) : createWorker(url);
      }
    } catch (e) {
      throw this.fail(new RullamaError('io', `cannot start the rullama worker: ${(e as Error).message}`, { cause: e }));
    }
    worker.addEventListener('error', (e) => {
      e.preventDefault();
      this.fail(new RullamaError('io', `the rullama worker (${url.href}) failed: ${e.message || 'it could not be loaded'}`));
    });
    worker.addEventListener('messageerror', () => this.fail(new RullamaError('io', 'a message from the rullama worker could not be read')));
    this.worker = worker;
    return worker as Endpoint;
  }

  private async startInline(): Promise<Endpoint> {
    const { serveEngine } = await import('../worker/host.js');
    const channel = new MessageChannel();
    serveEngine(channel.port2 as Endpoint);
    channel.port1.start();
    channel.port2.start();
    return channel.port1 as Endpoint;
  }

  private fail(error: RullamaError): RullamaError {
    this.broken ??= error;
    for (const p of this.pending.values()) p.reject(error);
    this.pending.clear();
    for (const m of this.models.values()) m.state = 'error';
    return error;
  }

  private receive(reply: WorkerReply): void {
    const p = this.pending.get(reply.id);
    if (!p) return;
    switch (reply.type) {
      case 'progress':
        p.onProgress?.(reply.progress);
        return;
      case 'token':
        p.onToken?.(reply.token);
        return;
      case 'train-progress':
        p.onTrainProgress?.(reply.progress);
        return;
      case 'done':
        this.pending.delete(reply.id);
        p.resolve(reply.value);
        return;
      case 'error':
        this.pending.delete(reply.id);
        p.reject(new RullamaError(reply.error.code === 'unknown' ? 'io' : reply.error.code, reply.error.message));
        if (reply.error.code === 'device-lost') for (const m of this.models.values()) m.state = 'lost';
        return;
    }
  }

}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** A module worker at `url`; a cross-origin script (a CDN) is started through a same-origin blob: shim. */
function createWorker(url: URL): Worker {
  if (url.origin === location.origin) return new Worker(url, { type: 'module', name: 'rullama' });
  const shim = URL.createObjectURL(new Blob([`import ${JSON.stringify(url.href)};`], { type: 'text/javascript' }));
  return new Worker(shim, { type: 'module', name: 'rullama' });
}

function sourceKey(input: ModelInput): string {
  if (typeof input === 'string' || input instanceof URL) return `url:${new URL(String(input), document.baseURI).href}`;
  if (input instanceof Blob) return `blob:${objectId(input)}`;
  return `ollama:${objectId(input.ollama)}:${input.model}`;
}

/** What the worker needs to read (or find in its cache) an adapter. */
export function toAdapterSpec(input: AdapterInput): AdapterSpec {
  const { source } = input;
  const scale = input.scale === undefined || input.scale === null ? 1 : Number(input.scale);
  if (!Number.isFinite(scale)) throw new RullamaError('bad-argument', `an adapter's scale must be a number, not ${String(input.scale)}`);
  if (source instanceof TrainedAdapter) {
    return { key: `trained:${source.job}:${source.version}`, source: { kind: 'trained', job: source.job, version: source.version, blob: source }, scale };
  }
  if (typeof Blob !== 'undefined' && source instanceof Blob) {
    return { key: `blob:${objectId(source)}`, source: { kind: 'blob', blob: source, ...((source as File).name ? { name: (source as File).name } : {}) }, scale };
  }
  if (typeof source !== 'string' && !(source instanceof URL)) throw new RullamaError('bad-argument', 'an adapter source is a URL, a File or a Blob');
  let url: string;
  try {
    url = new URL(String(source), document.baseURI).href;
  } catch (e) {
    throw new RullamaError('bad-argument', `not a URL: ${String(source)}`, { cause: e });
  }
  return { key: `url:${url}`, source: { kind: 'url', url }, scale };
}

function toSpec(input: ModelInput, options: AcquireOptions): SourceSpec {
  if (typeof input === 'string' || input instanceof URL) {
    return {
      kind: 'url',
      url: new URL(String(input), document.baseURI).href,
      ...(options.sha256 ? { sha256: options.sha256 } : {}),
      ...(options.cache === false ? { cache: false } : {}),
    };
  }
  if (input instanceof Blob) return { kind: 'blob', blob: input, ...((input as File).name ? { name: (input as File).name } : {}) };
  return { kind: 'ollama', directory: input.ollama, model: input.model, ...(input.verify ? { verify: true } : {}) };
}

/** One model in the worker, shared by every ModelRef with the same source. @internal */
export class SharedModel {
  refs = 0;
  state: 'loading' | 'ready' | 'error' | 'lost' | 'released' = 'loading';
  info: ModelInfo | null = null;
  lastProgress: LoadProgressDetail | null = null;
  readonly id: number;
  ready!: Promise<ModelInfo>;
  private readonly listeners = new Set<(p: LoadProgressDetail) => void>();
  private loadRequest = 0;
  private static nextId = 1;

  constructor(
    readonly client: RullamaClient,
    readonly key: string,
    readonly spec: SourceSpec,
    readonly contextSize: number | undefined,
    readonly perLayerTableOnGpu = false,
    readonly int8Prefill = false,
  ) {
    this.id = SharedModel.nextId++;
  }

  start(): void {
    if (!hasWebGPU()) {
      this.state = 'error';
      this.ready = Promise.reject(noWebGPU());
    } else {
      if (this.spec.kind === 'url' && this.spec.cache !== false) requestPersistence();
      this.ready = this.client
        .call<ModelInfo>(
          {
            type: 'load', model: this.id, source: this.spec,
            ...(this.contextSize ? { contextSize: this.contextSize } : {}),
            ...(this.perLayerTableOnGpu ? { perLayerTableOnGpu: true } : {}),
            ...(this.int8Prefill ? { int8Prefill: true } : {}),
          },
          {
            onProgress: (p) => {
              this.lastProgress = p;
              for (const l of this.listeners) l(p);
            },
          },
          [],
          (id) => (this.loadRequest = id),
        )
        .then(
          (info) => {
            if (this.state === 'loading') this.state = 'ready';
            this.info = info;
            return info;
          },
          (e) => {
            if (this.state === 'loading') this.state = 'error';
            throw e;
          },
        );
    }
    this.ready.catch(() => {});
  }

  listen(listener: (p: LoadProgressDetail) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  release(): void {
    if (--this.refs > 0) return;
    const wasLoading = this.state === 'loading';
    this.state = 'released';
    this.client.forget(this);
    if (wasLoading) this.client.cancel(this.loadRequest);
    this.client.call({ type: 'unload', model: this.id }).catch(() => {});
  }
}

/** A counted reference to a shared model. Release it exactly once. */
export class ModelRef {
  private released = false;

  /** @internal Made by RullamaClient.acquire. */
  constructor(readonly model: SharedModel) {}

  /** Settles when the model is loaded (or failed to). */
  get ready(): Promise<ModelInfo> {
    return this.model.ready;
  }

  get info(): ModelInfo | null {
    return this.model.info;
  }

  /** Calls `listener` with the load progress (at once with the latest, if any). Returns an unsubscribe. */
  onProgress(listener: (p: LoadProgressDetail) => void): () => void {
    if (this.model.lastProgress) listener(this.model.lastProgress);
    return this.model.listen(listener);
  }

  /** A new conversation with its own KV cache (after the model is ready). */
  async openConversation(options: { contextSize?: number } = {}): Promise<RemoteConversation> {
    await this.model.ready;
    const id = RemoteConversation.nextId++;
    const { contextSize } = await this.model.client.call<{ contextSize: number }>({ type: 'open', model: this.model.id, conversation: id, ...(options.contextSize ? { contextSize: options.contextSize } : {}) });
    return new RemoteConversation(this.model.client, id, contextSize);
  }

  /**
   * A LoRA training job on this model: `dataset` (JSON Lines of messages, prompt/completion or
   * text records, or plain text) is parsed and split in the worker; the bad lines come back in
   * `info.problems`. With no usable example it rejects with 'bad-argument' (the problems in its
   * message). With `checkpoint`, a checkpoint of the same run in OPFS is restored.
   */
  async train(dataset: string, options: WireTrainOptions = {}): Promise<RemoteTrainer> {
    await this.model.ready;
    const id = RemoteTrainer.nextId++;
    const info = await this.model.client.call<TrainJobInfo>({ type: 'train-create', model: this.model.id, job: id, dataset, options });
    if (!info.created) {
      const reasons = info.problems.slice(0, 3).map((p) => `line ${p.line}: ${p.reason}`).join('; ');
      throw Object.assign(new RullamaError('bad-argument', `no usable training example${reasons ? ` (${reasons}${info.problems.length > 3 ? '; …' : ''})` : ''}`), { problems: info.problems });
    }
    return new RemoteTrainer(this.model.client, id, info);
  }

  tokenize(text: string): Promise<number[]> {
    return this.model.client.call({ type: 'tokenize', model: this.model.id, text });
  }

  /** Another counted reference to the same model (release each). */
  share(): ModelRef {
    if (this.released) throw new RullamaError('bad-argument', 'this model reference was released');
    this.model.refs++;
    return new ModelRef(this.model);
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    this.model.release();
  }
}

/** A conversation in the worker: a KV cache on a shared model. */
export class RemoteConversation {
  /** @internal */
  static nextId = 1;
  private closed = false;

  /** @internal */
  constructor(
    private readonly client: RullamaClient,
    readonly id: number,
    readonly contextSize: number,
  ) {}

  /** Answers the last message; pass the whole conversation each time (the cached prefix is reused). */
  chat(messages: readonly ChatMessage[], options: ChatOptions = {}): RemoteGeneration {
    const { signal, ...wire } = options;
    return this.run({ type: 'chat', conversation: this.id, messages: [...messages], options: wire }, signal);
  }

  generate(prompt: string | readonly number[], options: GenerateOptions = {}): RemoteGeneration {
    const { signal, ...wire } = options;
    return this.run({ type: 'generate', conversation: this.id, prompt: typeof prompt === 'string' ? prompt : [...prompt], options: wire }, signal);
  }

  reset(): Promise<void> {
    return this.client.call({ type: 'reset', conversation: this.id });
  }

  async saveState(): Promise<Uint8Array<ArrayBuffer>> {
    return new Uint8Array(await this.client.call<ArrayBuffer>({ type: 'save', conversation: this.id }));
  }

  loadState(bytes: Uint8Array): Promise<void> {
    const copy = bytes.slice().buffer as ArrayBuffer;
    return this.client.call({ type: 'restore', conversation: this.id, bytes: copy }, {}, [copy]);
  }

  /**
   * Applies LoRA adapters to this conversation (each at its scale), replacing the ones before;
   * [] removes them. The shared weights and other conversations are untouched; this one's KV
   * cache starts afresh. Runs after a generation in progress, and generations asked for later wait
   * for it. An adapter file is read once per model: conversations naming the same URL or Blob
   * share it. Rejects with the core's error ('bad-gguf', 'wrong-arch', 'bad-argument' for an
   * adapter of another model, 'not-found', 'io') and then changes nothing.
   */
  setAdapters(adapters: readonly AdapterInput[]): Promise<AdaptersResult> {
    let specs: AdapterSpec[];
    try {
      specs = adapters.map(toAdapterSpec);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.client.call({ type: 'adapters', conversation: this.id, adapters: specs });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.client.call({ type: 'close', conversation: this.id }).catch(() => {});
  }

  private run(request: DistributiveOmit<WorkerRequest, 'id'>, signal?: AbortSignal): RemoteGeneration {
    return new RemoteGeneration(async (onToken) => {
      if (signal?.aborted) throw new RullamaError('aborted', 'the generation was cancelled');
      let id = 0;
      let aborted = false;
      const abort = () => {
        aborted = true;
        if (id) this.client.cancel(id);
      };
      signal?.addEventListener('abort', abort, { once: true });
      try {
        return await this.client.call<GenerationResult>(request, { onToken }, [], (i) => {
          id = i;
          if (aborted) this.client.cancel(i);
        });
      } finally {
        signal?.removeEventListener('abort', abort);
      }
    });
  }
}
