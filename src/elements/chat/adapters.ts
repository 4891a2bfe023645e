/**
 * The LoRA adapters of a <rullama-chat>: what its `adapter` / `adapter-scale` attributes and its
 * `adapters` property ask for, applied to its conversation in the worker without reloading the
 * model. The conversation is brought up to date when it opens, when they change while it is open,
 * and before every answer, so an answer never comes from adapters other than those asked for: a
 * change that failed (a bad file, an adapter of another model) is tried again before the next
 * answer, and shows as `rullama-error` until it succeeds or is undone.
 */
import { toAdapterSpec, type RemoteConversation } from '../../client/client.js';
import type { ChatContext } from './context.js';
import type { ChatSession } from './session.js';

/** One LoRA adapter for `<rullama-chat>`'s `adapters` property. */
export interface ChatAdapter {
  /** URL of a LoRA adapter GGUF (llama.cpp / Ollama format; relative to the page), or a File/Blob. */
  source: string | Blob;
  /** Its scale: 1 (default) applies it as trained, 0 not at all, 0.5 half. */
  scale?: number;
}

export class ChatAdapters {
  /** What each conversation has applied, as a signature of the adapter list (a new conversation has none). */
  private readonly applied = new WeakMap<RemoteConversation, string>();
  private syncing: Promise<void> | null = null;
  /** Whether applying the adapters failed (then their error, if still shown, is cleared once they apply). */
  private failed = false;
  private failure: { code?: string; message?: string } | null = null;

  constructor(
    private readonly ctx: ChatContext,
    private readonly session: ChatSession,
  ) {}

  /** The adapters asked for: the attribute's first, then the property's. */
  wanted(): ChatAdapter[] {
    const el = this.ctx.element;
    const list: ChatAdapter[] = [];
    if (el.adapter) list.push({ source: el.adapter, scale: el.adapterScale ?? 1 });
    for (const a of el.adapters ?? []) if (a && a.source) list.push(a);
    return list;
  }

  /**
   * Brings the open conversation's adapters up to what is asked for (waiting for a change under
   * way, and again if they changed meanwhile). Rejects with the worker's error.
   */
  sync(): Promise<void> {
    this.syncing ??= this.run().finally(() => (this.syncing = null));
    return this.syncing;
  }

  private async run(): Promise<void> {
    for (;;) {
      const conversation = this.session.conversation;
      if (!conversation) return;
      const wanted = this.wanted();
      // Throws 'bad-argument' for a source that is no URL or Blob, or a scale that is no number.
      const specs = wanted.map(toAdapterSpec);
      const signature = JSON.stringify(specs.map((s) => [s.key, s.scale]));
      if ((this.applied.get(conversation) ?? '[]') === signature) return;
      await conversation.setAdapters(wanted);
      this.applied.set(conversation, signature);
    }
  }

  /** Before an answer: the adapters must be applied (a failure is reported and rethrown). */
  async prepare(): Promise<void> {
    try {
      await this.sync();
      this.recovered();
    } catch (e) {
      this.failedWith(e);
      throw e; // reported by the answer
    }
  }

  /** When the conversation opens (while the chat loads): a failure fails the load. */
  async opened(): Promise<void> {
    try {
      await this.sync();
      this.failed = false;
      this.failure = null;
    } catch (e) {
      this.failedWith(e);
      throw e; // reported by the load
    }
  }

  /** The attributes or the property changed: applies them now if the chat is loaded. */
  changed(): void {
    const { ctx, session } = this;
    if (ctx.loaded) {
      const conversation = session.conversation;
      this.sync().then(
        () => this.recovered(),
        (e) => {
          if (session.conversation !== conversation) return; // the model went meanwhile
          this.failedWith(e);
          ctx.fail(e);
        },
      );
    } else if (this.failed && ctx.element.autoload) {
      // The load failed on the adapters: try again with the new ones.
      session.autoload();
    }
  }

  private failedWith(e: unknown): void {
    this.failed = true;
    this.failure = e as { code?: string; message?: string };
  }

  /** An adapter error still shown is cleared once the adapters apply. */
  private recovered(): void {
    if (!this.failed) return;
    const { ctx } = this;
    const shown = ctx.error;
    const failure = this.failure;
    this.failed = false;
    this.failure = null;
    if (ctx.state === 'error' && shown && failure && shown.code === (failure.code ?? 'unknown') && shown.message === (failure.message ?? String(failure))) {
      ctx.error = null;
      ctx.setState('idle');
    }
  }
}
