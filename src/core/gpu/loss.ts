/**
 * The training loss on the GPU: next-token cross-entropy over the vocabulary, through Gemma's
 * final logit soft-cap, and its gradient with respect to the pre-cap logits, for a block of tokens
 * (src/wgsl/cross_entropy.wgsl). The gradient is that of the mean over the labelled tokens of the
 * whole batch: the caller states that count N ({@link CrossEntropyDispatch.setCount}), so gradient
 * accumulation over micro-batches gives the gradient of the batch mean. Per-token losses are
 * written to a buffer for the host to sum when it wants them (no read-back per step).
 *
 * Usage is that of the other kernels: bind once, then encode each step with its token count.
 */
import crossEntropySource from '../../wgsl/cross_entropy.wgsl';
import { RullamaError } from '../errors.js';
import type { Dispatch } from './linear.js';
import { PipelineCache } from './pipelines.js';
import { CountTable, countLayoutEntry } from './token-counts.js';

/** The label value that excludes a token from the loss (prompt tokens, padding). */
export const MASKED_LABEL = 0xffffffff;

/** Logits, labels and outputs of one cross-entropy use; the logits may be overwritten by their gradient. */
export interface CrossEntropyBinding {
  /** Vocabulary size V. */
  vocab: number;
  /** The most tokens any encode passes. */
  maxTokens: number;
  /** f32 pre-cap logits [T][zStride]; token t's at z[zOffset + t·zStride]. */
  z: GPUBuffer;
  zOffset?: number;
  /** Default vocab. */
  zStride?: number;
  /**
   * Where the gradient goes, [T][dzStride]; omitted: over z in place (the logits are not needed
   * after the loss, and a [T][262144] buffer is worth not having twice).
   */
  dz?: GPUBuffer;
  dzOffset?: number;
  /** Default vocab. */
  dzStride?: number;
  /** u32 labels: token t's at labels[labelsOffset + t]; {@link MASKED_LABEL} excludes a token. */
  labels: GPUBuffer;
  labelsOffset?: number;
  /** f32 per-token loss (0 for masked tokens, NaN for a label ≥ vocab); token t's at loss[lossOffset + t]. */
  loss: GPUBuffer;
  lossOffset?: number;
  /** Gemma's final_logit_softcapping (30); 0 = none. */
  softcap: number;
  /** N, the labelled tokens the gradient is averaged over (default 1; see setCount). */
  count?: number;
  label?: string;
}

/** A bound cross-entropy whose normaliser can change between steps. */
export interface CrossEntropyDispatch extends Dispatch {
  /**
   * Sets N, so that dz = (softmax − onehot)·(1 − tanh²)/N. Written with queue.writeBuffer: it
   * applies to every encode submitted after the call, so set it before submitting the step.
   */
  setCount(n: number): void;
}

const PARAMS_WORDS = 9;

/** Pipelines, layout and token-count table of the loss kernel on one device. */
export class LossKernels {
  readonly pipelines: PipelineCache;
  private readonly layout: GPUBindGroupLayout;
  private readonly pipelineLayout: GPUPipelineLayout;
  private readonly counts: CountTable;
  /** Bound as `z` when the gradient overwrites the logits (the shader then reads dz). */
  private readonly placeholder: GPUBuffer;

  constructor(readonly device: GPUDevice, options: { pipelines?: PipelineCache } = {}) {
    this.pipelines = options.pipelines ?? new PipelineCache(device);
    const storage = (binding: number, type: GPUBufferBindingType): GPUBindGroupLayoutEntry => ({ binding, visibility: GPUShaderStage.COMPUTE, buffer: { type } });
    this.layout = device.createBindGroupLayout({
      label: 'cross entropy',
      entries: [storage(0, 'read-only-storage'), storage(1, 'read-only-storage'), storage(2, 'storage'), storage(3, 'storage'), storage(4, 'uniform'), countLayoutEntry(5)],
    });
    this.pipelineLayout = device.createPipelineLayout({ label: 'cross entropy', bindGroupLayouts: [this.layout] });
    this.counts = new CountTable(device, 'loss token counts');
    this.placeholder = device.createBuffer({ label: 'cross entropy z placeholder', size: 16, usage: GPUBufferUsage.STORAGE });
  }

  /** The cross-entropy pipeline, in place (dz over z) or not. */
  pipeline(inPlace: boolean): Promise<GPUComputePipeline> {
    return this.pipelines.get({
      name: 'cross_entropy',
      constants: inPlace ? { Z_IS_DZ: 1 } : undefined,
      parts: [{ name: 'cross_entropy.wgsl', source: crossEntropySource }],
      layout: this.pipelineLayout,
    });
  }

