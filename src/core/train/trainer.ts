import { RullamaError, throwIfAborted } from '../errors.js';
import { readBack, uploadStorage } from '../gpu/buffers.js';
import { writeLoraGGUF, type LoraAdapter } from '../lora/adapter.js';
import type { Gemma4Model } from '../model/model.js';
import { sha256 } from '../ollama/sha256.js';
import { decodeCheckpoint, encodeCheckpoint } from './checkpoint.js';
import { packExamples, type TrainingExample } from './data.js';
import { GpuAdamW, GpuGlobalNorm } from './gpu-adamw.js';
import { TrainingGraph, type GraphPhase } from './graph.js';
import { LoraLayout, type LoraConfig } from './lora-params.js';
import { learningRateFactor, type ScheduleOptions } from './optimizer.js';

export interface TrainOptions extends LoraConfig {
  /** Peak learning rate (default 2e-4). */
  learningRate?: number;
  /** Optimiser steps in all; default: `epochs` passes over the training sequences. */
  steps?: number;
  /** Passes over the data when `steps` is not given (default 1). */
  epochs?: number;
  /** Sequences per optimiser step: their gradients are accumulated (default 1). */
  batchSize?: number;
  /** Longest sequence in tokens (default 512); short examples are packed into sequences up to it. */
  maxLength?: number;
  /** Pack short examples together (default true). */
  pack?: boolean;
  /** Linear warm-up steps (default 0), then `decay` to `minRatio` of the peak. */
  warmupSteps?: number;
  decay?: ScheduleOptions['decay'];
  minRatio?: number;
  /** Decoupled weight decay (default 0). */
  weightDecay?: number;
  beta1?: number;
  beta2?: number;
  epsilon?: number;
  /** Clip gradients to this global L2 norm (default 1; 0 = no clipping). */
  maxGradNorm?: number;
  /** Initialisation, data order and dropout masks (default 0). */
  seed?: number;
  /** LoRA dropout: each adapted weight's LoRA branch sees its input with this fraction dropped (default 0). */
  dropout?: number;
  /** Validation loss every this many steps and at the end (default: about ten times a run) when there is validation data. */
  validateEvery?: number;
  /** Start from this adapter's values instead of a fresh initialisation (same layout). */
  initial?: LoraAdapter;
}

export interface TrainData {
  train: readonly TrainingExample[];
  validation?: readonly TrainingExample[];
}

export type TrainPhase = GraphPhase | 'optimizer' | 'validation';

export interface TrainProgress {
  /** Optimiser steps done. */
  step: number;
  total: number;
  phase: TrainPhase;
  /** The layer the GPU was given last (forward, backward). */
  layer: number;
  /** Mean loss of the last finished step. */
  loss?: number;
  /** Latest validation loss. */
  valLoss?: number;
  /** Training tokens per second over the run so far. */
  tokensPerSecond: number;
  /** Estimated milliseconds to the last step. */
  etaMs: number;
}

export interface TrainResult {
  steps: number;
  loss: number;
  valLoss?: number;
  history: { step: number; loss: number; valLoss?: number }[];
  /** Tokens run through forward and backward in this call. */
  tokens: number;
  ms: number;
  tokensPerSecond: number;
  /** Steps whose gradient was not finite: they changed nothing. */
  skippedSteps: number;
  gpuBytes: number;
  /** Wall time and tokens of each step of this call (the first includes compiling the kernels). */
  stepMs: number[];
  stepTokens: number[];
}

interface Sequence {
  tokens: number[];
  labels: number[];
  /** Labelled tokens. */
  count: number;
}

/**
 * LoRA fine-tuning on the GPU: batches of sequences through {@link TrainingGraph} (forward, loss,
 * backward to the LoRA parameters), then global-norm clipping and AdamW with a warm-up and decay
 * schedule, all in GPU buffers (one 4-byte loss read per sequence). A step is all or nothing:
 * the parameters change only after a whole batch, so a cancelled or failed step leaves them as
 * they were, and {@link checkpoint} captures a state `run` can continue from exactly.
 */
export class LoraTrainer {
  private readonly sequences: Sequence[];
  private readonly validation: Sequence[];
  private stepCount = 0;
  /** Sequences consumed (across epochs) by the steps done. */
  private consumed = 0;
  private skipped = 0;
  readonly history: { step: number; loss: number; valLoss?: number }[] = [];
  readonly totalSteps: number;
  private disposed = false;

