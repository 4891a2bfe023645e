import { LitElement, html, nothing, type PropertyValues } from 'lit';
import { RullamaClient, type ModelRef, type RemoteConversation } from '../../client/client.js';
import { getConversation, putConversation, SAVED_CONVERSATION_VERSION } from '../../client/storage.js';
import type { ChatMessage } from '../../core/chat/index.js';
import { RullamaError } from '../../core/errors.js';
import type { ChatOptions } from '../../core/engine.js';
import type { GenerateStats } from '../../core/generate.js';
import type { LoadProgressDetail, ModelInfo } from '../../worker/protocol.js';
import { RullamaCancelEvent, type RullamaCancelReason } from '../events/cancel.js';
import { RullamaErrorEvent } from '../events/error.js';
import { RullamaLoadProgressEvent } from '../events/load-progress.js';
import { RullamaMessageEvent } from '../events/message.js';
import { RullamaReadyEvent } from '../events/ready.js';
import { RullamaSendEvent } from '../events/send.js';
import { RullamaStateEvent, type RullamaChatState } from '../events/state.js';
import { RullamaTokenEvent } from '../events/token.js';
import type { RullamaModel } from '../model/model.js';
import { hasSource, NeedsFolderError, resolveModelInput } from '../shared/model-input.js';
import { progressTemplate as progressView } from '../shared/progress.js';
import { chatStyles } from './chat.styles.js';
import { splitThinking } from './markdown.js';
import { CHAT_STRINGS, type ChatStrings } from './strings.js';
import { errorPanel, MarkdownCache, transcript, type ErrorInfo } from './view.js';

const num = (v: number | null | undefined): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

interface Run {
  controller: AbortController;
  text: string;
  cancelled: RullamaCancelReason | null;
}

/**
 * `<rullama-chat>`: a chat with Gemma 4 running on the local GPU, in a worker. Two chats on a page
 * share the model's weights and keep separate conversations.
 *
 * @summary A chat UI (or, with `headless`, a chat you drive from script) over a local model.
 *
 * @attr model - URL of a GGUF file: downloaded once into the OPFS cache (resumable), then read from disk.
 * @attr sha256 - the file's expected SHA-256: the download is verified against it.
 * @attr no-cache - read the URL with HTTP range requests every time instead of caching it.
 * @attr ollama-model - an Ollama model name (`gemma4:e2b`): asks once for the Ollama models folder.
 * @attr model-ref - id of a `<rullama-model>` element to use (shared by every chat pointing at it).
 * @attr system-prompt - the system message.
 * @attr temperature, top-k, top-p, min-p, max-tokens, seed, repetition-penalty - sampling.
 * @attr context-size - this conversation's context in tokens.
 * @attr adapter - a LoRA adapter (not supported yet: loading reports 'unsupported').
 * @attr thinking - let the model think before answering (the thoughts show folded).
 * @attr overflow - 'drop-oldest' (default: old turns are dropped when the context is full) or 'error'.
 * @attr placeholder - the input's placeholder.
 * @attr autoload - load the model when connected (else on the first message or the Load button).
 * @attr headless - no UI: drive it with send()/stop() and listen to the events.
 * @attr state - reflected: idle, loading, prefill, generating, error.
 * A GGUF file dropped on the chat becomes its model (the `file` property).
 *
 * @fires rullama-load-progress - {phase, loaded, total, bytesPerSecond?, secondsLeft?}
 * @fires rullama-ready - {model} when the model is loaded
 * @fires rullama-send - {text}, cancelable; `detail.text` may be rewritten
 * @fires rullama-token - {id, text, logprob} for each token
 * @fires rullama-message - {message, stats} when an answer is complete
 * @fires rullama-state - {state, previous}
 * @fires rullama-cancel - {reason, partial} when an answer is cancelled
 * @fires rullama-error - {code, message}
 *
 * @csspart base, transcript, message, message-user, message-assistant, role, content, thinking, code-block,
 *   copy-button, stats, progress, error, error-action, load-button, composer, input, send-button, stop-button
 * @cssproperty --rullama-background, --rullama-color, --rullama-accent-color, --rullama-radius,
 *   --rullama-font-family, --rullama-mono-font-family, --rullama-user-background, --rullama-assistant-background,
 *   --rullama-chat-height
 */
