import { LitElement, css, html, nothing, type PropertyValues } from 'lit';
import { RullamaClient, type ModelRef } from '../../client/client.js';
import type { LoadProgressDetail, ModelInfo } from '../../worker/protocol.js';
import { CHAT_STRINGS } from '../chat/strings.js';
import { RullamaErrorEvent } from '../events/error.js';
import { RullamaLoadProgressEvent } from '../events/load-progress.js';
import { RullamaReadyEvent } from '../events/ready.js';
import { hasSource, NeedsFolderError, resolveModelInput } from '../shared/model-input.js';
import { progressTemplate } from '../shared/progress.js';

/**
 * `<rullama-model>`: loads a model once for the page; chats point at it with
 * `<rullama-chat model-ref="its id">` and share its weights (each keeps its own conversation).
 * It keeps the model loaded while it is in the document, and shows the load progress unless
 * `hidden`.
 *
 * @attr src - URL of a GGUF file: downloaded once into the OPFS cache (resumable), then read from disk.
 * @attr ollama-model - an Ollama model name; asks for the Ollama models folder once.
 * @attr context-size - context of the first conversation, in tokens.
 * @attr ple-on-gpu - keep the per-layer-embedding table on the GPU (E2B: 4.7 GB more GPU memory) for faster decoding.
 * @attr int8-prefill - prefill's Q4_K and Q6_K matmuls in 8-bit integers: faster prompts on GPUs with fast
 *   dot4I8Packed, whose logits differ from f32 by that rounding (decoding is unchanged).
 * @attr sha256 - the file's expected SHA-256: the download is verified against it.
 * @attr no-cache - read the URL with HTTP range requests every time instead of caching it.
 * @attr autoload - load when connected (else when a chat first needs it, or on load()).
 * @attr state - reflected: idle, loading, ready, error.
 * @fires rullama-load-progress - {phase, loaded, total, bytesPerSecond?, secondsLeft?}
 * @fires rullama-ready - {model}
 * @fires rullama-error - {code, message}
 * @csspart progress, error, load-button
 */
export class RullamaModel extends LitElement {
  static override styles = css`
    :host { display: block; font-family: var(--rullama-font-family, system-ui, sans-serif); color-scheme: light dark; }
    :host([state='ready']), :host([state='idle']:not([needs-folder])) { display: none; }
    .progress .bar { height: 0.4rem; border-radius: 999px; background: color-mix(in srgb, currentColor 12%, transparent); overflow: hidden; }
    .progress .fill { height: 100%; background: var(--rullama-accent-color, light-dark(#3451c7, #8ea2ff)); }
    .progress .fill.indeterminate { width: 30%; }
    .progress p { margin: 0.25rem 0 0; font-size: 0.85em; }
    [part='error'] { color: light-dark(#b3261e, #ffb4ab); }
    button { font: inherit; }
    button:focus-visible { outline: 3px solid var(--rullama-accent-color, #3451c7); outline-offset: 2px; }
  `;
  static override properties = {
    src: { type: String },
    ollamaModel: { type: String, attribute: 'ollama-model' },
    contextSize: { type: Number, attribute: 'context-size' },
    pleOnGpu: { type: Boolean, attribute: 'ple-on-gpu' },
    int8Prefill: { type: Boolean, attribute: 'int8-prefill' },
    sha256: { type: String },
    noCache: { type: Boolean, attribute: 'no-cache' },
    autoload: { type: Boolean },
    file: { attribute: false },
    state: { type: String, reflect: true },
    info: { attribute: false },
    strings: { attribute: false },
    progress: { state: true },
    errorMessage: { state: true },
    needsFolder: { type: Boolean, reflect: true, attribute: 'needs-folder' },
  };

  src: string | null = null;
  ollamaModel: string | null = null;
  contextSize?: number;
  /** Keep the per-layer-embedding table on the GPU (E2B: 4.7 GB more GPU memory) for faster decoding. */
  pleOnGpu = false;
  /** Prefill's Q4_K and Q6_K matmuls in 8-bit integers: faster prompts, whose logits differ from f32 by that rounding. */
  int8Prefill = false;
  sha256: string | null = null;
  noCache = false;
  autoload = false;
  /** A File or Blob to load instead of `src`. */
  file: Blob | null = null;
  state: 'idle' | 'loading' | 'ready' | 'error' = 'idle';
  /** The loaded model's summary. */
  info: ModelInfo | null = null;
  strings = CHAT_STRINGS;
  protected progress: LoadProgressDetail | null = null;
  protected errorMessage = '';
  protected needsFolder = false;

