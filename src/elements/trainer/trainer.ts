import { LitElement, type PropertyValues } from 'lit';
import { RullamaClient, type ModelRef } from '../../client/client.js';
import { RemoteTrainer, TrainedAdapter } from '../../client/training.js';
import { RullamaError } from '../../core/errors.js';
import type { DataProblem } from '../../core/train/data.js';
import type { TrainJobInfo, WireTrainProgress } from '../../worker/protocol.js';
import { RullamaAdapterAppliedEvent } from '../events/adapter-applied.js';
import { RullamaErrorEvent } from '../events/error.js';
import { RullamaStateEvent, type RullamaTrainerState } from '../events/state.js';
import { RullamaTrainDoneEvent, type RullamaTrainDoneDetail } from '../events/train-done.js';
import { RullamaTrainProgressEvent, type RullamaTrainProgressDetail } from '../events/train-progress.js';
import type { RullamaChat } from '../chat/chat.js';
import type { RullamaModel } from '../model/model.js';
import { hasSource, resolveModelInput } from '../shared/model-input.js';
import { LossChart } from './chart.js';
import { applyToChats, chatsOnModel } from './chats.js';
import { fetchDataset, readDatasetFile } from './dataset.js';
import { trainOptions } from './options.js';
import { TRAINER_STRINGS, type TrainerStrings } from './strings.js';
import { trainerTemplate } from './template.js';
import { trainerStyles } from './trainer.styles.js';

/** Announcements of finished steps are spaced at least this far apart (screen readers). */
const ANNOUNCE_INTERVAL_MS = 5000;

/**
 * `<rullama-trainer>`: fine-tunes a LoRA adapter on the page's model, on the local GPU, in the
 * worker that runs the chats (the weights are shared: nothing is loaded twice). Training steps
 * and chat tokens share the GPU; a chat's token waits for the training work already on the GPU
 * (at most one layer of a step), so chats stay usable but slower while it trains.
 *
 * @summary LoRA fine-tuning UI (or, with `headless`, driven from script) over a local model.
 *
 * @attr model - URL of a GGUF file (like <rullama-chat>'s); `model-ref` - id of a <rullama-model>.
 * @attr rank, alpha, learning-rate, steps, epochs, batch-size, max-length, seed, warmup-steps - training options.
 * @attr targets - comma list of q, k, v, o, gate, up, down (default all).
 * @attr validation-fraction - share of the examples held out for the validation loss (default 0).
 * @attr data-url - URL of the dataset (JSON Lines or plain text), read into the text area.
 * @attr name - the adapter's name (the export is `<name>.gguf`; default rullama-lora).
 * @attr checkpoint - keep checkpoints in OPFS (keyed by model, data and options) so a reload continues.
 * @attr checkpoint-every - with `checkpoint`, also save every this many steps (else at a pause and the end).
 * @attr headless - no UI. @attr theme - light or dark. @attr state - reflected.
 *
 * @fires rullama-train-progress - {step, total, phase, layer, loss, val_loss, tokens_per_s, eta}
 * @fires rullama-train-done - {steps, loss, val_loss, tokens_per_s, history}
 * @fires rullama-adapter-applied - {name, chats} after "Use in chat"
 * @fires rullama-state - {state, previous}: idle, loading, preparing, training, paused, done, error
 * @fires rullama-error - {code, message}
 *
 * @csspart base, dataset, dataset-input, file-button, settings, controls, start-button, pause-button,
 *   resume-button, cancel-button, export-button, use-button, progress, notes, problems, chart, error
 * @cssproperty --rullama-background, --rullama-color, --rullama-accent-color, --rullama-on-accent-color,
 *   --rullama-radius, --rullama-font-family, --rullama-mono-font-family, --rullama-train-loss-color,
 *   --rullama-validation-loss-color, --rullama-chart-grid-color, --rullama-chart-height
 */
