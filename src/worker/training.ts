/**
 * LoRA training jobs in the worker: each on a loaded model (the engine's main session, whose
 * weights the chats share), with the dataset parsed and split here (the tokenizer lives here),
 * progress forwarded to the page (throttled), checkpoints in OPFS, and the trained adapter kept
 * for the model's conversations (`trained` adapter sources).
 *
 * Sharing the GPU: the training step's work and the chats' token steps go to the same device
 * queue. They interleave at the points where either side waits for the GPU (a training step
 * waits once per layer and per read-back), so a chat's token waits for the training work already
 * submitted — at most one layer of forward or backward — and training slows chats while it runs.
 */
import { RullamaError } from '../core/errors.js';
import type { Engine } from '../core/engine.js';
import type { LoraAdapter } from '../core/lora/index.js';
import { writeLoraGGUF } from '../core/lora/adapter.js';
import { parseDataset, splitDataset } from '../core/train/data.js';
import { LoraTrainer, type TrainProgress, type TrainResult } from '../core/train/trainer.js';
import { deleteCheckpoint, loadCheckpoint, saveCheckpoint } from '../web/checkpoints.js';
import type { TrainJobInfo, WireTrainOptions } from './protocol.js';

/** The page hears about progress at most this often, but always at the end of a step. */
const PROGRESS_INTERVAL_MS = 100;

export interface TrainingJob {
  model: number;
  trainer: LoraTrainer;
  options: WireTrainOptions;
  /** The run in progress (train-run), if any. */
  running: Promise<TrainResult> | null;
  /** Stops the run in progress (a pause, or the job's disposal). */
  stop: AbortController | null;
  /** The last exported adapter and its version (for `trained` adapter sources). */
  exported: { version: number; adapter: LoraAdapter } | null;
  version: number;
}

export class TrainingJobs {
  private readonly jobs = new Map<number, TrainingJob>();

  get(id: number): TrainingJob {
    const job = this.jobs.get(id);
    if (!job) throw new RullamaError('bad-argument', `training job ${id} does not exist (it was cancelled, or its model released)`);
    return job;
  }

  async create(jobId: number, modelId: number, engine: Engine, dataset: string, options: WireTrainOptions): Promise<TrainJobInfo> {
    if (this.jobs.has(jobId)) throw new RullamaError('bad-argument', `training job ${jobId} exists already`);
    const { validationFraction = 0, checkpoint = false, checkpointEvery: _every, ...trainOptions } = options;
    const maxLength = trainOptions.maxLength ?? 512;
    const parsed = parseDataset(dataset, engine.tokenizer, { maxLength });
    const split = splitDataset(parsed.examples, validationFraction, trainOptions.seed ?? 0);
    const info: TrainJobInfo = {
      problems: parsed.problems, examples: parsed.examples.length, trainExamples: split.train.length, validationExamples: split.validation.length,
      created: false, totalSteps: 0, step: 0, history: [], runId: '', restored: false,
    };
    if (split.train.length === 0) return info;
    const trainer = await LoraTrainer.create(engine.model, split, trainOptions);
    try {
      info.created = true;
      info.runId = trainer.runId;
      info.totalSteps = trainer.totalSteps;
      if (checkpoint) {
        const bytes = await loadCheckpoint(trainer.runId).catch(() => null);
        if (bytes) {
          try {
            trainer.restore(bytes);
            info.restored = true;
          } catch (e) {
            info.checkpointProblem = (e as Error).message;
            await deleteCheckpoint(trainer.runId).catch(() => {});
          }
        }
      }
      info.step = trainer.step;
      info.history = [...trainer.history];
      this.jobs.set(jobId, { model: modelId, trainer, options, running: null, stop: null, exported: null, version: 0 });
      return info;
    } catch (e) {
      trainer.dispose();
      throw e;
    }
  }

  /**
   * Trains to the end. The signal pauses after the step in progress (then 'aborted'); with
   * checkpoints on, the state is saved at the pause, at the end and every `checkpointEvery` steps.
   */
  async run(jobId: number, signal: AbortSignal, onProgress: (p: TrainProgress) => void): Promise<TrainResult> {
    const job = this.get(jobId);
    if (job.running) throw new RullamaError('bad-argument', 'this training job is running already');
    const stop = new AbortController();
    const forward = () => stop.abort(signal.reason);
    if (signal.aborted) forward();
    else signal.addEventListener('abort', forward, { once: true });
    const task = this.runJob(job, stop.signal, onProgress);
    job.running = task;
    job.stop = stop;
    try {
      return await task;
    } finally {
      signal.removeEventListener('abort', forward);
      job.running = null;
      job.stop = null;
    }
  }