  private own: ModelRef | null = null;
  private acquiring: Promise<ModelRef> | null = null;
  private generation = 0;
  private teardownTimer: ReturnType<typeof setTimeout> | null = null;

  override connectedCallback(): void {
    super.connectedCallback();
    if (this.teardownTimer) {
      clearTimeout(this.teardownTimer);
      this.teardownTimer = null;
    } else if (this.autoload) {
      queueMicrotask(() => this.isConnected && hasSource(this.sourceProps) && this.load().catch(() => {}));
    }
  }

  override disconnectedCallback(): void {
    super.disconnectedCallback();
    this.teardownTimer = setTimeout(() => {
      this.teardownTimer = null;
      this.release();
    }, 0);
  }

  protected override updated(changed: PropertyValues<this>): void {
    const changedSource = (['src', 'ollamaModel', 'file', 'contextSize', 'pleOnGpu', 'int8Prefill', 'sha256', 'noCache'] as const).some((k) => changed.has(k) && changed.get(k) !== undefined);
    if (changedSource && (this.own || this.acquiring)) {
      this.release();
      if (this.autoload) this.load().catch(() => {});
    }
  }

  private get sourceProps() {
    return { file: this.file, model: this.src, ollamaModel: this.ollamaModel };
  }

  /** Loads the model (once). Resolves with its summary. */
  async load(fromClick = false): Promise<ModelInfo> {
    const ref = await this.ensure(fromClick);
    return ref.ready;
  }

  /**
   * A new counted reference to this element's model, for a chat (release it when done). The
   * model is loaded on first use and stays loaded while this element is in the document.
   */
  async acquire(fromClick = false): Promise<ModelRef> {
    return (await this.ensure(fromClick)).share();
  }

  /** Drops this element's hold on the model (chats still using it keep it loaded). */
  release(): void {
    this.generation++;
    this.own?.release();
    this.own = null;
    this.acquiring = null;
    this.info = null;
    this.progress = null;
    this.state = 'idle';
  }

  private ensure(fromClick: boolean): Promise<ModelRef> {
    if (this.own && this.state !== 'error') return Promise.resolve(this.own);
    if (!this.acquiring) {
      const acquiring: Promise<ModelRef> = this.start(fromClick).finally(() => {
        if (this.acquiring === acquiring) this.acquiring = null;
      });
      this.acquiring = acquiring;
    }
    return this.acquiring;
  }

  private async start(fromClick: boolean): Promise<ModelRef> {
    const generation = ++this.generation;
    this.own?.release();
    this.own = null;
    this.errorMessage = '';
    this.needsFolder = false;
    this.state = 'loading';
    try {
      const input = await resolveModelInput(this.sourceProps, fromClick);
      const ref = RullamaClient.shared().acquire(input, {
        ...(this.contextSize ? { contextSize: this.contextSize } : {}),
        ...(this.pleOnGpu ? { perLayerTableOnGpu: true } : {}),
        ...(this.int8Prefill ? { int8Prefill: true } : {}),
        ...(this.sha256 ? { sha256: this.sha256 } : {}),
        ...(this.noCache ? { cache: false } : {}),
      });
      if (generation !== this.generation) {
        ref.release();
        throw new Error('superseded');
      }
      this.own = ref;
      ref.onProgress((p) => {
        if (generation !== this.generation) return;
        this.progress = p;
        this.dispatchEvent(new RullamaLoadProgressEvent(p));
      });
      ref.ready.then(
        (info) => {
          if (generation !== this.generation) return;
          this.info = info;
          this.state = 'ready';
          this.dispatchEvent(new RullamaReadyEvent(info));
        },
        (e) => {
          if (generation !== this.generation) return;
          this.state = 'error';
          this.errorMessage = (e as Error).message;
          this.dispatchEvent(RullamaErrorEvent.from(e));
        },
      );
      return ref;
    } catch (e) {
      if (generation === this.generation) {
        if (e instanceof NeedsFolderError) {
          this.needsFolder = true;
          this.state = 'idle';
        } else {
          this.state = 'error';
          this.errorMessage = (e as Error).message;
          this.dispatchEvent(RullamaErrorEvent.from(e));
        }
      }
      throw e;
    }
  }

  override render() {
    const s = this.strings;
    if (this.needsFolder) {
      return html`<button type="button" part="load-button" @click=${() => this.load(true).catch(() => {})}>${s.pickOllamaFolder}</button>`;
    }
    if (this.state === 'loading') return progressTemplate(this.progress, s);
    if (this.state === 'error') return html`<p part="error" role="alert">${this.errorMessage}</p>`;
    return nothing;
  }
}
