/**
 * Saving and restoring a <rullama-chat>'s conversation in IndexedDB: the messages and the
 * conversation's KV cache, so that a reload resumes without reading the conversation again. A
 * snapshot restored before the model is loaded waits and is applied when the conversation opens.
 */
import type { ModelRef, RemoteConversation } from '../../client/client.js';
import { getConversation, putConversation, SAVED_CONVERSATION_VERSION } from '../../client/storage.js';
import type { RullamaCancelReason } from '../events/cancel.js';
import type { ChatContext } from './context.js';
import type { ChatSession } from './session.js';

export class ChatPersistence {
  private pending: { model: string; bytes: ArrayBuffer } | null = null;

  constructor(
    private readonly ctx: ChatContext,
    private readonly session: ChatSession,
    private readonly cancel: (reason: RullamaCancelReason) => void,
  ) {}

  /** The default storage key: the element's id. */
  defaultKey(): string {
    return `chat:${this.ctx.element.id || 'rullama-chat'}`;
  }

  async save(key: string): Promise<void> {
    const { conversation, ref } = this.session;
    const snapshot = conversation ? (await conversation.saveState()).buffer : null;
    await putConversation(key, {
      version: SAVED_CONVERSATION_VERSION,
      model: ref?.model.key ?? '',
      messages: this.ctx.element.messages,
      snapshot,
      savedAt: Date.now(),
    });
  }

  async restore(key: string): Promise<boolean> {
    const saved = await getConversation(key);
    if (!saved) return false;
    const el = this.ctx.element;
    this.cancel('reset');
    el.messages = saved.messages;
    el.stats = null;
    if (!saved.snapshot) return true;
    const { conversation, ref } = this.session;
    if (conversation && ref) {
      if (saved.model === ref.model.key) {
        // A snapshot that does not fit (another build, a damaged record) is dropped: the next answer reads the messages again.
        await conversation.loadState(new Uint8Array(saved.snapshot)).catch(() => conversation.reset());
      }
    } else {
      this.pending = { model: saved.model, bytes: saved.snapshot };
    }
    return true;
  }

  /** Applies a snapshot restored before the model was loaded (when it is of this model). */
  async applyPending(conversation: RemoteConversation, ref: ModelRef): Promise<void> {
    if (!this.pending) return;
    const { model, bytes } = this.pending;
    this.pending = null;
    if (model === ref.model.key) await conversation.loadState(new Uint8Array(bytes)).catch(() => {});
  }

  /** Forgets a snapshot waiting for the model. */
  clear(): void {
    this.pending = null;
  }
}
