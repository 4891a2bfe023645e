/**
 * The engine host: runs in the dedicated worker (src/worker/worker.ts) and answers the page's
 * requests (src/worker/protocol.ts). One Engine per loaded model; each chat element gets its own
 * Conversation on that engine's weights (its own KV cache), and the engine queues their GPU work
 * token by token.
 */
import { RullamaError } from '../core/errors.js';
import { Engine, type Conversation, type Generation } from '../core/engine.js';
import type { ModelSource } from '../core/engine.js';
import type { LoraAdapter } from '../core/lora/index.js';
import {
  PROTOCOL_VERSION,
  toWireError,
  type AdapterSpec,
  type AdaptersResult,
  type Endpoint,
  type LoadProgressDetail,
  type ModelInfo,
  type SourceSpec,
  type WorkerReply,
  type WorkerRequest,
} from './protocol.js';
import { openAdapterSource, openModelSource } from './sources.js';
import { TrainingJobs } from './training.js';

/** An adapter read for a model, shared by the conversations that use it. */
interface CachedAdapter {
  key: string;
  adapter: Promise<LoraAdapter>;
  /** Conversations using it, or waiting for it: at 0 it is forgotten. */
  users: number;
}

interface LoadedModel {
  engine: Engine;
  info: ModelInfo;
  /** Whether a client conversation uses the engine's main conversation (its first KV cache). */
  mainTaken: boolean;
  /** Adapters read for this model, by AdapterSpec.key: two chats with the same adapter read it once. */
  adapters: Map<string, CachedAdapter>;
}

interface OpenConversation {
  model: number;
  conversation: Conversation;
  /** It is the engine's main conversation: reset, not disposed, on close. */
  main: boolean;
  /** Settles when the last generation started on it has ended (a reset must not land mid-step). */
  tail: Promise<unknown>;
  /** Settles when the last adapter change asked for has been made (generations wait for it). */
  adapting: Promise<unknown>;
  /** The cached adapters it applies. */
  adapters: CachedAdapter[];
}

/** Bytes per second and seconds left of a phase that moves bytes. */
class Rate {
  private phase = '';
  private start = 0;
  private startBytes = 0;

  measure(p: LoadProgressDetail): LoadProgressDetail {
    if (p.total <= 0) return p;
    const now = performance.now();
    if (p.phase !== this.phase) {
      this.phase = p.phase;
      this.start = now;
      this.startBytes = p.loaded;
      return p;
    }
    const seconds = (now - this.start) / 1000;
    if (seconds < 0.25 || p.loaded <= this.startBytes) return p;
    const bytesPerSecond = (p.loaded - this.startBytes) / seconds;
    return { ...p, bytesPerSecond, secondsLeft: (p.total - p.loaded) / bytesPerSecond };
  }
}

export interface HostOptions {
  /** The WebGPU entry point (default: `navigator.gpu` of the worker). */
  gpu?: GPU;
}