  private constructor(
    private readonly model: Gemma4Model,
    readonly layout: LoraLayout,
    private readonly graph: TrainingGraph,
    private readonly params: GPUBuffer,
    private readonly grads: GPUBuffer,
    private readonly norm: GpuGlobalNorm,
    private readonly optimizer: GpuAdamW,
    private readonly options: TrainOptions,
    data: { train: Sequence[]; validation: Sequence[] },
    /** Identifies model, data and setup in checkpoints. */
    readonly runId: string,
  ) {
    this.sequences = data.train;
    this.validation = data.validation;
    const perEpoch = Math.ceil(this.sequences.length / this.batchSize);
    this.totalSteps = options.steps ?? perEpoch * (options.epochs ?? 1);
  }

  private get batchSize(): number {
    return this.options.batchSize ?? 1;
  }

  /** Plans the adapter, packs the data, builds the graph and the optimiser (checks everything first). */
  static async create(model: Gemma4Model, data: TrainData, options: TrainOptions = {}): Promise<LoraTrainer> {
    const maxLength = options.maxLength ?? 512;
    const batch = options.batchSize ?? 1;
    const lr = options.learningRate ?? 2e-4;
    const positiveInt = (name: string, v: number | undefined) => {
      if (v !== undefined && (!Number.isInteger(v) || v < 1)) throw new RullamaError('bad-argument', `${name} must be a positive integer, not ${v}`);
    };
    positiveInt('maxLength', maxLength);
    positiveInt('batchSize', batch);
    positiveInt('steps', options.steps);
    positiveInt('epochs', options.epochs);
    positiveInt('validateEvery', options.validateEvery);
    if (maxLength < 2) throw new RullamaError('bad-argument', 'maxLength must be at least 2');
    if (maxLength > model.contextSize) throw new RullamaError('context-overflow', `sequences of ${maxLength} tokens exceed the model session's context of ${model.contextSize}`);
    if (!(Number.isFinite(lr) && lr > 0)) throw new RullamaError('bad-argument', `learning rate ${lr} must be a positive number`);
    if (data.train.length === 0) throw new RullamaError('bad-argument', 'no training examples');
    const toSequences = (examples: readonly TrainingExample[]) =>
      ((options.pack ?? true) ? packExamples(examples, maxLength) : examples.map((e) => {
        if (e.tokens.length > maxLength) throw new RullamaError('bad-argument', `line ${e.line}: ${e.tokens.length} tokens do not fit a sequence of ${maxLength}`);
        return e;
      })).map((e) => ({ tokens: e.tokens, labels: e.labels, count: e.labels.filter((l) => l >= 0).length }));
    const sequences = { train: toSequences(data.train), validation: toSequences(data.validation ?? []) };

    const { device, config, file } = model.parts;
    const layout = LoraLayout.plan(config, file, options);
    const values = options.initial ? layout.fromAdapter(options.initial) : layout.initialValues(options.seed ?? 0);
    const runId = runIdentity(model, layout, sequences.train, options);
    const params = uploadStorage(device, values, 'lora params');
    const grads = uploadStorage(device, new Float32Array(layout.size), 'lora grads');
    const owned: { destroy(): void }[] = [params, grads];
    try {
      const graph = await TrainingGraph.create(model, layout, params, grads, {
        maxTokens: Math.max(2, ...sequences.train.map((s) => s.tokens.length), ...sequences.validation.map((s) => s.tokens.length)), dropout: options.dropout,
      });
      owned.push(graph);
      const norm = await GpuGlobalNorm.create(device, { segments: [{ buffer: grads, length: layout.size }], maxNorm: options.maxGradNorm ?? 1, pipelines: model.parts.pipelines });
      owned.push(norm);
      const optimizer = await GpuAdamW.create(device, {
        learningRate: lr, beta1: options.beta1, beta2: options.beta2, epsilon: options.epsilon, weightDecay: options.weightDecay,
        params, grads, length: layout.size, clip: norm.clip, pipelines: model.parts.pipelines,
      });
      return new LoraTrainer(model, layout, graph, params, grads, norm, optimizer, { ...options, learningRate: lr, maxLength, batchSize: batch }, sequences, runId);
    } catch (e) {
      for (const o of owned) o.destroy();
      throw e;
    }
  }

  /** Optimiser steps done. */
  get step(): number {
    return this.stepCount;
  }

