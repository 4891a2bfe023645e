/**
 * The optimiser of GPU training: AdamW over a flat f32 parameter buffer (src/wgsl/adamw.wgsl),
 * the same update as the CPU {@link AdamW} of optimizer.ts, and the global gradient norm for
 * clipping (src/wgsl/sum_squares.wgsl), reduced on the GPU and handed to the AdamW step as a
 * 1-float buffer, so a training step never waits for a read-back.
 *
 * A step is: encode {@link GpuGlobalNorm.encode}, then {@link GpuAdamW.step} (which reads the clip
 * factor the norm wrote), in one pass or in order; submit before the next step() (each step writes
 * its learning rate and bias corrections into the optimiser's uniform with queue.writeBuffer,
 * which applies to every dispatch of the submits that follow).
 */
import adamwSource from '../../wgsl/adamw.wgsl';
import sumSquaresSource from '../../wgsl/sum_squares.wgsl';
import { RullamaError } from '../errors.js';
import { readBack, uploadStorage, uploadUniform } from '../gpu/buffers.js';
import { PipelineCache, type ShaderPart } from '../gpu/pipelines.js';
import { wgslConst } from '../gpu/weight-snippets.js';
import type { AdamWOptions, AdamWState } from './optimizer.js';

const ADAMW: ShaderPart = { name: 'adamw.wgsl', source: adamwSource };
const SUM_SQUARES: ShaderPart = { name: 'sum_squares.wgsl', source: sumSquaresSource };
const ADAMW_WG = wgslConst(adamwSource, 'WG_SIZE');
const SUM_WG = wgslConst(sumSquaresSource, 'WG_SIZE');
/** Partial sums (workgroups) per gradient segment at most. */
const SUM_MAX_GROUPS = wgslConst(sumSquaresSource, 'MAX_GROUPS');

/** A range of f32 values in a buffer. */
export interface F32Segment {
  buffer: GPUBuffer;
  /** Elements into the buffer (default 0). */
  offset?: number;
  length: number;
}

/** Where a 1-float clip factor lives: buffer[index]. */
export interface ClipFactor {
  buffer: GPUBuffer;
  index: number;
}

/** The gradient vector (possibly in several buffers) whose norm bounds the step. */
export interface GpuGlobalNormOptions {
  /** The gradients: one or more segments, together the global vector. */
  segments: readonly F32Segment[];
  /** The clip threshold; 0 = measure only (clip factor 1). */
  maxNorm: number;
  pipelines?: PipelineCache;
  label?: string;
}

function storageEntry(binding: number, type: GPUBufferBindingType): GPUBindGroupLayoutEntry {
  return { binding, visibility: GPUShaderStage.COMPUTE, buffer: { type } };
}

function checkSegment(label: string, name: string, buffer: GPUBuffer, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 1) {
    throw new RullamaError('bad-argument', `${label}: ${name} needs a non-negative offset and a positive length, not ${offset}, ${length}`);
  }
  if (4 * (offset + length) > buffer.size) throw new RullamaError('bad-argument', `${label}: ${name} has ${buffer.size} bytes, ${4 * (offset + length)} are needed`);
  if ((buffer.usage & GPUBufferUsage.STORAGE) === 0) throw new RullamaError('bad-argument', `${label}: the ${name} buffer lacks STORAGE usage`);
}

/**
 * The global L2 norm of the gradients and the clip factor min(1, maxNorm / norm), computed on the
 * GPU. {@link result} holds [sum of squares, norm, clip factor]; the clip factor is NaN when the
 * norm is not finite, and {@link GpuAdamW} then skips its step, as the CPU trainer does.
 */
export class GpuGlobalNorm {
  /** f32 [sum of squares, norm, clip factor, 0]; read it (asynchronously) to log the norm. */
  readonly result: GPUBuffer;
  /** The clip factor, for {@link GpuAdamWOptions.clip}. */
  readonly clip: ClipFactor;
  private readonly partials: GPUBuffer;
  private readonly owned: GPUBuffer[] = [];
  private readonly groups: { bindGroup: GPUBindGroup; workgroups: number }[] = [];
  private finishGroup: GPUBindGroup | null = null;
  private partialPipeline: GPUComputePipeline | null = null;
  private finishPipeline: GPUComputePipeline | null = null;
  private readonly layout: GPUBindGroupLayout;
  private readonly pipelineLayout: GPUPipelineLayout;
  readonly pipelines: PipelineCache;
  readonly label: string;