/** Serves engine requests on `endpoint` (the worker's global scope, or a MessagePort). */
export function serveEngine(endpoint: Endpoint, options: HostOptions = {}): void {
  const models = new Map<number, LoadedModel>();
  const loading = new Map<number, Promise<LoadedModel>>();
  const conversations = new Map<number, OpenConversation>();
  const running = new Map<number, AbortController>();
  const training = new TrainingJobs();

  const reply = (message: WorkerReply, transfer: Transferable[] = []) => endpoint.postMessage(message, transfer);
  const gpu = (): GPU => {
    const found = options.gpu ?? (globalThis.navigator as (Navigator & { gpu?: GPU }) | undefined)?.gpu;
    if (!found) throw new RullamaError('no-webgpu', 'this browser has no WebGPU (navigator.gpu is missing)');
    return found;
  };
  const model = async (id: number): Promise<LoadedModel> => {
    const m = models.get(id) ?? (await loading.get(id));
    if (!m) throw new RullamaError('bad-argument', `model ${id} is not loaded`);
    return m;
  };
  const conversation = (id: number): OpenConversation => {
    const c = conversations.get(id);
    if (!c) throw new RullamaError('bad-argument', `conversation ${id} is not open`);
    return c;
  };

  async function load(id: number, modelId: number, spec: SourceSpec, options: { contextSize?: number; perLayerTableOnGpu?: boolean; int8Prefill?: boolean }, signal: AbortSignal): Promise<ModelInfo> {
    const rate = new Rate();
    const progress = (p: LoadProgressDetail) => reply({ type: 'progress', id, progress: rate.measure(p) });
    const task = (async (): Promise<LoadedModel> => {
      const webgpu = gpu();
      const { source, label, owned } = await openModelSource(spec, { signal, onProgress: progress });
      const engine = await Engine.load(source as ModelSource, {
        gpu: webgpu,
        closeSource: owned,
        contextSize: options.contextSize,
        perLayerTableOnGpu: options.perLayerTableOnGpu === true,
        int8Prefill: options.int8Prefill === true,
        signal,
        onProgress: (p) => progress({ phase: p.phase, loaded: p.loaded, total: p.total }),
      });
      const config = engine.model.config;
      const info: ModelInfo = {
        name: label,
        architecture: config.architecture,
        layers: config.layerCount,
        width: config.width,
        vocabSize: config.vocabSize,
        contextLength: config.contextLength,
        contextSize: engine.model.contextSize,
        gpuBytes: engine.gpuBytes,
        int8Prefill: engine.model.int8Prefill,
      };
      return { engine, info, mainTaken: false, adapters: new Map() };
    })();
    loading.set(modelId, task);
    try {
      const loaded = await task;
      if (!loading.has(modelId)) {
        // Unloaded while loading.
        await loaded.engine.dispose();
        throw new RullamaError('aborted', 'the model was released while it loaded');
      }
      models.set(modelId, loaded);
      return loaded.info;
    } finally {
      loading.delete(modelId);
    }
  }

  async function unload(modelId: number): Promise<void> {
    loading.delete(modelId);
    const m = models.get(modelId);
    await training.disposeModel(modelId);
    models.delete(modelId);
    for (const [id, c] of conversations) if (c.model === modelId) conversations.delete(id);
    await m?.engine.dispose();
  }

  async function open(modelId: number, conversationId: number, contextSize?: number): Promise<{ contextSize: number }> {
    const m = await model(modelId);
    let conv: Conversation;
    let main = false;
    if (!m.mainTaken && (contextSize === undefined || contextSize === m.engine.main.contextSize)) {
      m.mainTaken = main = true;
      conv = m.engine.main;
      // Left as its last user left it: generation reuses only the prefix a new conversation shares.
    } else {
      conv = await m.engine.createConversation(contextSize === undefined ? {} : { contextSize });
    }
    conversations.set(conversationId, { model: modelId, conversation: conv, main, tail: Promise.resolve(), adapting: Promise.resolve(), adapters: [] });
    return { contextSize: conv.contextSize };
  }

  async function close(conversationId: number): Promise<void> {
    const c = conversations.get(conversationId);
    if (!c) return;
    conversations.delete(conversationId);
    await c.adapting;
    await c.tail;
    const m = models.get(c.model);
    if (m) dropAdapters(m, c.adapters);
    c.adapters = [];
    if (c.main) {
      try {
        // The next chat to take the main conversation finds it as a new one: no adapters, no cache.
        if (c.conversation.adapters.length > 0) await c.conversation.setAdapters([]);
        c.conversation.reset();
      } catch {
        // the engine is gone
      }
      if (m) m.mainTaken = false;
    } else {
      await c.conversation.dispose();
    }
  }

  /** Takes a reference to the adapter at `spec` for model `m`, reading it unless a conversation has already. */
  function takeAdapter(m: LoadedModel, spec: AdapterSpec): { entry: CachedAdapter; read: boolean } {
    const cached = m.adapters.get(spec.key);
    if (cached) {
      cached.users++;
      return { entry: cached, read: false };
    }
    const source = spec.source;
    // A trained adapter this worker still holds applies as is; else its GGUF is read like a file.
    const held = source.kind === 'trained' ? training.exportedAdapter(source.job, modelIdOf(m), source.version) : null;
    const adapter = held ? Promise.resolve(held) : openAdapterSource(source).then((blob) => m.engine.loadAdapter(blob));
    const entry: CachedAdapter = { key: spec.key, adapter, users: 1 };
    m.adapters.set(spec.key, entry);
    // A file that failed is read again next time (it may have been fixed).
    entry.adapter.catch(() => m.adapters.get(spec.key) === entry && m.adapters.delete(spec.key));
    return { entry, read: true };
  }

  function modelIdOf(m: LoadedModel): number {
    for (const [id, loaded] of models) if (loaded === m) return id;
    return -1;
  }

  function dropAdapters(m: LoadedModel, entries: readonly CachedAdapter[]): void {
    for (const entry of entries) {
      if (--entry.users <= 0 && m.adapters.get(entry.key) === entry) m.adapters.delete(entry.key);
    }
  }

  /** Replaces the conversation's adapters, after the changes asked for before (in order). */
  function setAdapters(c: OpenConversation, specs: readonly AdapterSpec[]): Promise<AdaptersResult> {
    const run = c.adapting.then(async (): Promise<AdaptersResult> => {
      const m = await model(c.model);
      const taken: CachedAdapter[] = [];
      try {
        let read = 0;
        for (const spec of specs) {
          const t = takeAdapter(m, spec);
          taken.push(t.entry);
          if (t.read) read++;
        }
        const adapters = await Promise.all(taken.map((t) => t.adapter));
        await c.conversation.setAdapters(adapters.map((adapter, i) => ({ adapter, scale: specs[i]!.scale ?? 1 })));
        dropAdapters(m, c.adapters);
        c.adapters = taken;
        return { read };
      } catch (e) {
        dropAdapters(m, taken);
        throw e;
      }
    });
    c.adapting = run.catch(() => {});
    return run;
  }

  async function stream(id: number, c: OpenConversation, start: () => Generation): Promise<unknown> {
    const run = (async () => {
      // An adapter change asked for before this generation applies to it.
      await c.adapting;
      const generation = start();
      for await (const token of generation) reply({ type: 'token', id, token });
      return generation.result;
    })();
    c.tail = run.catch(() => {});
    return run;
  }

  async function handle(request: WorkerRequest, signal: AbortSignal): Promise<{ value?: unknown; transfer?: Transferable[] }> {
    switch (request.type) {
      case 'hello':
        if (request.version !== PROTOCOL_VERSION) {
          throw new RullamaError('unsupported', `the rullama worker speaks protocol ${PROTOCOL_VERSION}, the page ${request.version}: load both from the same build`);
        }
        return { value: { version: PROTOCOL_VERSION, webgpu: !!(options.gpu ?? (globalThis.navigator as Navigator & { gpu?: GPU })?.gpu) } };
      case 'load':
        return { value: await load(request.id, request.model, request.source, { contextSize: request.contextSize, perLayerTableOnGpu: request.perLayerTableOnGpu, int8Prefill: request.int8Prefill }, signal) };
      case 'unload':
        await unload(request.model);
        return {};
      case 'open':
        return { value: await open(request.model, request.conversation, request.contextSize) };
      case 'close':
        await close(request.conversation);
        return {};
      case 'chat': {
        const c = conversation(request.conversation);
        return { value: await stream(request.id, c, () => c.conversation.chat(request.messages, { ...request.options, signal })) };
      }
      case 'generate': {
        const c = conversation(request.conversation);
        return { value: await stream(request.id, c, () => c.conversation.generate(request.prompt, { ...request.options, signal })) };
      }
      case 'reset': {
        const c = conversation(request.conversation);
        await c.adapting;
        await c.tail;
        c.conversation.reset();
        return {};
      }
      case 'save': {
        const c = conversation(request.conversation);
        await c.adapting;
        const bytes = await c.conversation.saveState();
        const buffer = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes.buffer : bytes.slice().buffer;
        return { value: buffer, transfer: [buffer] };
      }
      case 'restore': {
        const c = conversation(request.conversation);
        await c.adapting;
        await c.conversation.loadState(new Uint8Array(request.bytes));
        return {};
      }
      case 'adapters':
        return { value: await setAdapters(conversation(request.conversation), request.adapters) };
      case 'tokenize':
        return { value: (await model(request.model)).engine.tokenize(request.text) };
      case 'train-create': {
        const m = await model(request.model);
        return { value: await training.create(request.job, request.model, m.engine, request.dataset, request.options) };
      }
      case 'train-run':
        return { value: await training.run(request.job, signal, (progress) => reply({ type: 'train-progress', id: request.id, progress })) };
      case 'train-export': {
        const { bytes, version } = await training.export(request.job, request.name);
        const buffer = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? (bytes.buffer as ArrayBuffer) : (bytes.slice().buffer as ArrayBuffer);
        return { value: { bytes: buffer, version }, transfer: [buffer] };
      }
      case 'train-checkpoint':
        return { value: await training.checkpoint(request.job) };
      case 'train-dispose':
        await training.dispose(request.job, request.forget);
        return {};
      case 'cancel':
        running.get(request.target)?.abort(new RullamaError('aborted', 'cancelled by the page'));
        return {};
    }
  }

  endpoint.addEventListener('message', (event: MessageEvent) => {
    const request = event.data as WorkerRequest;
    if (!request || typeof request !== 'object' || typeof request.id !== 'number') return;
    const controller = new AbortController();
    if (request.type !== 'cancel') running.set(request.id, controller);
    handle(request, controller.signal).then(
      ({ value, transfer }) => reply({ type: 'done', id: request.id, value }, transfer),
      (error) => reply({ type: 'error', id: request.id, error: toWireError(controller.signal.aborted && !(error as RullamaError)?.code ? new RullamaError('aborted', 'cancelled') : error) }),
    ).finally(() => running.delete(request.id));
  });
}