export class RullamaTrainer extends LitElement {
  static override styles = trainerStyles;
  static override properties = {
    model: { type: String },
    modelRef: { type: String, attribute: 'model-ref' },
    file: { attribute: false },
    rank: { type: Number },
    alpha: { type: Number },
    learningRate: { type: Number, attribute: 'learning-rate' },
    steps: { type: Number },
    epochs: { type: Number },
    batchSize: { type: Number, attribute: 'batch-size' },
    maxLength: { type: Number, attribute: 'max-length' },
    targets: { type: String },
    seed: { type: Number },
    warmupSteps: { type: Number, attribute: 'warmup-steps' },
    validationFraction: { type: Number, attribute: 'validation-fraction' },
    dataUrl: { type: String, attribute: 'data-url' },
    name: { type: String },
    checkpoint: { type: Boolean },
    checkpointEvery: { type: Number, attribute: 'checkpoint-every' },
    headless: { type: Boolean, reflect: true },
    theme: { type: String, reflect: true },
    state: { type: String, reflect: true },
    data: { attribute: false },
    strings: { attribute: false },
    progress: { attribute: false },
    problems: { attribute: false },
    info: { attribute: false },
    error: { state: true },
    announcement: { state: true },
    dragging: { state: true },
  };

  model: string | null = null;
  modelRef: string | null = null;
  /** A model File or Blob (instead of `model`). */
  file: Blob | null = null;
  rank?: number;
  alpha?: number;
  learningRate?: number;
  steps?: number;
  epochs?: number;
  batchSize?: number;
  maxLength?: number;
  /** Comma list of LoRA targets (q, k, v, o, gate, up, down); null for all. */
  targets: string | null = null;
  seed?: number;
  warmupSteps?: number;
  validationFraction?: number;
  dataUrl: string | null = null;
  name = 'rullama-lora';
  checkpoint = false;
  checkpointEvery?: number;
  headless = false;
  theme: string | null = null;
  state: RullamaTrainerState = 'idle';
  /** The dataset text (the text area; a dropped or picked file, or `data-url`, fills it). */
  data = '';
  /** Every user-facing string (i18n); missing keys fall back to TRAINER_STRINGS. */
  strings: Partial<TrainerStrings> = TRAINER_STRINGS;
  /** The last progress. */
  progress: RullamaTrainProgressDetail | null = null;
  /** Lines of the dataset that could not be used (shown; none is dropped silently). */
  problems: DataProblem[] = [];
  /** The job: examples, split, steps, and whether a checkpoint was restored. */
  info: TrainJobInfo | null = null;
  protected error: { code: string; message: string } | null = null;
  protected announcement = '';
  protected dragging = false;

  private ref: ModelRef | null = null;
  private job: RemoteTrainer | null = null;
  private runController: AbortController | null = null;
  private running: Promise<RullamaTrainDoneDetail | null> | null = null;
  private starting: Promise<RullamaTrainDoneDetail | null> | null = null;
  private cancelling = false;
  private lastAnnounced = 0;
  private lastValLoss: number | null = null;
  private dataFromUrl: string | null = null;
  private teardownTimer: ReturnType<typeof setTimeout> | null = null;
  /** @internal */
  readonly chart = new LossChart(this, () => ({ train: this.text.trainLoss, validation: this.text.validationLoss, step: this.text.stepAxis, loss: this.text.lossAxis }));

  get text(): TrainerStrings {
    return this.strings === TRAINER_STRINGS ? TRAINER_STRINGS : { ...TRAINER_STRINGS, ...this.strings };
  }

  /** The loss curve so far (one entry per step). */
  get history(): { step: number; loss: number; val_loss: number | null }[] {
    return this.chart.points.map((p) => ({ step: p.step, loss: p.loss, val_loss: p.valLoss ?? null }));
  }

  /** Whether a job exists (trained, training or paused): Export and Use in chat work. */
  get hasJob(): boolean {
    return this.job !== null;
  }

  override connectedCallback(): void {
    super.connectedCallback();
    if (this.teardownTimer) clearTimeout(this.teardownTimer);
    this.teardownTimer = null;
  }