  private constructor(readonly device: GPUDevice, options: GpuGlobalNormOptions) {
    this.label = options.label ?? 'global norm';
    this.pipelines = options.pipelines ?? new PipelineCache(device);
    this.layout = device.createBindGroupLayout({
      label: this.label,
      entries: [storageEntry(0, 'read-only-storage'), storageEntry(1, 'storage'), storageEntry(2, 'storage'), storageEntry(3, 'uniform')],
    });
    this.pipelineLayout = device.createPipelineLayout({ label: this.label, bindGroupLayouts: [this.layout] });
    this.partials = device.createBuffer({ label: `${this.label} partials`, size: 4 * Math.max(1, options.segments.length) * SUM_MAX_GROUPS, usage: GPUBufferUsage.STORAGE });
    this.result = uploadStorage(device, new Float32Array([0, 0, 1, 0]), `${this.label} result`);
    this.clip = { buffer: this.result, index: 2 };
    this.owned.push(this.partials, this.result);
  }

  /** Builds the reduction over `segments` (pipelines compiled, bind groups made). */
  static async create(device: GPUDevice, options: GpuGlobalNormOptions): Promise<GpuGlobalNorm> {
    const label = options.label ?? 'global norm';
    if (options.segments.length === 0) throw new RullamaError('bad-argument', `${label}: no gradient segments`);
    if (!(Number.isFinite(options.maxNorm) && options.maxNorm >= 0)) throw new RullamaError('bad-argument', `${label}: maxNorm must be 0 or positive, not ${options.maxNorm}`);
    for (const [i, s] of options.segments.entries()) checkSegment(label, `segment ${i}`, s.buffer, s.offset ?? 0, s.length);
    const norm = new GpuGlobalNorm(device, options);
    try {
      await norm.build(options);
    } catch (e) {
      norm.destroy();
      throw e;
    }
    return norm;
  }

  private async build(options: GpuGlobalNormOptions): Promise<void> {
    const { device } = this;
    const get = (entryPoint: 'partial' | 'finish') =>
      this.pipelines.get({ name: `sum_squares_${entryPoint}`, parts: [SUM_SQUARES], layout: this.pipelineLayout, entryPoint });
    [this.partialPipeline, this.finishPipeline] = await Promise.all([get('partial'), get('finish')]);
    const params = (words: number[], maxNorm: number) => {
      const u = new Uint32Array(8);
      u.set(words);
      new Float32Array(u.buffer)[4] = maxNorm;
      const b = uploadUniform(device, u, `${this.label} params`);
      this.owned.push(b);
      return b;
    };
    const group = (grads: GPUBuffer, uniform: GPUBuffer) =>
      device.createBindGroup({ label: this.label, layout: this.layout, entries: [grads, this.partials, this.result, uniform].map((buffer, binding) => ({ binding, resource: { buffer } })) });
    for (const [i, s] of options.segments.entries()) {
      const workgroups = Math.min(SUM_MAX_GROUPS, Math.ceil(s.length / SUM_WG));
      this.groups.push({ bindGroup: group(s.buffer, params([s.offset ?? 0, s.length, i * SUM_MAX_GROUPS, 0], 0)), workgroups });
    }
    // Unused partial slots stay zero: the buffer is created zeroed and never written past a segment's own slots.
    const placeholder = device.createBuffer({ label: `${this.label} placeholder`, size: 16, usage: GPUBufferUsage.STORAGE });
    this.owned.push(placeholder);
    this.finishGroup = group(placeholder, params([0, 0, 0, options.segments.length * SUM_MAX_GROUPS], options.maxNorm));
  }

  /** Records the reduction: one dispatch per segment, then the one that writes {@link result}. */
  encode(pass: GPUComputePassEncoder): void {
    pass.setPipeline(this.partialPipeline!);
    for (const g of this.groups) {
      pass.setBindGroup(0, g.bindGroup);
      pass.dispatchWorkgroups(g.workgroups);
    }
    pass.setPipeline(this.finishPipeline!);
    pass.setBindGroup(0, this.finishGroup!);
    pass.dispatchWorkgroups(1);
  }