  /** GPU bytes of training: activations, gradients, the LoRA vectors and moments (not the base weights). */
  get gpuBytes(): number {
    return this.graph.bytes + 4 * this.layout.size * 4;
  }

  /** Sequences per epoch after packing. */
  get sequenceCount(): number {
    return this.sequences.length;
  }

  /** The training sequence `index` of all consumed so far: each epoch walks a seeded shuffle. */
  private sequenceAt(index: number): Sequence {
    const n = this.sequences.length;
    const epoch = Math.floor(index / n);
    return this.sequences[shuffled(n, (this.options.seed ?? 0) + 7919 * epoch)[index % n]!]!;
  }

  /**
   * Trains until `totalSteps` (or until the signal fires: then it throws 'aborted' after the last
   * whole step, which `run` continues from). Progress is reported per layer and per step.
   */
  async run(options: { signal?: AbortSignal; onProgress?: (p: TrainProgress) => void } = {}): Promise<TrainResult> {
    this.checkOpen();
    const { signal, onProgress } = options;
    const { device } = this.model.parts;
    const start = performance.now();
    const startStep = this.stepCount;
    let tokens = 0;
    const stepMs: number[] = [];
    const stepTokens: number[] = [];
    let valLoss = this.history.findLast((h) => h.valLoss !== undefined)?.valLoss;
    const validateEvery = this.options.validateEvery ?? Math.max(1, Math.ceil(this.totalSteps / 10));
    const report = (phase: TrainPhase, layer: number) => {
      const elapsed = performance.now() - start;
      const done = this.stepCount - startStep;
      onProgress?.({
        step: this.stepCount, total: this.totalSteps, phase, layer, loss: this.history.at(-1)?.loss, valLoss,
        tokensPerSecond: elapsed > 0 ? (tokens / elapsed) * 1000 : 0,
        etaMs: done > 0 ? (elapsed / done) * (this.totalSteps - this.stepCount) : 0,
      });
    };
    while (this.stepCount < this.totalSteps) {
      throwIfAborted(signal);
      const stepStart = performance.now();
      const tokensBefore = tokens;
      const batch = Array.from({ length: this.batchSize }, (_, i) => this.sequenceAt(this.consumed + i));
      const count = batch.reduce((n, s) => n + s.count, 0);
      const clear = device.createCommandEncoder();
      clear.clearBuffer(this.grads);
      device.queue.submit([clear.finish()]);
      let lossSum = 0;
      for (const [i, s] of batch.entries()) {
        // Each sequence of the run gets its own dropout masks, the same whenever the run is repeated or resumed.
        const dropoutSeed = Math.imul((this.options.seed ?? 0) + 1, 0x9e3779b1) ^ (this.consumed + i);
        await this.graph.run(s.tokens, s.labels, count, { signal, dropoutSeed, onPhase: (phase, layer) => report(phase, layer) });
        lossSum += await this.readLoss(s.tokens.length);
        tokens += s.tokens.length;
      }
      // The whole batch is in: clip and update (nothing before this point changed the parameters).
      report('optimizer', 0);
      const encoder = device.createCommandEncoder({ label: 'optimizer' });
      const pass = encoder.beginComputePass();
      this.norm.encode(pass);
      this.optimizer.encodeStep(pass, this.options.learningRate! * learningRateFactor(this.stepCount, {
        totalSteps: this.totalSteps, warmupSteps: this.options.warmupSteps, decay: this.options.decay, minRatio: this.options.minRatio,
      }));
      pass.end();
      device.queue.submit([encoder.finish()]);
      const { norm } = await this.norm.read();
      if (!Number.isFinite(norm)) this.skipped++;
      stepMs.push(performance.now() - stepStart);
      stepTokens.push(tokens - tokensBefore);
      this.stepCount++;
      this.consumed += batch.length;
      // Recorded before validating, so a cancellation during validation keeps the step's entry.
      const entry: { step: number; loss: number; valLoss?: number } = { step: this.stepCount, loss: lossSum / Math.max(1, count) };
      this.history.push(entry);
      if (this.validation.length > 0 && (this.stepCount % validateEvery === 0 || this.stepCount === this.totalSteps)) {
        report('validation', 0);
        entry.valLoss = valLoss = await this.validationLoss(signal);
      }
      report('optimizer', 0);
    }
    const ms = performance.now() - start;
    const last = this.history.at(-1);
    return {
      steps: this.stepCount, loss: last?.loss ?? Number.NaN, valLoss, history: [...this.history], tokens, ms,
      tokensPerSecond: ms > 0 ? (tokens / ms) * 1000 : 0, skippedSteps: this.skipped, gpuBytes: this.gpuBytes, stepMs, stepTokens,
    };
  }