  /** Binds loss and gradient of a block of tokens; one workgroup per token. */
  async bindCrossEntropy(b: CrossEntropyBinding): Promise<CrossEntropyDispatch> {
    const label = b.label ?? `cross_entropy V=${b.vocab}`;
    const bad = (message: string): never => {
      throw new RullamaError('bad-argument', `${label}: ${message}`);
    };
    const { vocab, maxTokens } = b;
    if (!Number.isSafeInteger(vocab) || vocab < 1 || vocab >= MASKED_LABEL) bad(`vocab must be a positive integer, not ${vocab}`);
    if (!Number.isSafeInteger(maxTokens) || maxTokens < 1) bad(`maxTokens must be a positive integer, not ${maxTokens}`);
    if (!(Number.isFinite(b.softcap) && b.softcap >= 0)) bad(`softcap must be 0 or positive, not ${b.softcap}`);
    const inPlace = b.dz === undefined || b.dz === b.z;
    const zOffset = b.zOffset ?? 0;
    const zStride = b.zStride ?? vocab;
    const dzOffset = inPlace ? (b.dzOffset ?? zOffset) : (b.dzOffset ?? 0);
    const dzStride = inPlace ? (b.dzStride ?? zStride) : (b.dzStride ?? vocab);
    const labelsOffset = b.labelsOffset ?? 0;
    const lossOffset = b.lossOffset ?? 0;
    for (const [name, v] of [['zOffset', zOffset], ['dzOffset', dzOffset], ['labelsOffset', labelsOffset], ['lossOffset', lossOffset]] as const) {
      if (!Number.isSafeInteger(v) || v < 0) bad(`${name} must be a non-negative integer, not ${v}`);
    }
    if (!Number.isSafeInteger(zStride) || zStride < vocab) bad(`zStride ${zStride} must be at least vocab (${vocab})`);
    if (!Number.isSafeInteger(dzStride) || dzStride < vocab) bad(`dzStride ${dzStride} must be at least vocab (${vocab})`);
    if (inPlace && (dzOffset !== zOffset || dzStride !== zStride)) bad('in place, dz must use the offset and stride of z');
    const dz = b.dz ?? b.z;
    const span = (name: string, buffer: GPUBuffer, elements: number) => {
      if (4 * elements > buffer.size) bad(`${name} has ${buffer.size} bytes, ${4 * elements} are needed`);
      if ((buffer.usage & GPUBufferUsage.STORAGE) === 0) bad(`the ${name} buffer lacks STORAGE usage`);
    };
    span('z', b.z, zOffset + (maxTokens - 1) * zStride + vocab);
    span('dz', dz, dzOffset + (maxTokens - 1) * dzStride + vocab);
    span('labels', b.labels, labelsOffset + maxTokens);
    span('loss', b.loss, lossOffset + maxTokens);
    if (b.loss === b.labels || b.loss === b.z || b.loss === dz || b.labels === dz) bad('loss, labels and dz must be separate buffers');
    if (Math.max(4 * (zOffset + (maxTokens - 1) * zStride + vocab), 4 * (dzOffset + (maxTokens - 1) * dzStride + vocab)) > this.device.limits.maxStorageBufferBindingSize) {
      bad('the logits exceed one storage binding; use fewer tokens per call');
    }
    const pipeline = await this.pipeline(inPlace);
    const words = new Uint32Array(PARAMS_WORDS);
    const floats = new Float32Array(words.buffer);
    words.set([vocab, zOffset, zStride, dzOffset, dzStride, labelsOffset, lossOffset]);
    floats[7] = b.softcap;
    const device = this.device;
    const params = device.createBuffer({ label: `${label} params`, size: Math.ceil(words.byteLength / 16) * 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    const setCount = (n: number): void => {
      if (!Number.isSafeInteger(n) || n < 1) throw new RullamaError('bad-argument', `${label}: the labelled-token count must be a positive integer, not ${n}`);
      floats[8] = 1 / n;
      device.queue.writeBuffer(params, 0, words);
    };
    setCount(b.count ?? 1);
    const bindGroup = device.createBindGroup({
      label,
      layout: this.layout,
      entries: [
        ...[inPlace ? this.placeholder : b.z, b.labels, dz, b.loss, params].map((buffer, binding) => ({ binding, resource: { buffer } })),
        this.counts.entry(5, maxTokens),
      ],
    });
    const counts = this.counts;
    const dynamicOffset = new Uint32Array(1);
    const maxGroups = device.limits.maxComputeWorkgroupsPerDimension;
    return {
      label,
      maxTokens,
      setCount,
      encode(pass: GPUComputePassEncoder, tokens = maxTokens): void {
        if (tokens === 0) return;
        if (!Number.isSafeInteger(tokens) || tokens < 0 || tokens > maxTokens) throw new RullamaError('bad-argument', `${label}: token count ${tokens} is outside 0..${maxTokens}`);
        dynamicOffset[0] = counts.offset(tokens);
        pass.setPipeline(pipeline);
        pass.setBindGroup(0, bindGroup, dynamicOffset, 0, 1);
        const gx = Math.min(tokens, maxGroups);
        pass.dispatchWorkgroups(gx, Math.ceil(tokens / gx));
      },
      destroy(): void {
        params.destroy();
      },
    };
  }

  /** Frees the count tables and the placeholder. Bindings made from this object stop working. */
  destroy(): void {
    this.counts.destroy();
    this.placeholder.destroy();
  }
}