  /** The last result as [sum of squares, norm, clip factor] (a read-back: for logging, not per step). */
  async read(): Promise<{ sumSquares: number; norm: number; clip: number }> {
    const r = new Float32Array(await readBack(this.device, this.result, 16));
    return { sumSquares: r[0]!, norm: r[1]!, clip: r[2]! };
  }

  destroy(): void {
    for (const b of this.owned) b.destroy();
    this.owned.length = 0;
  }
}

/** The CPU optimiser's hyper-parameters plus where the parameters, gradients and clip factor live. */
export interface GpuAdamWOptions extends AdamWOptions {
  /** The parameters, updated in place: `length` f32 values from element paramOffset. */
  params: GPUBuffer;
  paramOffset?: number;
  /** Their gradients, same length, from element gradOffset. */
  grads: GPUBuffer;
  gradOffset?: number;
  length: number;
  /** The factor the gradients are multiplied by (GpuGlobalNorm.clip); default 1. */
  clip?: ClipFactor;
  pipelines?: PipelineCache;
  label?: string;
}

/**
 * AdamW on the GPU with the semantics of the CPU {@link AdamW}: the same update per element in
 * f32 (the CPU works in float64 between f32 moments), with the bias corrections computed on the
 * host in float64. The moments live in GPU buffers owned by this object.
 */
export class GpuAdamW {
  readonly beta1: number;
  readonly beta2: number;
  readonly epsilon: number;
  readonly weightDecay: number;
  readonly length: number;
  readonly label: string;
  /** The first and second moments, f32 [length]. */
  readonly m: GPUBuffer;
  readonly v: GPUBuffer;
  private t = 0;
  private readonly uniform: GPUBuffer;
  private readonly words = new Uint32Array(16);
  private readonly floats = new Float32Array(this.words.buffer);
  private readonly owned: GPUBuffer[] = [];
  private bindGroup: GPUBindGroup | null = null;
  private pipeline: GPUComputePipeline | null = null;
  private readonly grid: [number, number];