  override disconnectedCallback(): void {
    super.disconnectedCallback();
    this.chart.detach();
    // A move in the DOM reconnects at once: only a real removal pauses and frees the job (its checkpoint stays).
    this.teardownTimer = setTimeout(() => {
      this.teardownTimer = null;
      void this.teardown();
    }, 0);
  }

  protected override willUpdate(changed: PropertyValues<this>): void {
    if (changed.has('dataUrl') && this.dataUrl && (this.data === '' || this.data === this.dataFromUrl)) void this.loadDataUrl().catch((e) => this.fail(e));
  }

  protected override updated(changed: PropertyValues<this>): void {
    if (changed.has('theme')) this.chart.detach();
    const plot = this.renderRoot.querySelector<HTMLElement>('.plot');
    if (plot && !this.headless) this.chart.attach(plot);
  }

  override render() {
    return trainerTemplate(this, this.text, {
      onInput: (e: Event) => (this.data = (e.target as HTMLTextAreaElement).value),
      onFile: (e: Event) => {
        const input = e.target as HTMLInputElement;
        const file = input.files?.[0];
        input.value = '';
        if (file) void this.takeFile(file);
      },
      onDragOver: (e: DragEvent) => {
        if (!e.dataTransfer?.types.includes('Files')) return;
        e.preventDefault();
        this.dragging = true;
      },
      onDragLeave: () => (this.dragging = false),
      onDrop: (e: DragEvent) => {
        this.dragging = false;
        const file = e.dataTransfer?.files[0];
        if (!file) return;
        e.preventDefault();
        void this.takeFile(file);
      },
      start: () => void this.start().catch(() => {}),
      pause: () => void this.pause(),
      resume: () => void this.resume().catch(() => {}),
      cancel: () => void this.cancel(),
      exportAdapter: () => void this.download().catch((e) => this.fail(e)),
      useInChat: () => void this.useInChat().catch((e) => this.fail(e)),
      dismiss: () => {
        this.error = null;
        const p = this.progress;
        this.setState(!this.job ? 'idle' : p && p.step >= p.total ? 'done' : 'paused');
      },
    });
  }

  /**
   * Starts training afresh with the dataset and attributes as they are now (a job before is
   * dropped; its checkpoint stays). With `checkpoint`, a checkpoint of the same run (model, data,
   * options) continues where it stopped. Resolves when the run ends: with the done detail, or
   * null when it was paused or cancelled. Rejects (and fires `rullama-error`) when it fails.
   */
  start(): Promise<RullamaTrainDoneDetail | null> {
    if (this.starting) return this.starting;
    if (this.running) return this.running;
    const starting = this.doStart().finally(() => {
      if (this.starting === starting) this.starting = null;
    });
    this.starting = starting;
    return starting;
  }

  private async doStart(): Promise<RullamaTrainDoneDetail | null> {
    this.error = null;
    await this.dropJob(false);
    this.problems = [];
    this.info = null;
    this.progress = null;
    this.lastValLoss = null;
    this.chart.reset();
    try {
      this.setState('loading');
      const ref = await this.acquire();
      await ref.ready;
      this.setState('preparing');
      if (!this.data.trim() && this.dataUrl) await this.loadDataUrl();
      if (!this.data.trim()) throw new RullamaError('bad-argument', 'no dataset: type or drop one, or give a data-url');
      let job: RemoteTrainer;
      try {
        job = await ref.train(this.data, trainOptions(this));
      } catch (e) {
        const problems = (e as { problems?: DataProblem[] }).problems;
        if (problems) this.problems = problems;
        throw e;
      }
      this.job = job;
      this.info = job.info;
      this.problems = job.info.problems;
      this.chart.reset(job.info.history);
      this.lastValLoss = job.info.history.findLast((h) => h.valLoss !== undefined)?.valLoss ?? null;
      if (job.info.step > 0) {
        const last = job.info.history.at(-1);
        this.progress = { step: job.info.step, total: job.info.totalSteps, phase: 'optimizer', layer: 0, loss: last?.loss ?? null, val_loss: this.lastValLoss, tokens_per_s: 0, eta: 0 };
      }
      this.announce([job.info.restored ? this.text.restored(job.info.step) : '', job.info.checkpointProblem ? this.text.checkpointProblem(job.info.checkpointProblem) : ''].filter(Boolean).join(' '));
    } catch (e) {
      this.fail(e);
      throw e;
    }
    return this.runJob();
  }

