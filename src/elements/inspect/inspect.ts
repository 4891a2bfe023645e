import { LitElement, html, nothing, type PropertyValues } from 'lit';
import { RullamaError } from '../../core/errors.js';
import { summarizeGGUF, type GGUFSummary } from '../../core/gguf/inspect.js';
import { readGGUF } from '../../core/gguf/read.js';
import { blobSource, urlSource, type ByteSource } from '../../core/gguf/source.js';
import { Tokenizer } from '../../core/tokenizer/index.js';
import { RullamaErrorEvent } from '../events/error.js';
import { RullamaInspectReadyEvent } from '../events/inspect-ready.js';
import { inspectStyles } from './inspect.styles.js';

/** Every user-facing string, replaceable through the `strings` property (i18n). */
export const INSPECT_STRINGS = {
  pick: 'Open a GGUF file',
  drop: 'or drop one here. Nothing leaves your machine.',
  reading: 'Reading the header…',
  architecture: 'Architecture',
  name: 'Name',
  parameters: 'Parameters',
  size: 'File size',
  tensors: 'Tensors',
  tokenizer: 'Tokenizer',
  hyperParameters: 'Hyper-parameters',
  tryTokenizer: 'Try the tokenizer',
  tokenCount: (n: number) => `${n} tokens`,
};

const formatBytes = (n: number) => (n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(2)} GiB` : n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(1)} MiB` : `${(n / 1024).toFixed(1)} KiB`);

/**
 * `<rullama-inspect>`: shows what a GGUF model file holds (architecture, hyper-parameters,
 * tensors, tokenizer) and lets the user try its tokenizer. Only the header is read, in chunks,
 * so a 7 GB Ollama blob opens instantly.
 *
 * @attr src - URL of a GGUF file (the server must support HTTP Range requests).
 * @fires rullama-inspect-ready - {summary} once the header is read.
 * @fires rullama-error - {code, message} when the file cannot be read.
 * @csspart picker, summary, tensors, tokenizer, tokens, token, error
 */
export class RullamaInspect extends LitElement {
  static override styles = inspectStyles;
  static override properties = {
    src: { type: String },
    strings: { attribute: false },
    summary: { state: true },
    error: { state: true },
    busy: { state: true },
    sample: { state: true },
    dragging: { state: true },
  };

  src = '';
  strings = INSPECT_STRINGS;
  summary: GGUFSummary | null = null;
  error: string | null = null;
  busy = false;
  sample = 'Hello world! Gemma 4 runs in your browser. 你好 👋';
  dragging = false;
  private tokenizer: Tokenizer | null = null;
  private run = 0;

  /** Reads a File, Blob, URL or any ByteSource. Resolves when the header is read. */
  async open(input: Blob | string | ByteSource): Promise<GGUFSummary> {
    const run = ++this.run;
    this.busy = true;
    this.error = null;
    try {
      const source = typeof input === 'string' ? await urlSource(input) : input instanceof Blob ? blobSource(input) : input;
      const file = await readGGUF(source);
      const summary = summarizeGGUF(file);
      let tokenizer: Tokenizer | null = null;
      try {
        tokenizer = summary.tokenizer ? Tokenizer.fromGGUF(file) : null;
      } catch (e) {
        if (!(e instanceof RullamaError)) throw e;
      }
      if (run !== this.run) return summary;
      this.summary = summary;
      this.tokenizer = tokenizer;
      this.dispatchEvent(new RullamaInspectReadyEvent(summary));
      return summary;
    } catch (e) {
      if (run === this.run) {
        this.summary = null;
        this.error = (e as Error).message;
        this.dispatchEvent(RullamaErrorEvent.from(e));
      }
      throw e;
    } finally {
      if (run === this.run) this.busy = false;
    }
  }

  protected override updated(changed: PropertyValues<this>): void {
    if (changed.has('src') && this.src) this.open(this.src).catch(() => {});
  }

  private onFile(files: FileList | null | undefined) {
    const file = files?.[0];
    if (file) this.open(file).catch(() => {});
  }

  override render() {
    const s = this.strings;
    return html`
      <div
        part="picker"
        class=${this.dragging ? 'dragging' : ''}
        @dragover=${(e: DragEvent) => { e.preventDefault(); this.dragging = true; }}
        @dragleave=${() => (this.dragging = false)}
        @drop=${(e: DragEvent) => { e.preventDefault(); this.dragging = false; this.onFile(e.dataTransfer?.files); }}
      >
        <label class="button">${s.pick}<input type="file" accept=".gguf,application/octet-stream" @change=${(e: Event) => this.onFile((e.target as HTMLInputElement).files)} /></label>
        <span class="muted">${this.busy ? s.reading : s.drop}</span>
      </div>
      ${this.error ? html`<p part="error" role="alert">${this.error}</p>` : nothing}
      ${this.summary ? this.renderSummary(this.summary) : nothing}
    `;
  }

  private renderSummary(m: GGUFSummary) {
    const s = this.strings;
    const ids = this.tokenizer ? this.tokenizer.encode(this.sample) : [];
    return html`
      <section part="summary" aria-label=${s.architecture}>
        <dl>
          <dt>${s.architecture}</dt><dd>${m.architecture ?? '—'}</dd>
          <dt>${s.name}</dt><dd>${m.name ?? '—'}</dd>
          <dt>${s.parameters}</dt><dd>${(m.parameterCount / 1e6).toFixed(1)} M</dd>
          <dt>${s.size}</dt><dd>${formatBytes(m.fileBytes)} (GGUF v${m.version})</dd>
          <dt>${s.tokenizer}</dt><dd>${m.tokenizer ? `${m.tokenizer.model}, ${m.tokenizer.vocabSize} tokens, ${m.tokenizer.mergeCount} merges` : '—'}</dd>
        </dl>
      </section>
      <details>
        <summary>${s.hyperParameters}</summary>
        <dl>${Object.entries(m.hyperParameters).map(([k, v]) => html`<dt>${k}</dt><dd>${JSON.stringify(v)}</dd>`)}</dl>
      </details>
      <details part="tensors">
        <summary>${s.tensors} (${m.tensorCount}, ${formatBytes(m.tensorBytes)})</summary>
        <table>
          <tbody>${m.tensors.map((t) => html`<tr><td>${t.name}</td><td>${t.type}</td><td>[${t.dims.join(', ')}]</td><td>${formatBytes(t.bytes)}</td></tr>`)}</tbody>
        </table>
      </details>
      ${this.tokenizer ? html`
        <section part="tokenizer">
          <label for="sample">${s.tryTokenizer}</label>
          <textarea id="sample" .value=${this.sample} @input=${(e: Event) => (this.sample = (e.target as HTMLTextAreaElement).value)}></textarea>
          <p class="muted" aria-live="polite">${s.tokenCount(ids.length)}</p>
          <div part="tokens">${ids.map((id) => html`<span part="token" title=${String(id)}>${this.tokenizer!.tokenString(id)}<small>${id}</small></span>`)}</div>
        </section>` : nothing}
    `;
  }
}