  private async runJob(job: TrainingJob, signal: AbortSignal, onProgress: (p: TrainProgress) => void): Promise<TrainResult> {
    const { trainer, options } = job;
    const every = options.checkpoint ? options.checkpointEvery ?? 0 : 0;
    let lastSent = 0;
    let lastStep = trainer.step;
    let pending: TrainProgress | null = null;
    let timer: ReturnType<typeof setTimeout> | null = null;
    const flush = () => {
      if (timer) clearTimeout(timer);
      timer = null;
      if (pending) onProgress(pending);
      pending = null;
      lastSent = performance.now();
    };
    // A pause asked for while the step validates waits for the step's end: an abort inside the
    // validation would lose the step's entry in the loss history (the step itself is done).
    let phase = '';
    for (;;) {
      // A periodic checkpoint stops the run at a step's end (an inner abort), saves, and goes on.
      const inner = new AbortController();
      let pauseAtStepEnd = false;
      const forward = () => {
        if (phase === 'validation') pauseAtStepEnd = true;
        else inner.abort(signal.reason);
      };
      signal.addEventListener('abort', forward, { once: true });
      if (signal.aborted) forward();
      let checkpointDue = false;
      try {
        const result = await trainer.run({
          signal: inner.signal,
          onProgress: (p) => {
            phase = p.phase;
            pending = p;
            // A step has ended when the update report after its history entry comes (the report
            // before the update still carries the previous step count).
            const stepEnd = p.phase === 'optimizer' && p.step !== lastStep;
            if (stepEnd) {
              lastStep = p.step;
              flush();
              if (pauseAtStepEnd) inner.abort(signal.reason);
              else if (every > 0 && p.step % every === 0 && p.step < p.total) {
                checkpointDue = true;
                inner.abort(new RullamaError('aborted', 'checkpoint'));
              }
            } else if (performance.now() - lastSent >= PROGRESS_INTERVAL_MS) {
              flush();
            } else {
              timer ??= setTimeout(flush, PROGRESS_INTERVAL_MS);
            }
          },
        });
        flush();
        if (options.checkpoint) await this.save(job);
        return result;
      } catch (e) {
        if (timer) clearTimeout(timer);
        timer = null;
        pending = null;
        if ((e as RullamaError)?.code === 'aborted' && (checkpointDue || signal.aborted) && options.checkpoint) await this.save(job);
        if (!(checkpointDue && !signal.aborted)) throw e;
      } finally {
        signal.removeEventListener('abort', forward);
      }
    }
  }

  private async save(job: TrainingJob): Promise<void> {
    await saveCheckpoint(job.trainer.runId, await job.trainer.checkpoint());
  }

  async checkpoint(jobId: number): Promise<{ step: number; bytes: number }> {
    const job = this.get(jobId);
    if (job.running) throw new RullamaError('bad-argument', 'pause the training before saving a checkpoint (it saves one itself at the pause)');
    const bytes = await job.trainer.checkpoint();
    await saveCheckpoint(job.trainer.runId, bytes);
    return { step: job.trainer.step, bytes: bytes.byteLength };
  }

  /** The adapter as it stands (also while training: as of the last whole step) as GGUF bytes; kept as the job's newest version for `trained` sources. */
  async export(jobId: number, name: string): Promise<{ bytes: Uint8Array; version: number }> {
    const job = this.get(jobId);
    // Safe mid-run: the parameters change only in a step's single optimiser submission, and the
    // read-back is queued after it or before it, never inside.
    const adapter = await job.trainer.adapter(name);
    job.exported = { version: ++job.version, adapter };
    return { bytes: await writeLoraGGUF(adapter), version: job.version };
  }

  /** The adapter a `trained` source names, when this worker still holds that version. */
  exportedAdapter(jobId: number, modelId: number, version: number): LoraAdapter | null {
    const job = this.jobs.get(jobId);
    return job && job.model === modelId && job.exported?.version === version ? job.exported.adapter : null;
  }

  async dispose(jobId: number, forget = false): Promise<void> {
    const job = this.jobs.get(jobId);
    if (!job) return;
    this.jobs.delete(jobId);
    job.stop?.abort(new RullamaError('aborted', 'the training was cancelled'));
    await job.running?.catch(() => {});
    if (forget && job.options.checkpoint) await deleteCheckpoint(job.trainer.runId).catch(() => {});
    job.trainer.dispose();
  }

  /** Disposes the jobs of a model that is going away. */
  async disposeModel(modelId: number): Promise<void> {
    for (const [id, job] of [...this.jobs]) if (job.model === modelId) await this.dispose(id);
  }
}