  /** Pauses after the step in progress (its checkpoint is saved with `checkpoint`). Resolves when paused. */
  async pause(): Promise<void> {
    if (!this.running) return;
    this.runController?.abort();
    await this.running.catch(() => {});
  }

  /** Continues a paused job from its last whole step (like start() when there is no job). */
  resume(): Promise<RullamaTrainDoneDetail | null> {
    if (this.running) return this.running;
    if (!this.job) return this.start();
    this.error = null;
    return this.runJob();
  }

  /** Stops training and drops the job and its checkpoint (the curve and progress are cleared). */
  async cancel(): Promise<void> {
    if (!this.job && !this.running && !this.starting) return;
    this.cancelling = true;
    try {
      this.runController?.abort();
      await this.starting?.catch(() => {});
      await this.running?.catch(() => {});
      await this.dropJob(true);
      this.progress = null;
      this.info = null;
      this.chart.reset();
      this.error = null;
      this.setState('idle');
      this.announce(this.text.cancelled);
    } finally {
      this.cancelling = false;
    }
  }

  /** The adapter as it stands (as of the last whole step) as a LoRA GGUF File, `<name>.gguf`. */
  async exportAdapter(): Promise<Blob> {
    if (!this.job) throw new RullamaError('bad-argument', 'nothing trained yet: start the training first');
    return this.job.exportAdapter(this.name || 'rullama-lora');
  }

  /**
   * Applies the adapter as it stands to every <rullama-chat> on this trainer's model (replacing
   * one this trainer applied before); their next answer uses it. Fires `rullama-adapter-applied`.
   */
  async useInChat(scale = 1): Promise<RullamaChat[]> {
    const adapter = (await this.exportAdapter()) as TrainedAdapter;
    const chats = chatsOnModel(this);
    applyToChats(chats, adapter, scale);
    this.announce(this.text.applied(chats.length));
    this.dispatchEvent(new RullamaAdapterAppliedEvent({ name: this.name || 'rullama-lora', chats }));
    return chats;
  }

  private async download(): Promise<void> {
    const blob = await this.exportAdapter();
    const url = URL.createObjectURL(blob);
    const a = document.createElement('a');
    a.href = url;
    a.download = (blob as File).name ?? `${this.name}.gguf`;
    a.hidden = true;
    this.renderRoot.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  }

  private runJob(): Promise<RullamaTrainDoneDetail | null> {
    const job = this.job!;
    const controller = new AbortController();
    this.runController = controller;
    this.setState('training');
    let lastStep = this.progress?.step ?? job.info.step;
    const run = (async (): Promise<RullamaTrainDoneDetail | null> => {
      try {
        const result = await job.run({ signal: controller.signal, onProgress: (p) => (lastStep = this.onProgress(p, lastStep)) });
        // The run's history, over the steps this element saw (a step whose history entry the
        // core lost to an abort keeps the point the progress gave).
        const seen = new Map(this.chart.points.map((p) => [p.step, p]));
        for (const h of result.history) seen.set(h.step, { step: h.step, loss: h.loss, valLoss: h.valLoss ?? null });
        const points = [...seen.values()].sort((a, b) => a.step - b.step);
        this.chart.reset(points);
        const history = points.map((h) => ({ step: h.step, loss: h.loss, val_loss: h.valLoss ?? null }));
        const detail: RullamaTrainDoneDetail = { steps: result.steps, loss: result.loss, val_loss: result.valLoss ?? null, tokens_per_s: result.tokensPerSecond, history };
        this.setState('done');
        this.announce(this.text.done(result.steps, result.loss));
        this.dispatchEvent(new RullamaTrainDoneEvent(detail));
        return detail;
      } catch (e) {
        if ((e as RullamaError)?.code === 'aborted' && controller.signal.aborted) {
          if (!this.cancelling) {
            this.setState('paused');
            this.announce(this.text.paused(this.progress?.step ?? 0));
          }
          return null;
        }
        this.fail(e);
        throw e;
      } finally {
        if (this.runController === controller) this.runController = null;
      }
    })();
    const running = run.finally(() => {
      if (this.running === running) this.running = null;
    });
    this.running = running;
    return running;
  }

