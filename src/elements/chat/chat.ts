import { LitElement, type PropertyValues } from 'lit';
import type { ChatMessage } from '../../core/chat/index.js';
import type { GenerateStats } from '../../core/generate.js';
import type { LoadProgressDetail, ModelInfo } from '../../worker/protocol.js';
import { RullamaErrorEvent } from '../events/error.js';
import { RullamaStateEvent, type RullamaChatState } from '../events/state.js';
import type { NeedsFolderError } from '../shared/model-input.js';
import { ChatAdapters, type ChatAdapter } from './adapters.js';
import { ChatAnswers } from './answers.js';
import { chatStyles } from './chat.styles.js';
import type { ChatContext } from './context.js';
import { ChatInteractions } from './interactions.js';
import { ChatPersistence } from './persistence.js';
import { ChatSession } from './session.js';
import { CHAT_STRINGS, type ChatStrings } from './strings.js';
import { chatTemplate } from './template.js';
import { MarkdownCache, type ErrorInfo } from './view.js';

/** Properties whose change means another model: the old one is dropped (the conversation stays). */
const SOURCE_PROPERTIES = ['model', 'ollamaModel', 'modelRef', 'file', 'sha256', 'noCache'] as const;
/** Properties whose change swaps the conversation's LoRA adapters (the model stays loaded). */
const ADAPTER_PROPERTIES = ['adapter', 'adapterScale', 'adapters'] as const;

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
 * @attr ple-on-gpu - keep the per-layer-embedding table on the GPU (E2B: 4.7 GB more GPU memory) for
 *   faster decoding, when this chat loads the model.
 * @attr int8-prefill - prefill's Q4_K and Q6_K matmuls in 8-bit integers (faster prompts on GPUs with
 *   fast dot4I8Packed, whose logits differ from f32 by that rounding), when this chat loads the model.
 * @attr adapter - URL of a LoRA adapter GGUF (llama.cpp / Ollama format) applied to this chat's
 *   conversation; changing or removing it swaps the adapter without reloading the model (the
 *   conversation's KV cache starts afresh; the messages stay). A bad file or an adapter of another
 *   model fires `rullama-error` with the core's code and no answer is written until it is fixed.
 * @attr adapter-scale - the adapter's scale (default 1: as trained).
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
    pleOnGpu: { type: Boolean, attribute: 'ple-on-gpu' },
    int8Prefill: { type: Boolean, attribute: 'int8-prefill' },
    adapter: { type: String },
    adapterScale: { type: Number, attribute: 'adapter-scale' },
    adapters: { attribute: false },
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
  /** Keep the model's per-layer-embedding table on the GPU (E2B: 4.7 GB more GPU memory) for faster decoding, when this chat loads the model. */
  pleOnGpu = false;
  /** Prefill's Q4_K and Q6_K matmuls in 8-bit integers (faster prompts, whose logits differ from f32 by that rounding), when this chat loads the model. */
  int8Prefill = false;
  /** URL of a LoRA adapter GGUF for this chat's conversation (the `adapter` attribute); null for none. */
  adapter: string | null = null;
  /** The scale of `adapter` (the `adapter-scale` attribute; default 1). */
  adapterScale?: number;
  /**
   * More LoRA adapters, each a URL or a File/Blob with its scale (default 1), applied after
   * `adapter`. Assign a new array to change them: they apply at once to this chat's conversation
   * without reloading the model, and [] removes them.
   */
  adapters: ChatAdapter[] = [];
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

  private readonly context: ChatContext = this.createContext();
  private readonly session: ChatSession = new ChatSession(this.context, {
    cancel: (reason) => this.answers.cancel(reason),
    opened: async (conversation, ref) => {
      // The adapters first: a snapshot holds the KV cache of the adapters it was saved with.
      await this.adapterControl.opened();
      await this.persistence.applyPending(conversation, ref);
    },
  });
  private readonly adapterControl: ChatAdapters = new ChatAdapters(this.context, this.session);
  private readonly answers: ChatAnswers = new ChatAnswers(this.context, this.session, { prepare: () => this.adapterControl.prepare() });
  private readonly persistence: ChatPersistence = new ChatPersistence(this.context, this.session, (reason) => this.answers.cancel(reason));
  private readonly ui = new ChatInteractions(this.context, this.session, this.answers);
  private teardownTimer: ReturnType<typeof setTimeout> | null = null;
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
      this.session.autoload();
    }
  }

  override disconnectedCallback(): void {
    super.disconnectedCallback();
    // A move in the DOM reconnects at once: only a real removal frees the conversation.
    this.teardownTimer = setTimeout(() => {
      this.teardownTimer = null;
      this.session.unload('disconnected');
    }, 0);
  }

  protected override willUpdate(changed: PropertyValues<this>): void {
    const t = this.transcriptElement;
    this.pinned = !t || t.scrollHeight - t.scrollTop - t.clientHeight < 48;
    // A new model source: drop the old model (the conversation stays) and load the new one if autoload.
    const sourceChanged = SOURCE_PROPERTIES.some((k) => changed.has(k) && changed.get(k) !== undefined);
    if (sourceChanged && (this.loaded || this.session.isLoading)) {
      this.session.unload('model-changed');
      if (this.autoload) this.session.autoload();
    } else if (changed.has('autoload') && this.autoload && this.isConnected) {
      this.session.autoload();
    }
    if (this.hasUpdated && ADAPTER_PROPERTIES.some((k) => changed.has(k))) this.adapterControl.changed();
  }

  protected override updated(changed: PropertyValues<this>): void {
    // Follow the conversation as it grows, unless the reader scrolled up.
    const t = this.transcriptElement;
    const grew = changed.has('messages') || (changed as Map<PropertyKey, unknown>).has('draft');
    if (t && grew && (this.pinned || changed.has('messages'))) t.scrollTop = t.scrollHeight;
  }

  /**
   * Loads the model (or joins the page's copy of it) and opens this chat's conversation. Resolves
   * with the model's summary. Called by autoload, the Load button and the first send.
   */
  load(fromClick = false): Promise<ModelInfo> {
    return this.session.load(fromClick);
  }

  /**
   * Sends a user message (default: the input's text) and streams the answer. Resolves with the
   * answer, or null when a `rullama-send` listener vetoed it or it was cancelled. A send while
   * an answer is being written cancels that answer.
   */
  send(text?: string): Promise<ChatMessage | null> {
    return this.answers.send(text, this.input);
  }

  /** Stops the answer being written (the text so far is kept). */
  stop(): void {
    this.answers.cancel('stop');
  }

  /** Forgets the conversation (messages, stats and the KV cache). */
  async reset(): Promise<void> {
    this.answers.cancel('reset');
    this.messages = [];
    this.stats = null;
    this.error = null;
    this.persistence.clear();
    await this.session.conversation?.reset();
  }

  /**
   * Saves the messages and the conversation's KV cache in IndexedDB under `key` (default: the
   * element's id), so that restoreConversation resumes without reading the conversation again.
   */
  saveConversation(key = this.persistence.defaultKey()): Promise<void> {
    return this.persistence.save(key);
  }

  /** Restores what saveConversation kept under `key`. Resolves false when nothing was saved. */
  restoreConversation(key = this.persistence.defaultKey()): Promise<boolean> {
    return this.persistence.restore(key);
  }

  override render() {
    return chatTemplate(this.context, this.session, this.ui);
  }

  private get transcriptElement(): HTMLElement | null {
    return this.renderRoot?.querySelector?.('.transcript') ?? null;
  }

  private get input(): HTMLTextAreaElement | null {
    return this.renderRoot?.querySelector('textarea') ?? null;
  }

  private setState(state: RullamaChatState): void {
    if (state === this.state) return;
    const previous = this.state;
    this.state = state;
    this.dispatchEvent(new RullamaStateEvent(state, previous));
  }

  private fail(e: unknown): void {
    const event = RullamaErrorEvent.from(e);
    this.error = { ...event.detail };
    if (event.detail.code === 'device-lost') this.session.unload('model-changed');
    this.setState('error');
    this.dispatchEvent(event);
  }

  private announce(text: string): void {
    // Re-setting the same text would not be announced again.
    this.announcement = this.announcement === text ? `${text}\u00a0` : text;
  }

  /** The element's internals, for its parts (see context.ts). */
  private createContext(): ChatContext {
    const el = this;
    const markdown = new MarkdownCache();
    return {
      element: el,
      markdown,
      get text() { return el.text; },
      get state() { return el.state; },
      setState: (state) => el.setState(state),
      fail: (e) => el.fail(e),
      announce: (text) => el.announce(text),
      get announcement() { return el.announcement; },
      get progress() { return el.progress; },
      set progress(v) { el.progress = v; },
      get error() { return el.error; },
      set error(v) { el.error = v; },
      get draft() { return el.draft; },
      set draft(v) { el.draft = v; },
      get needsFolder() { return el.needsFolder; },
      set needsFolder(v) { el.needsFolder = v; },
      get loaded() { return el.loaded; },
      set loaded(v) { el.loaded = v; },
      get dragging() { return el.dragging; },
      set dragging(v) { el.dragging = v; },
    };
  }
}
