/**
 * LoRA dropout on the GPU (src/wgsl/lora_dropout.wgsl): the forward masks a copy of a layer's
 * input for the LoRA branch; the backward sends the branch's input gradient through the same mask
 * into the layer's input gradient. Masks come from a hash of a per-sequence seed (a small uniform
 * written with {@link DropoutKernels.setSeed}), a per-weight salt, the token and the index.
 */
import dropoutSource from '../../wgsl/lora_dropout.wgsl';
import { RullamaError } from '../errors.js';
import { uploadUniform } from './buffers.js';
import type { Dispatch } from './linear.js';
import { PipelineCache } from './pipelines.js';
import { CountTable, countLayoutEntry } from './token-counts.js';
import { wgslConst } from './weight-snippets.js';

const WG_SIZE = wgslConst(dropoutSource, 'WG_SIZE');

export interface DropoutBinding {
  /** Values per token; the operands are [T][width] from element 0. */
  width: number;
  maxTokens: number;
  /** Drop probability, 0 ≤ p < 1. */
  p: number;
  /** Which weight the mask is for. */
  salt: number;
  /** forward: the input x and the masked copy; backward: the LoRA branch's input gradient (zeroed after) and the layer's dx (+=). */
  from: GPUBuffer;
  to: GPUBuffer;
  label?: string;
}

export class DropoutKernels {
  private readonly layout: GPUBindGroupLayout;
  private readonly pipelineLayout: GPUPipelineLayout;
  private readonly counts: CountTable;
  private readonly seed: GPUBuffer;
  private readonly owned: GPUBuffer[] = [];

  constructor(private readonly device: GPUDevice, private readonly pipelines = new PipelineCache(device)) {
    const entry = (binding: number, type: GPUBufferBindingType): GPUBindGroupLayoutEntry => ({ binding, visibility: GPUShaderStage.COMPUTE, buffer: { type } });
    this.layout = device.createBindGroupLayout({ label: 'lora dropout', entries: [entry(0, 'storage'), entry(1, 'storage'), entry(2, 'uniform'), entry(3, 'uniform'), countLayoutEntry(4)] });
    this.pipelineLayout = device.createPipelineLayout({ label: 'lora dropout', bindGroupLayouts: [this.layout] });
    this.counts = new CountTable(device, 'dropout token counts');
    this.seed = device.createBuffer({ label: 'dropout seed', size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  }

  /** The seed every mask uses from the next submit on (one per sequence); `training` false turns dropout off (evaluation). */
  setSeed(seed: number, training = true): void {
    this.device.queue.writeBuffer(this.seed, 0, new Uint32Array([seed >>> 0, training ? 1 : 0, 0, 0]));
  }

  bindForward(b: DropoutBinding): Promise<Dispatch> {
    return this.bind(b, 'forward');
  }

  bindBackward(b: DropoutBinding): Promise<Dispatch> {
    return this.bind(b, 'backward');
  }

  private async bind(b: DropoutBinding, entryPoint: 'forward' | 'backward'): Promise<Dispatch> {
    const label = b.label ?? `lora dropout ${entryPoint}`;
    const { width, maxTokens, p } = b;
    if (!Number.isSafeInteger(width) || width < 1 || !Number.isSafeInteger(maxTokens) || maxTokens < 1) throw new RullamaError('bad-argument', `${label}: width and maxTokens must be positive integers`);
    if (!(p >= 0 && p < 1)) throw new RullamaError('bad-argument', `${label}: dropout ${p} must be in [0, 1)`);
    if (b.from === b.to) throw new RullamaError('bad-argument', `${label}: from and to must be different buffers`);
    for (const buffer of [b.from, b.to]) {
      if (buffer.size < 4 * width * maxTokens) throw new RullamaError('bad-argument', `${label}: a buffer of ${buffer.size} bytes cannot hold ${maxTokens}×${width} values`);
    }
    const pipeline = await this.pipelines.get({ name: `lora_dropout_${entryPoint}`, parts: [{ name: 'lora_dropout.wgsl', source: dropoutSource }], layout: this.pipelineLayout, entryPoint });
    const words = new Uint32Array(4);
    words.set([width, b.salt >>> 0, Math.min(2 ** 32 - 1, Math.round(p * 2 ** 32))]);
    new Float32Array(words.buffer)[3] = 1 / (1 - p);
    const uniform = uploadUniform(this.device, words, `${label} params`);
    this.owned.push(uniform);
    const bindGroup = this.device.createBindGroup({
      label, layout: this.layout,
      entries: [{ binding: 0, resource: { buffer: b.from } }, { binding: 1, resource: { buffer: b.to } }, { binding: 2, resource: { buffer: uniform } }, { binding: 3, resource: { buffer: this.seed } }, this.counts.entry(4, maxTokens)],
    });
    const maxX = this.device.limits.maxComputeWorkgroupsPerDimension;
    const offsets = new Uint32Array(1);
    return {
      label,
      maxTokens,
      encode: (pass, tokens = maxTokens) => {
        if (tokens === 0) return;
        if (!Number.isSafeInteger(tokens) || tokens < 0 || tokens > maxTokens) throw new RullamaError('bad-argument', `${label}: token count ${tokens} is outside 0..${maxTokens}`);
        const groups = Math.ceil((tokens * width) / WG_SIZE);
        offsets[0] = this.counts.offset(tokens);
        pass.setPipeline(pipeline);
        pass.setBindGroup(0, bindGroup, offsets, 0, 1);
        pass.dispatchWorkgroups(Math.min(groups, maxX), Math.ceil(groups / maxX));
      },
      destroy: () => uniform.destroy(),
    };
  }

  destroy(): void {
    for (const b of this.owned) b.destroy();
    this.seed.destroy();
    this.counts.destroy();
  }
}