  /** Mean loss over the validation sequences (forward only). */
  async validationLoss(signal?: AbortSignal): Promise<number> {
    this.checkOpen();
    let sum = 0;
    let count = 0;
    for (const s of this.validation) {
      await this.graph.run(s.tokens, s.labels, s.count, { signal, backward: false });
      sum += await this.readLoss(s.tokens.length);
      count += s.count;
    }
    return count > 0 ? sum / count : Number.NaN;
  }

  private async readLoss(tokens: number): Promise<number> {
    const losses = new Float32Array(await readBack(this.model.parts.device, this.graph.lossPerToken, 4 * tokens));
    return losses.reduce((s, x) => s + x, 0);
  }

  /** The trained adapter as it stands (a copy read from the GPU). */
  async adapter(name = 'rullama-lora'): Promise<LoraAdapter> {
    this.checkOpen();
    const values = new Float32Array(await readBack(this.model.parts.device, this.params, 4 * this.layout.size));
    return this.layout.toAdapter(values, name, String(this.model.file.metadata.get('general.architecture') ?? 'gemma4'));
  }

  /** The adapter as a GGUF file llama.cpp and Ollama (ADAPTER) load. */
  async exportGGUF(name?: string): Promise<Uint8Array> {
    return writeLoraGGUF(await this.adapter(name));
  }

  /** The whole training state (adapter, moments, step, data position, loss curve) as bytes. */
  async checkpoint(): Promise<Uint8Array<ArrayBuffer>> {
    this.checkOpen();
    const device = this.model.parts.device;
    const values = new Float32Array(await readBack(device, this.params, 4 * this.layout.size));
    const state = await this.optimizer.saveState();
    return encodeCheckpoint({
      run: this.runId, step: this.stepCount, consumed: this.consumed, history: this.history,
      values, m: state.m[0]! as Float32Array<ArrayBuffer>, v: state.v[0]! as Float32Array<ArrayBuffer>,
    });
  }

  /** Continues from a checkpoint of the same run (model, data and setup); a bad one changes nothing. */
  restore(bytes: Uint8Array): void {
    this.checkOpen();
    const c = decodeCheckpoint(bytes, this.runId);
    if (c.values.length !== this.layout.size) throw new RullamaError('bad-snapshot', 'the checkpoint does not match this adapter layout');
    this.optimizer.loadState({ step: c.step, m: [c.m], v: [c.v] });
    this.model.parts.device.queue.writeBuffer(this.params, 0, c.values);
    this.stepCount = c.step;
    this.consumed = c.consumed;
    this.history.length = 0;
    this.history.push(...c.history);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.graph.destroy();
    this.norm.destroy();
    this.optimizer.destroy();
    this.params.destroy();
    this.grads.destroy();
  }

  private checkOpen(): void {
    if (this.disposed) throw new RullamaError('bad-argument', 'this trainer was disposed');
  }
}

/** A permutation of 0..n−1 from a seed (Fisher–Yates over xorshift32). */
function shuffled(n: number, seed: number): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  let s = (seed >>> 0) || 0x9e3779b9;
  for (let i = n - 1; i > 0; i--) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    const j = (s >>> 0) % (i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return order;
}

/** A hash of what a checkpoint must match: the model, the adapter layout, the data and the options that shape the run. */
function runIdentity(model: Gemma4Model, layout: LoraLayout, train: readonly Sequence[], options: TrainOptions): string {
  const { initial: _initial, ...shape } = options;
  const data = Uint32Array.from(train.flatMap((s) => [...s.tokens, 0xfffffffe, ...s.labels.map((l) => l >>> 0), 0xfffffffe]));
  const text = JSON.stringify({
    model: [...model.layoutHash], slots: layout.slots.map((s) => [s.base, s.rank]), alpha: layout.alpha, shape,
    data: [...sha256(new Uint8Array(data.buffer))],
  });
  return [...sha256(new TextEncoder().encode(text))].map((b) => b.toString(16).padStart(2, '0')).join('');
}