  private constructor(readonly device: GPUDevice, private readonly options: GpuAdamWOptions) {
    this.label = options.label ?? 'adamw';
    this.beta1 = options.beta1 ?? 0.9;
    this.beta2 = options.beta2 ?? 0.999;
    this.epsilon = options.epsilon ?? 1e-8;
    this.weightDecay = options.weightDecay ?? 0;
    this.length = options.length;
    const zeros = new Float32Array(options.length);
    this.m = uploadStorage(device, zeros, `${this.label} m`);
    this.v = uploadStorage(device, zeros, `${this.label} v`);
    this.uniform = device.createBuffer({ label: `${this.label} params`, size: 64, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    this.owned.push(this.m, this.v, this.uniform);
    const groups = Math.ceil(options.length / ADAMW_WG);
    const gx = Math.min(groups, device.limits.maxComputeWorkgroupsPerDimension);
    this.grid = [gx, Math.ceil(groups / gx)];
  }

  /** Builds the optimiser (validates, allocates zero moments, compiles the pipeline). */
  static async create(device: GPUDevice, options: GpuAdamWOptions): Promise<GpuAdamW> {
    const label = options.label ?? 'adamw';
    const b1 = options.beta1 ?? 0.9;
    const b2 = options.beta2 ?? 0.999;
    const ok = (x: number, lo: number, hi: number) => Number.isFinite(x) && x >= lo && x < hi;
    if (!ok(options.learningRate, 0, Infinity) || !ok(b1, 0, 1) || !ok(b2, 0, 1) || !((options.epsilon ?? 1e-8) > 0) || !ok(options.weightDecay ?? 0, 0, Infinity)) {
      throw new RullamaError('bad-argument', `${label}: invalid AdamW options`);
    }
    checkSegment(label, 'params', options.params, options.paramOffset ?? 0, options.length);
    checkSegment(label, 'grads', options.grads, options.gradOffset ?? 0, options.length);
    if (options.params === options.grads) throw new RullamaError('bad-argument', `${label}: params and grads must be separate buffers`);
    if (options.clip) {
      checkSegment(label, 'clip', options.clip.buffer, options.clip.index, 1);
      if (options.clip.buffer === options.params) throw new RullamaError('bad-argument', `${label}: the clip factor must not live in the params buffer`);
    }
    const opt = new GpuAdamW(device, options);
    try {
      await opt.build();
    } catch (e) {
      opt.destroy();
      throw e;
    }
    return opt;
  }

  private async build(): Promise<void> {
    const { device, options } = this;
    const layout = device.createBindGroupLayout({
      label: this.label,
      entries: [storageEntry(0, 'read-only-storage'), storageEntry(1, 'read-only-storage'), storageEntry(2, 'storage'), storageEntry(3, 'storage'), storageEntry(4, 'storage'), storageEntry(5, 'uniform')],
    });
    const pipelineLayout = device.createPipelineLayout({ label: this.label, bindGroupLayouts: [layout] });
    this.pipeline = await (options.pipelines ?? new PipelineCache(device)).get({ name: 'adamw', parts: [ADAMW], layout: pipelineLayout });
    let clip = options.clip;
    if (!clip) {
      const one = uploadStorage(device, new Float32Array([1]), `${this.label} clip 1`);
      this.owned.push(one);
      clip = { buffer: one, index: 0 };
    }
    this.bindGroup = device.createBindGroup({
      label: this.label,
      layout,
      entries: [options.grads, clip.buffer, options.params, this.m, this.v, this.uniform].map((buffer, binding) => ({ binding, resource: { buffer } })),
    });
    this.words.set([this.length, options.paramOffset ?? 0, options.gradOffset ?? 0, clip.index]);
  }

  /** Steps taken so far (the bias corrections use step + 1 next). */
  get step(): number {
    return this.t;
  }

  /**
   * Records one update at learning rate `lr` (the peak times the schedule's factor) into `pass`.
   * Submit it before the next call: the step's constants are written to the uniform now.
   */
  encodeStep(pass: GPUComputePassEncoder, lr = this.options.learningRate): void {
    if (!(Number.isFinite(lr) && lr >= 0)) throw new RullamaError('bad-argument', `${this.label}: learning rate must be finite and non-negative, not ${lr}`);
    const t = ++this.t;
    const f = this.floats;
    f[4] = lr;
    f[5] = this.beta1;
    f[6] = this.beta2;
    f[7] = 1 - this.beta1;
    f[8] = 1 - this.beta2;
    f[9] = 1 - this.beta1 ** t;
    f[10] = 1 - this.beta2 ** t;
    f[11] = this.epsilon;
    f[12] = this.weightDecay;
    this.device.queue.writeBuffer(this.uniform, 0, this.words);
    pass.setPipeline(this.pipeline!);
    pass.setBindGroup(0, this.bindGroup!);
    pass.dispatchWorkgroups(this.grid[0], this.grid[1]);
  }

  /** A copy of the moments and step count, in the CPU optimiser's format (one parameter array). */
  async saveState(): Promise<AdamWState> {
    const bytes = 4 * this.length;
    const [m, v] = await Promise.all([readBack(this.device, this.m, Math.ceil(bytes / 4) * 4), readBack(this.device, this.v, bytes)]);
    return { step: this.t, m: [new Float32Array(m)], v: [new Float32Array(v)] };
  }

  /** Restores {@link saveState}'s output (or a CPU AdamW's state whose arrays concatenate to `length`). */
  loadState(state: AdamWState): void {
    const join = (list: Float32Array[]): Float32Array<ArrayBuffer> | null => {
      const total = list.reduce((n, a) => n + a.length, 0);
      if (total !== this.length) return null;
      const out = new Float32Array(total);
      let at = 0;
      for (const a of list) {
        out.set(a, at);
        at += a.length;
      }
      return out;
    };
    const m = join(state.m);
    const v = join(state.v);
    if (!Number.isInteger(state.step) || state.step < 0 || !m || !v) throw new RullamaError('bad-argument', `${this.label}: the optimiser state does not match these parameters`);
    this.device.queue.writeBuffer(this.m, 0, m);
    this.device.queue.writeBuffer(this.v, 0, v);
    this.t = state.step;
  }

  /** Frees the moments and uniforms (not the parameter, gradient or clip buffers). */
  destroy(): void {
    for (const b of this.owned) b.destroy();
    this.owned.length = 0;
  }
}
