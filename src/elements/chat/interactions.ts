/**
 * What the user does in <rullama-chat>'s UI: keys in the composer, the error panel's actions,
 * the Ollama folder button, a GGUF dropped on the chat, the code blocks' copy buttons.
 */
import type { ChatAnswers } from './answers.js';
import type { ChatContext } from './context.js';
import type { ChatSession } from './session.js';

export class ChatInteractions {
  constructor(
    private readonly ctx: ChatContext,
    private readonly session: ChatSession,
    private readonly answers: ChatAnswers,
  ) {}

  readonly onKeydown = (e: KeyboardEvent): void => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && !e.altKey && !e.ctrlKey && !e.metaKey) {
      e.preventDefault();
      void this.ctx.element.send().catch(() => {});
    } else if (e.key === 'Escape' && this.answers.active) {
      e.preventDefault();
      this.ctx.element.stop();
    }
  };

  readonly onSubmit = (e: Event): void => {
    e.preventDefault();
    void this.ctx.element.send().catch(() => {});
  };

  readonly onLoadClick = (): void => {
    this.session.load(true).catch(() => {});
  };

  readonly onFolderClick = async (): Promise<void> => {
    await this.session.load(true).catch(() => {});
    // A message sent before the folder was granted is answered now.
    const el = this.ctx.element;
    if (this.ctx.loaded && !this.answers.active && el.messages[el.messages.length - 1]?.role === 'user') void this.answers.answer().catch(() => {});
  };

  readonly onAction = (action: string): void => {
    const { ctx, session } = this;
    const el = ctx.element;
    switch (action) {
      case 'retry':
        ctx.error = null;
        ctx.setState('idle');
        void session.load().catch(() => {});
        break;
      case 'reload':
        session.unload('model-changed');
        ctx.error = null;
        void session.load().catch(() => {});
        break;
      case 'smaller-context': {
        const size = Math.max(256, Math.floor((el.contextSize ?? el.modelInfo?.contextSize ?? 4096) / 2));
        session.unload('model-changed');
        el.contextSize = size;
        ctx.error = null;
        void session.load().catch(() => {});
        break;
      }
      case 'reset':
        void el.reset();
        ctx.setState('idle');
        break;
      case 'reload-page':
        location.reload();
        break;
      default:
        ctx.error = null;
        ctx.setState('idle');
    }
  };

  readonly onDragOver = (e: DragEvent): void => {
    if (!e.dataTransfer?.types.includes('Files')) return;
    e.preventDefault();
    this.ctx.dragging = true;
  };

  readonly onDragLeave = (): void => {
    this.ctx.dragging = false;
  };

  /** A GGUF dropped on the chat becomes its model. */
  readonly onDrop = async (e: DragEvent): Promise<void> => {
    const el = this.ctx.element;
    this.ctx.dragging = false;
    const file = e.dataTransfer?.files[0];
    if (!file) return;
    e.preventDefault();
    el.file = file;
    await el.updateComplete;
    if (!this.ctx.loaded && !this.session.isLoading) this.session.load().catch(() => {});
  };

  readonly onCopy = async (e: Event): Promise<void> => {
    const button = (e.target as HTMLElement).closest?.('button[data-copy]') as HTMLButtonElement | null;
    if (!button) return;
    const code = button.parentElement?.querySelector('pre')?.textContent ?? '';
    try {
      await navigator.clipboard.writeText(code);
      button.textContent = this.ctx.text.copied;
      setTimeout(() => (button.textContent = this.ctx.text.copy), 1500);
    } catch {
      // clipboard refused (no focus or permission): nothing to do
    }
  };
}