export class RullamaChat extends LitElement {
  static override styles = chatStyles;
  static override properties = {
    model: { type: String },
    ollamaModel: { type: String, attribute: 'ollama-model' },
    modelRef: { type: String, attribute: 'model-ref' },
    file: { attribute: false },
    sha256: { type: String },
    noCache: { type: Boolean, attribute: 'no-cache' },
    systemPrompt: { type: String, attribute: 'system-prompt' },
    temperature: { type: Number },
    topK: { type: Number, attribute: 'top-k' },
    topP: { type: Number, attribute: 'top-p' },
    minP: { type: Number, attribute: 'min-p' },
    maxTokens: { type: Number, attribute: 'max-tokens' },
    seed: { type: Number },
    repetitionPenalty: { type: Number, attribute: 'repetition-penalty' },
    contextSize: { type: Number, attribute: 'context-size' },
    adapter: { type: String },
    thinking: { type: Boolean },
    overflow: { type: String },
    placeholder: { type: String },
    autoload: { type: Boolean },
    headless: { type: Boolean, reflect: true },
    state: { type: String, reflect: true },
    messages: { attribute: false },
    stats: { attribute: false },
    strings: { attribute: false },
    modelInfo: { state: true },
    progress: { state: true },
    error: { state: true },
    draft: { state: true },
    announcement: { state: true },
    needsFolder: { state: true },
    loaded: { state: true },
    dragging: { state: true },
  };

  model: string | null = null;
  ollamaModel: string | null = null;
  modelRef: string | null = null;
  /** A File or Blob to load (a picked or dropped GGUF); takes precedence over the attributes. */
  file: Blob | null = null;
  /** The model file's expected SHA-256 (hex): the download is verified against it. */
  sha256: string | null = null;
  /** Read the model URL with range requests instead of keeping it in the OPFS cache. */
  noCache = false;
  systemPrompt: string | null = null;
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  maxTokens?: number;
  seed?: number;
  repetitionPenalty?: number;
  contextSize?: number;
  adapter: string | null = null;
  thinking = false;
  overflow: 'drop-oldest' | 'error' = 'drop-oldest';
  placeholder: string | null = null;
  autoload = false;
  headless = false;
  state: RullamaChatState = 'idle';
  /** The conversation (user and assistant messages; a leading system message overrides system-prompt). */
  messages: ChatMessage[] = [];
  /** Stats of the last answer. */
  stats: GenerateStats | null = null;
  /** Every user-facing string (i18n); missing keys fall back to CHAT_STRINGS. */
  strings: Partial<ChatStrings> = CHAT_STRINGS;
  /** The loaded model, once ready. */
  modelInfo: ModelInfo | null = null;
  protected progress: LoadProgressDetail | null = null;
  protected error: ErrorInfo | null = null;
  protected draft: string | null = null;
  protected announcement = '';
  protected needsFolder: NeedsFolderError | null = null;
  protected loaded = false;
  protected dragging = false;

  private ref: ModelRef | null = null;
  private conversation: RemoteConversation | null = null;
  private loading: Promise<ModelInfo> | null = null;
  private loadRun = 0;
  private run: Run | null = null;
  private unsubscribe: (() => void) | null = null;
  private teardownTimer: ReturnType<typeof setTimeout> | null = null;
  private pendingSnapshot: { model: string; bytes: ArrayBuffer } | null = null;
  private readonly markdown = new MarkdownCache();
  /** Whether the transcript was scrolled to its end before this update (then it follows new text). */
  private pinned = true;

  /** The strings in use (replacements merged over the defaults). */
  get text(): ChatStrings {
    return this.strings === CHAT_STRINGS ? CHAT_STRINGS : { ...CHAT_STRINGS, ...this.strings };
  }

  override connectedCallback(): void {
    super.connectedCallback();
    if (this.teardownTimer) {
      clearTimeout(this.teardownTimer);
      this.teardownTimer = null;
    } else if (this.autoload) {
      this.autoloadNow();
    }
  }

  override disconnectedCallback(): void {
    super.disconnectedCallback();
    // A move in the DOM reconnects at once: only a real removal frees the conversation.
    this.teardownTimer = setTimeout(() => {
      this.teardownTimer = null;
      this.unload('disconnected');
    }, 0);
  }