  /** A progress report from the worker; returns the step count seen. */
  private onProgress(p: WireTrainProgress, lastStep: number): number {
    // A step has ended at the update report that carries its new count (after its validation).
    const stepEnd = p.phase === 'optimizer' && p.step > lastStep;
    const valChanged = p.valLoss !== undefined && p.valLoss !== this.lastValLoss;
    if (p.valLoss !== undefined) this.lastValLoss = p.valLoss;
    const detail: RullamaTrainProgressDetail = {
      step: p.step, total: p.total, phase: p.phase, layer: p.layer, loss: p.loss ?? null, val_loss: p.valLoss ?? null,
      tokens_per_s: p.tokensPerSecond, eta: p.etaMs / 1000,
    };
    this.progress = detail;
    if (stepEnd && p.loss !== undefined) {
      this.chart.add({ step: p.step, loss: p.loss, valLoss: valChanged ? p.valLoss : null });
      const now = performance.now();
      if (now - this.lastAnnounced >= ANNOUNCE_INTERVAL_MS && p.step < p.total) {
        this.lastAnnounced = now;
        this.announce(this.text.stepDone(p.step, p.total, p.loss));
      }
    }
    this.dispatchEvent(new RullamaTrainProgressEvent(detail));
    return Math.max(lastStep, p.step);
  }

  private async takeFile(file: Blob): Promise<void> {
    try {
      this.data = await readDatasetFile(file);
      this.dataFromUrl = null;
    } catch (e) {
      this.fail(e);
    }
  }

  private async loadDataUrl(): Promise<void> {
    const url = this.dataUrl;
    if (!url) return;
    const text = await fetchDataset(url);
    if (this.dataUrl !== url) return;
    this.data = this.dataFromUrl = text;
  }

  private async acquire(): Promise<ModelRef> {
    if (this.ref && this.ref.model.state !== 'error' && this.ref.model.state !== 'lost') return this.ref;
    this.ref?.release();
    this.ref = null;
    let ref: ModelRef;
    if (this.modelRef) {
      const root = this.getRootNode() as Document | ShadowRoot;
      const model = (root.getElementById?.(this.modelRef) ?? document.getElementById(this.modelRef)) as RullamaModel | null;
      if (!model || model.localName !== 'rullama-model') throw new RullamaError('not-found', `model-ref="${this.modelRef}" names no <rullama-model> element`);
      await customElements.whenDefined('rullama-model');
      ref = await model.acquire();
    } else {
      if (!hasSource(this)) throw new RullamaError('bad-argument', 'no model is set: give the trainer a model or model-ref attribute');
      ref = RullamaClient.shared().acquire(await resolveModelInput(this));
    }
    this.ref = ref;
    return ref;
  }

  private async dropJob(forget: boolean): Promise<void> {
    const job = this.job;
    this.job = null;
    await job?.dispose({ forget }).catch(() => {});
  }

  private async teardown(): Promise<void> {
    this.runController?.abort();
    await this.running?.catch(() => {});
    await this.dropJob(false);
    this.ref?.release();
    this.ref = null;
  }

  private setState(state: RullamaTrainerState): void {
    const previous = this.state;
    if (previous === state) return;
    this.state = state;
    this.dispatchEvent(new RullamaStateEvent<RullamaTrainerState>(state, previous));
  }

  private fail(error: unknown): void {
    const event = RullamaErrorEvent.from(error);
    this.error = { code: event.detail.code, message: event.detail.message };
    this.setState('error');
    this.dispatchEvent(event);
  }

  private announce(text: string): void {
    if (!text) return;
    // The same text twice must still be read: clear first.
    this.announcement = '';
    void this.updateComplete.then(() => (this.announcement = text));
  }
}
