/**
 * The model behind a <rullama-chat> and its conversation in the worker: acquires the model (its
 * own, or a <rullama-model>'s), follows the load progress, opens the conversation, and lets go of
 * them when the source changes or the element leaves.
 */
import { RullamaClient, type ModelRef, type RemoteConversation } from '../../client/client.js';
import { RullamaError } from '../../core/errors.js';
import type { ModelInfo } from '../../worker/protocol.js';
import type { RullamaCancelReason } from '../events/cancel.js';
import { RullamaLoadProgressEvent } from '../events/load-progress.js';
import { RullamaReadyEvent } from '../events/ready.js';
import type { RullamaModel } from '../model/model.js';
import { hasSource, NeedsFolderError, resolveModelInput } from '../shared/model-input.js';
import type { ChatContext } from './context.js';

export interface SessionHooks {
  /** Cancels the answer being written (the model goes away). */
  cancel(reason: RullamaCancelReason): void;
  /** Prepares a newly opened conversation (a restored snapshot, adapters) before the chat is ready. */
  opened(conversation: RemoteConversation, ref: ModelRef, isCurrent: () => boolean): Promise<void>;
}

export class ChatSession {
  ref: ModelRef | null = null;
  conversation: RemoteConversation | null = null;
  private loading: Promise<ModelInfo> | null = null;
  private loadRun = 0;
  private unsubscribe: (() => void) | null = null;

  constructor(
    private readonly ctx: ChatContext,
    private readonly hooks: SessionHooks,
  ) {}

  /** Whether a load is under way. */
  get isLoading(): boolean {
    return this.loading !== null;
  }

  /** Whether the element names a model (a source, or a <rullama-model>). */
  get hasModel(): boolean {
    const el = this.ctx.element;
    return !!(el.modelRef || hasSource(el));
  }

  /** Loads when connected, named a model and not loaded or loading yet (errors are shown, not thrown). */
  autoload(): void {
    if (!this.ctx.element.isConnected || this.ctx.loaded || this.loading || !this.hasModel) return;
    this.load().catch(() => {});
  }

  /** Loads the model and opens the conversation (once; concurrent calls share the load). */
  load(fromClick = false): Promise<ModelInfo> {
    const el = this.ctx.element;
    if (this.ctx.loaded && el.modelInfo) return Promise.resolve(el.modelInfo);
    if (!this.loading) {
      const loading: Promise<ModelInfo> = this.doLoad(fromClick).finally(() => {
        if (this.loading === loading) this.loading = null;
      });
      this.loading = loading;
    }
    return this.loading;
  }

  private async doLoad(fromClick: boolean): Promise<ModelInfo> {
    const { ctx } = this;
    const el = ctx.element;
    const run = ++this.loadRun;
    const isCurrent = () => run === this.loadRun;
    ctx.error = null;
    ctx.needsFolder = null;
    ctx.progress = null;
    ctx.setState('loading');
    try {
      const ref = await this.acquire(fromClick);
      if (!isCurrent()) {
        ref.release();
        throw new RullamaError('aborted', 'the model changed while it loaded');
      }
      this.ref = ref;
      this.unsubscribe = ref.onProgress((p) => {
        if (!isCurrent()) return;
        ctx.progress = p;
        el.dispatchEvent(new RullamaLoadProgressEvent(p));
      });
      const info = await ref.ready;
      const conversation = await ref.openConversation(el.contextSize ? { contextSize: el.contextSize } : {});
      if (!isCurrent()) {
        await conversation.close();
        throw new RullamaError('aborted', 'the model changed while it loaded');
      }
      this.conversation = conversation;
      await this.hooks.opened(conversation, ref, isCurrent);
      if (!isCurrent()) throw new RullamaError('aborted', 'the model changed while it loaded');
      el.modelInfo = info;
      ctx.loaded = true;
      ctx.progress = null;
      ctx.announce(ctx.text.ready(info.name));
      ctx.setState('idle');
      el.dispatchEvent(new RullamaReadyEvent(info));
      return info;
    } catch (e) {
      if (isCurrent()) {
        this.release();
        if (e instanceof NeedsFolderError) {
          ctx.needsFolder = e;
          ctx.setState('idle');
        } else {
          ctx.fail(e);
        }
      }
      throw e;
    }
  }

  private async acquire(fromClick: boolean): Promise<ModelRef> {
    const el = this.ctx.element;
    if (el.modelRef) {
      const root = el.getRootNode() as Document | ShadowRoot;
      const model = (root.getElementById?.(el.modelRef) ?? document.getElementById(el.modelRef)) as RullamaModel | null;
      if (!model || model.localName !== 'rullama-model') throw new RullamaError('not-found', `model-ref="${el.modelRef}" names no <rullama-model> element`);
      await customElements.whenDefined('rullama-model');
      return model.acquire(fromClick);
    }
    const input = await resolveModelInput(el, fromClick);
    return RullamaClient.shared().acquire(input, {
      ...(el.contextSize ? { contextSize: el.contextSize } : {}),
      ...(el.pleOnGpu ? { perLayerTableOnGpu: true } : {}),
      ...(el.int8Prefill ? { int8Prefill: true } : {}),
      ...(el.sha256 ? { sha256: el.sha256 } : {}),
      ...(el.noCache ? { cache: false } : {}),
    });
  }

  /** Drops the model (a load under way is abandoned); the messages stay. */
  unload(reason: RullamaCancelReason): void {
    const { ctx } = this;
    this.loadRun++;
    this.loading = null;
    this.hooks.cancel(reason);
    this.release();
    ctx.loaded = false;
    ctx.element.modelInfo = null;
    ctx.progress = null;
    if (ctx.state !== 'error') ctx.setState('idle');
  }

  /** Closes the conversation and releases the model reference. */
  release(): void {
    this.unsubscribe?.();
    this.unsubscribe = null;
    void this.conversation?.close();
    this.conversation = null;
    this.ref?.release();
    this.ref = null;
  }
}