  protected override willUpdate(changed: PropertyValues<this>): void {
    const t = this.transcriptElement;
    this.pinned = !t || t.scrollHeight - t.scrollTop - t.clientHeight < 48;
    // A new model source: drop the old model (the conversation stays) and load the new one if autoload.
    const sourceChanged = (['model', 'ollamaModel', 'modelRef', 'file', 'adapter', 'sha256', 'noCache'] as const).some((k) => changed.has(k) && changed.get(k) !== undefined);
    if (sourceChanged && (this.loaded || this.loading)) {
      this.unload('model-changed');
      if (this.autoload) this.autoloadNow();
    } else if (changed.has('autoload') && this.autoload && this.isConnected) {
      this.autoloadNow();
    }
  }

  private get transcriptElement(): HTMLElement | null {
    return this.renderRoot?.querySelector?.('.transcript') ?? null;
  }

  protected override updated(changed: PropertyValues<this>): void {
    // Follow the conversation as it grows, unless the reader scrolled up.
    const t = this.transcriptElement;
    const grew = changed.has('messages') || (changed as Map<PropertyKey, unknown>).has('draft');
    if (t && grew && (this.pinned || changed.has('messages'))) t.scrollTop = t.scrollHeight;
  }

  private autoloadNow(): void {
    if (!this.isConnected || this.loaded || this.loading || !(this.modelRef || hasSource(this))) return;
    this.load().catch(() => {});
  }

  /**
   * Loads the model (or joins the page's copy of it) and opens this chat's conversation. Resolves
   * with the model's summary. Called by autoload, the Load button and the first send.
   */
  load(fromClick = false): Promise<ModelInfo> {
    if (this.loaded && this.modelInfo) return Promise.resolve(this.modelInfo);
    if (!this.loading) {
      const loading: Promise<ModelInfo> = this.doLoad(fromClick).finally(() => {
        if (this.loading === loading) this.loading = null;
      });
      this.loading = loading;
    }
    return this.loading;
  }

  private async doLoad(fromClick: boolean): Promise<ModelInfo> {
    const run = ++this.loadRun;
    this.error = null;
    this.needsFolder = null;
    this.progress = null;
    this.setState('loading');
    try {
      if (this.adapter) throw new RullamaError('unsupported', this.text.adapterUnsupported);
      const ref = await this.acquire(fromClick);
      if (run !== this.loadRun) {
        ref.release();
        throw new RullamaError('aborted', 'the model changed while it loaded');
      }
      this.ref = ref;
      this.unsubscribe = ref.onProgress((p) => {
        if (run !== this.loadRun) return;
        this.progress = p;
        this.dispatchEvent(new RullamaLoadProgressEvent(p));
      });
      const info = await ref.ready;
      const conversation = await ref.openConversation(this.contextSize ? { contextSize: this.contextSize } : {});
      if (run !== this.loadRun) {
        await conversation.close();
        throw new RullamaError('aborted', 'the model changed while it loaded');
      }
      this.conversation = conversation;
      if (this.pendingSnapshot) {
        const { model, bytes } = this.pendingSnapshot;
        this.pendingSnapshot = null;
        if (model === ref.model.key) await conversation.loadState(new Uint8Array(bytes)).catch(() => {});
      }
      this.modelInfo = info;
      this.loaded = true;
      this.progress = null;
      this.announce(this.text.ready(info.name));
      this.setState('idle');
      this.dispatchEvent(new RullamaReadyEvent(info));
      return info;
    } catch (e) {
      if (run === this.loadRun) {
        this.releaseModel();
        if (e instanceof NeedsFolderError) {
          this.needsFolder = e;
          this.setState('idle');
        } else {
          this.fail(e);
        }
      }
      throw e;
    }
  }

  private async acquire(fromClick: boolean): Promise<ModelRef> {
    if (this.modelRef) {
      const root = this.getRootNode() as Document | ShadowRoot;
      const el = (root.getElementById?.(this.modelRef) ?? document.getElementById(this.modelRef)) as RullamaModel | null;
      if (!el || el.localName !== 'rullama-model') throw new RullamaError('not-found', `model-ref="${this.modelRef}" names no <rullama-model> element`);
      await customElements.whenDefined('rullama-model');
      return el.acquire(fromClick);
    }
    const input = await resolveModelInput(this, fromClick);
    return RullamaClient.shared().acquire(input, {
      ...(this.contextSize ? { contextSize: this.contextSize } : {}),
      ...(this.sha256 ? { sha256: this.sha256 } : {}),
      ...(this.noCache ? { cache: false } : {}),
    });
  }

