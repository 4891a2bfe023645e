/**
 * The engine host: runs in the dedicated worker (src/worker/worker.ts) and answers the page's
 * requests (src/worker/protocol.ts). One Engine per loaded model; each chat element gets its own
 * Conversation on that engine's weights (its own KV cache), and the engine queues their GPU work
 * token by token.
 */
import { RullamaError } from '../core/errors.js';
import { Engine, type Conversation, type Generation } from '../core/engine.js';
import type { ModelSource } from '../core/engine.js';
import { PROTOCOL_VERSION, toWireError, type Endpoint, type LoadProgressDetail, type ModelInfo, type SourceSpec, type WorkerReply, type WorkerRequest } from './protocol.js';
import { openModelSource } from './sources.js';

interface LoadedModel {
  engine: Engine;
  info: ModelInfo;
  /** Whether a client conversation uses the engine's main conversation (its first KV cache). */
  mainTaken: boolean;
}

interface OpenConversation {
  model: number;
  conversation: Conversation;
  /** It is the engine's main conversation: reset, not disposed, on close. */
  main: boolean;
  /** Settles when the last generation started on it has ended (a reset must not land mid-step). */
  tail: Promise<unknown>;
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

  async function load(id: number, modelId: number, spec: SourceSpec, contextSize: number | undefined, signal: AbortSignal): Promise<ModelInfo> {
    const rate = new Rate();
    const progress = (p: LoadProgressDetail) => reply({ type: 'progress', id, progress: rate.measure(p) });
    const task = (async (): Promise<LoadedModel> => {
      const webgpu = gpu();
      const { source, label, owned } = await openModelSource(spec, { signal, onProgress: progress });
      const engine = await Engine.load(source as ModelSource, {
        gpu: webgpu,
        closeSource: owned,
        contextSize,
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
      };
      return { engine, info, mainTaken: false };
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
    conversations.set(conversationId, { model: modelId, conversation: conv, main, tail: Promise.resolve() });
    return { contextSize: conv.contextSize };
  }

  async function close(conversationId: number): Promise<void> {
    const c = conversations.get(conversationId);
    if (!c) return;
    conversations.delete(conversationId);
    await c.tail;
    const m = models.get(c.model);
    if (c.main) {
      if (m) m.mainTaken = false;
      try {
        c.conversation.reset();
      } catch {
        // the engine is gone
      }
    } else {
      await c.conversation.dispose();
    }
  }

  async function stream(id: number, c: OpenConversation, generation: Generation): Promise<unknown> {
    const run = (async () => {
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
        return { value: await load(request.id, request.model, request.source, request.contextSize, signal) };
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
        return { value: await stream(request.id, c, c.conversation.chat(request.messages, { ...request.options, signal })) };
      }
      case 'generate': {
        const c = conversation(request.conversation);
        return { value: await stream(request.id, c, c.conversation.generate(request.prompt, { ...request.options, signal })) };
      }
      case 'reset': {
        const c = conversation(request.conversation);
        await c.tail;
        c.conversation.reset();
        return {};
      }
      case 'save': {
        const bytes = await conversation(request.conversation).conversation.saveState();
        const buffer = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes.buffer : bytes.slice().buffer;
        return { value: buffer, transfer: [buffer] };
      }
      case 'restore':
        await conversation(request.conversation).conversation.loadState(new Uint8Array(request.bytes));
        return {};
      case 'tokenize':
        return { value: (await model(request.model)).engine.tokenize(request.text) };
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

