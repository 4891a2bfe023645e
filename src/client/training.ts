/**
 * LoRA training in the worker, from the page: a RemoteTrainer is one training job on a shared
 * model (its weights are the chats' weights: nothing is loaded twice).
 *
 *   const trainer = await modelRef.train(jsonl, { rank: 4, steps: 60, validationFraction: 0.1, checkpoint: true });
 *   trainer.info.problems;                       // [{line, reason}] lines that could not be used
 *   const pause = new AbortController();
 *   await trainer.run({ signal: pause.signal, onProgress: (p) => console.log(p.step, p.loss) });
 *   const adapter = await trainer.exportAdapter('my-lora');   // a File (GGUF) that chats can use
 *   await conversation.setAdapters([{ source: adapter }]);    // applied from the worker's copy
 *   await trainer.dispose();
 */
import { RullamaError } from '../core/errors.js';
import type { TrainJobInfo, WireTrainOptions, WireTrainProgress, WireTrainResult } from '../worker/protocol.js';
import type { RullamaClient } from './client.js';

/**
 * A trained adapter as a LoRA GGUF file (download it, or give it to a chat's `adapters`). A
 * conversation of the same model applies the adapter the worker already holds instead of reading
 * the file again.
 */
export class TrainedAdapter extends File {
  /** @internal */
  constructor(
    bytes: ArrayBuffer,
    name: string,
    /** The training job and the export that made it. */
    readonly job: number,
    readonly version: number,
  ) {
    super([bytes], `${name}.gguf`, { type: 'application/octet-stream' });
  }
}

export class RemoteTrainer {
  /** @internal */
  static nextId = 1;
  private disposed = false;

  /** @internal Made by ModelRef.train. */
  constructor(
    private readonly client: RullamaClient,
    readonly id: number,
    /** The dataset as parsed and split, the steps, and what a restored checkpoint brought. */
    readonly info: TrainJobInfo,
  ) {}

  /**
   * Trains to the last step, reporting progress (at most about ten times a second, and at the end
   * of every step). The signal pauses after the step in progress: the result rejects with
   * 'aborted' and `run` again continues from there.
   */
  run(options: { signal?: AbortSignal; onProgress?: (p: WireTrainProgress) => void } = {}): Promise<WireTrainResult> {
    const { signal, onProgress } = options;
    if (signal?.aborted) return Promise.reject(new RullamaError('aborted', 'the training was paused'));
    let id = 0;
    let aborted = false;
    const abort = () => {
      aborted = true;
      if (id) this.client.cancel(id);
    };
    signal?.addEventListener('abort', abort, { once: true });
    return this.client
      .call<WireTrainResult>({ type: 'train-run', job: this.id }, { onTrainProgress: onProgress }, [], (i) => {
        id = i;
        if (aborted) this.client.cancel(i);
      })
      .finally(() => signal?.removeEventListener('abort', abort));
  }

  /** The adapter as it stands, as a LoRA GGUF File named `<name>.gguf` (after a run in progress pauses or ends, it is read between steps). */
  async exportAdapter(name = 'rullama-lora'): Promise<TrainedAdapter> {
    const { bytes, version } = await this.client.call<{ bytes: ArrayBuffer; version: number }>({ type: 'train-export', job: this.id, name });
    return new TrainedAdapter(bytes, name, this.id, version);
  }

  /** Saves a checkpoint to OPFS now (the job must be paused). */
  checkpoint(): Promise<{ step: number; bytes: number }> {
    return this.client.call({ type: 'train-checkpoint', job: this.id });
  }

  /** Frees the job's GPU memory; `forget` also deletes its OPFS checkpoint (a cancel). */
  async dispose(options: { forget?: boolean } = {}): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await this.client.call({ type: 'train-dispose', job: this.id, ...(options.forget ? { forget: true } : {}) });
  }
}

export type TrainerOptions = WireTrainOptions;