  /**
   * Sends a user message (default: the input's text) and streams the answer. Resolves with the
   * answer, or null when a `rullama-send` listener vetoed it or it was cancelled. A send while
   * an answer is being written cancels that answer.
   */
  async send(text?: string): Promise<ChatMessage | null> {
    const input = this.input;
    const event = new RullamaSendEvent(text ?? input?.value ?? '');
    this.dispatchEvent(event);
    if (event.defaultPrevented) return null;
    const content = String(event.detail.text ?? '');
    if (!content.trim()) return null;
    if (this.run) this.cancelRun('superseded');
    if (text === undefined && input) input.value = '';
    this.error = null;
    this.messages = [...this.messages, { role: 'user', content }];
    return this.answer();
  }

  private async answer(): Promise<ChatMessage | null> {
    const run: Run = { controller: new AbortController(), text: '', cancelled: null };
    this.run = run;
    if (!this.loaded) {
      try {
        await this.load();
      } catch (e) {
        this.finishRun(run);
        if (e instanceof NeedsFolderError) return null; // answered once the folder is granted
        throw e; // already reported by load()
      }
    }
    if (this.run !== run) return null;
    try {
      if (!this.conversation) throw new RullamaError('bad-argument', 'the conversation is closed');
      this.draft = '';
      const generation = this.conversation.chat(this.prompt(this.messages), { ...this.options(), signal: run.controller.signal });
      this.setState('prefill');
      for await (const token of generation) {
        if (this.run !== run) break;
        if (this.state === 'prefill') this.setState('generating');
        run.text += token.text;
        this.draft = run.text;
        this.dispatchEvent(new RullamaTokenEvent({ id: token.id, text: token.text, logprob: token.logprob }));
      }
      const result = await generation.result;
      if (this.run !== run) return null;
      const message = this.assistantMessage(result.text);
      this.messages = [...this.messages, message];
      this.stats = result.stats;
      this.finishRun(run);
      this.announce(this.text.answered(typeof message.content === 'string' ? message.content.slice(0, 500) : ''));
      this.setState('idle');
      this.dispatchEvent(new RullamaMessageEvent(message, result.stats));
      return message;
    } catch (e) {
      // A cancelled run was wound up by cancelRun (partial answer kept, state, event).
      if (run.cancelled) return null;
      this.finishRun(run);
      if ((e as RullamaError).code === 'aborted') {
        this.setState('idle');
        return null;
      }
      this.fail(e);
      throw e;
    }
  }

  private finishRun(run: Run): void {
    if (this.run === run) this.run = null;
    this.draft = null;
  }

  private assistantMessage(text: string): ChatMessage {
    const { thinking, answer } = splitThinking(text);
    return thinking ? { role: 'assistant', content: answer, thinking } : { role: 'assistant', content: answer };
  }

  private prompt(messages: ChatMessage[]): ChatMessage[] {
    const first = messages[0];
    if (!this.systemPrompt || first?.role === 'system' || first?.role === 'developer') return messages;
    return [{ role: 'system', content: this.systemPrompt }, ...messages];
  }

  private options(): ChatOptions {
    const o: ChatOptions = { overflow: this.overflow === 'error' ? 'error' : 'drop-oldest', template: { thinking: this.thinking } };
    const set = <K extends keyof ChatOptions>(key: K, value: ChatOptions[K] | undefined) => {
      if (value !== undefined) o[key] = value;
    };
    set('temperature', num(this.temperature));
    set('topK', num(this.topK));
    set('topP', num(this.topP));
    set('minP', num(this.minP));
    set('maxTokens', num(this.maxTokens));
    set('seed', num(this.seed));
    set('repetitionPenalty', num(this.repetitionPenalty));
    return o;
  }

  /** Stops the answer being written (the text so far is kept). */
  stop(): void {
    this.cancelRun('stop');
  }

  /** Forgets the conversation (messages, stats and the KV cache). */
  async reset(): Promise<void> {
    this.cancelRun('reset');
    this.messages = [];
    this.stats = null;
    this.error = null;
    this.pendingSnapshot = null;
    await this.conversation?.reset();
  }

  /**
   * Saves the messages and the conversation's KV cache in IndexedDB under `key` (default: the
   * element's id), so that restoreConversation resumes without reading the conversation again.
   */
  async saveConversation(key = this.storageKey()): Promise<void> {
    const snapshot = this.conversation ? (await this.conversation.saveState()).buffer : null;
    await putConversation(key, {
      version: SAVED_CONVERSATION_VERSION,
      model: this.ref?.model.key ?? '',
      messages: this.messages,
      snapshot,
      savedAt: Date.now(),
    });
  }

  /** Restores what saveConversation kept under `key`. Resolves false when nothing was saved. */
  async restoreConversation(key = this.storageKey()): Promise<boolean> {
    const saved = await getConversation(key);
    if (!saved) return false;
    this.cancelRun('reset');
    this.messages = saved.messages;
    this.stats = null;
    if (!saved.snapshot) return true;
    if (this.conversation && this.ref) {
      if (saved.model === this.ref.model.key) {
        // A snapshot that does not fit (another build, a damaged record) is dropped: the next answer reads the messages again.
        await this.conversation.loadState(new Uint8Array(saved.snapshot)).catch(() => this.conversation?.reset());
      }
    } else {
      this.pendingSnapshot = { model: saved.model, bytes: saved.snapshot };
    }
    return true;
  }

  private storageKey(): string {
    return `chat:${this.id || 'rullama-chat'}`;
  }

  private cancelRun(reason: RullamaCancelReason): void {
    const run = this.run;
    if (!run) return;
    run.cancelled = reason;
    this.run = null;
    this.draft = null;
    this.dispatchEvent(new RullamaCancelEvent({ reason, partial: run.text }));
    run.controller.abort(new RullamaError('aborted', `cancelled (${reason})`));
    // The answer so far stays in the conversation (a reset forgets it with the rest).
    if (reason !== 'reset' && run.text.trim()) this.messages = [...this.messages, this.assistantMessage(run.text)];
    if (this.state === 'prefill' || this.state === 'generating') this.setState('idle');
  }

  private unload(reason: RullamaCancelReason): void {
    this.loadRun++;
    this.loading = null;
    this.cancelRun(reason);
    this.releaseModel();
    this.loaded = false;
    this.modelInfo = null;
    this.progress = null;
    if (this.state !== 'error') this.setState('idle');
  }

  private releaseModel(): void {
    this.unsubscribe?.();
    this.unsubscribe = null;
    void this.conversation?.close();
    this.conversation = null;
    this.ref?.release();
    this.ref = null;
  }

  private fail(e: unknown): void {
    const event = RullamaErrorEvent.from(e);
    this.error = { ...event.detail };
    if (event.detail.code === 'device-lost') this.unload('model-changed');
    this.setState('error');
    this.dispatchEvent(event);
  }

  private setState(state: RullamaChatState): void {
    if (state === this.state) return;
    const previous = this.state;
    this.state = state;
    this.dispatchEvent(new RullamaStateEvent(state, previous));
  }

  private announce(text: string): void {
    // Re-setting the same text would not be announced again.
    this.announcement = this.announcement === text ? `${text}\u00a0` : text;
  }

  private get input(): HTMLTextAreaElement | null {
    return this.renderRoot?.querySelector('textarea') ?? null;
  }

  // ----------------------------------------------------------------------------- view

  private onKeydown(e: KeyboardEvent): void {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && !e.altKey && !e.ctrlKey && !e.metaKey) {
      e.preventDefault();
      void this.send().catch(() => {});
    } else if (e.key === 'Escape' && this.run) {
      e.preventDefault();
      this.stop();
    }
  }

  private async onFolderClick(): Promise<void> {
    await this.load(true).catch(() => {});
    // A message sent before the folder was granted is answered now.
    if (this.loaded && !this.run && this.messages[this.messages.length - 1]?.role === 'user') void this.answer().catch(() => {});
  }

  private onAction(action: string): void {
    switch (action) {
      case 'retry':
        this.error = null;
        this.setState('idle');
        void this.load().catch(() => {});
        break;
      case 'reload':
        this.unload('model-changed');
        this.error = null;
        void this.load().catch(() => {});
        break;
      case 'smaller-context': {
        const size = Math.max(256, Math.floor((this.contextSize ?? this.modelInfo?.contextSize ?? 4096) / 2));
        this.unload('model-changed');
        this.contextSize = size;
        this.error = null;
        void this.load().catch(() => {});
        break;
      }
      case 'reset':
        void this.reset();
        this.setState('idle');
        break;
      case 'reload-page':
        location.reload();
        break;
      default:
        this.error = null;
        this.setState('idle');
    }
  }

  private onDragOver(e: DragEvent): void {
    if (!e.dataTransfer?.types.includes('Files')) return;
    e.preventDefault();
    this.dragging = true;
  }

  /** A GGUF dropped on the chat becomes its model. */
  private async onDrop(e: DragEvent): Promise<void> {
    this.dragging = false;
    const file = e.dataTransfer?.files[0];
    if (!file) return;
    e.preventDefault();
    this.file = file;
    await this.updateComplete;
    if (!this.loaded && !this.loading) this.load().catch(() => {});
  }

  private async onCopy(e: Event): Promise<void> {
    const button = (e.target as HTMLElement).closest?.('button[data-copy]') as HTMLButtonElement | null;
    if (!button) return;
    const code = button.parentElement?.querySelector('pre')?.textContent ?? '';
    try {
      await navigator.clipboard.writeText(code);
      button.textContent = this.text.copied;
      setTimeout(() => (button.textContent = this.text.copy), 1500);
    } catch {
      // clipboard refused (no focus or permission): nothing to do
    }
  }

  override render() {
    if (this.headless) return html`<div class="sr-only" role="status" aria-live="polite">${this.announcement}</div>`;
    const s = this.text;
    const busy = this.state === 'prefill' || this.state === 'generating';
    const canLoad = !this.loaded && !this.loading && !this.needsFolder && !this.error && (this.modelRef || hasSource(this));
    return html`
      <div
        part="base"
        class=${this.dragging ? 'base dragging' : 'base'}
        @dragover=${this.onDragOver}
        @dragleave=${() => (this.dragging = false)}
        @drop=${this.onDrop}
      >
        ${this.state === 'loading' ? progressView(this.progress, s) : nothing}
        ${this.needsFolder
          ? html`<div class="notice" part="folder">
              <p>${s.ollamaFolderHint(this.needsFolder.model)}</p>
              <button type="button" part="load-button" @click=${this.onFolderClick}>${this.needsFolder.status === 'none' ? s.pickOllamaFolder : s.grantOllamaFolder}</button>
            </div>`
          : nothing}
        ${canLoad && !this.autoload ? html`<div class="notice"><button type="button" part="load-button" @click=${() => this.load(true).catch(() => {})}>${s.loadModel}</button></div>` : nothing}
        ${!this.modelRef && !hasSource(this) && !this.loaded ? html`<p class="muted notice">${s.noModel}</p>` : nothing}
        ${transcript(this.messages, this.draft, this.state, s, this.markdown, (e) => this.onCopy(e))}
        ${this.error ? errorPanel(this.error, s, this.contextSize ?? this.modelInfo?.contextSize, (a) => this.onAction(a)) : nothing}
        ${this.stats ? html`<p part="stats" class="muted stats">${s.stats(this.stats.decodeTokensPerSecond, this.stats.timeToFirstTokenMs, this.stats.generatedTokens)}</p>` : nothing}
        <form part="composer" class="composer" @submit=${(e: Event) => { e.preventDefault(); void this.send().catch(() => {}); }}>
          <label class="sr-only" for="input">${s.inputLabel}</label>
          <textarea id="input" part="input" rows="2" dir="auto" placeholder=${this.placeholder ?? s.placeholder} @keydown=${this.onKeydown}></textarea>
          ${busy
            ? html`<button type="button" part="stop-button" class="stop" @click=${() => this.stop()}>${s.stop}</button>`
            : html`<button type="submit" part="send-button" ?disabled=${this.state === 'loading'}>${s.send}</button>`}
        </form>
        <div class="sr-only" role="status" aria-live="polite" aria-atomic="true">${this.announcement}</div>
      </div>
    `;
  }
}
