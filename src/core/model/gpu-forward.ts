import { RullamaError, throwIfAborted } from '../errors.js';
import { checkBufferSize } from '../gpu/buffers.js';
import { LinearKernels, type Dispatch } from '../gpu/linear.js';
import { OpKernels, PositionUniform } from '../gpu/ops.js';
import { PipelineCache } from '../gpu/pipelines.js';
import type { GGUFTensorInfo } from '../gguf/types.js';
import type { Gemma4Config } from './config.js';
import { KvCache } from './kv-cache.js';
import type { ModelTensors } from './tensors.js';
import type { GpuWeights } from './weights.js';

/** A linear layer bound for one token (matvec) and for a block of tokens (matmul). */
interface BoundLinear {
  one: Dispatch;
  many: Dispatch;
}

/** One step of the chain: records its work for T tokens. */
type Step = (pass: GPUComputePassEncoder, tokens: number) => void;

export interface GpuForwardOptions {
  /** Context size: positions 0 … contextSize − 1. */
  contextSize: number;
  /** Tokens per forward call (prefill chunk); buffers are sized for it. */
  maxTokens: number;
  /** Whether logits of every token of a block can be requested (needs [maxTokens][vocab] floats). */
  allLogits?: boolean;
}

const f32 = 4;

/**
 * The Gemma 4 forward pass on the GPU (spec §3) as a chain of bound kernels: every buffer, uniform
 * and bind group is made once here; a call writes the token ids, the per-layer token rows and the
 * start position, records the whole chain into one command encoder, and submits once.
 *
 * Activation buffers (f32, row-major, one row per token of the block):
 *   h [T][d] residual stream     x [T][d] normed input         q/o [T][nq·hd]   k/v [T][nkv·hd]
 *   a [T][d] block outputs       gate/up [T][F]                ple/pleRows/pleProj [T][L·P]
 *   g [T][P] per-layer gate      logits [T or 1][V]
 */
export class GpuForward {
  readonly kv: KvCache;
  private readonly position: PositionUniform;
  private readonly buffers: GPUBuffer[] = [];
  private readonly dispatches: Dispatch[] = [];
  /** The chain in the groups a cancellation may stop between: the inputs, then one per layer. */
  private groups: Step[][] = [];
  private lastLogits: Step[] = [];
  private everyLogits: Step[] = [];
  private ids!: GPUBuffer;
  private pleRows: GPUBuffer | null = null;
  /** The block's last row of h, copied to its own buffer before the last-token output steps. */
  private lastH!: { from: GPUBuffer; to: GPUBuffer; width: number };
  logits!: GPUBuffer;

  private constructor(
    private readonly device: GPUDevice,
    readonly config: Gemma4Config,
    readonly options: GpuForwardOptions,
    private readonly linear: LinearKernels,
    private readonly ops: OpKernels,
  ) {
    this.kv = new KvCache(device, config, options.contextSize, options.maxTokens);
    this.position = new PositionUniform(device);
  }

  /** `ropeFactors`: rope_freqs.weight (global layers' frequency divisors), read on the CPU. */
  static async create(
    device: GPUDevice, config: Gemma4Config, tensors: ModelTensors, weights: GpuWeights, ropeFactors: Float32Array | null, options: GpuForwardOptions,
    /** Compiled pipelines shared with other forwards of the same model. */
    cache = new PipelineCache(device),
  ): Promise<GpuForward> {
    const forward = new GpuForward(device, config, options, new LinearKernels(device, { pipelines: cache }), new OpKernels(device, cache));
    try {
      await forward.build(tensors, weights, ropeFactors);
    } catch (e) {
      forward.destroy();
      throw e;
    }
    return forward;
  }

  /** GPU bytes of activations and KV cache (weights are counted by GpuWeights). */
  get bytes(): number {
    return this.buffers.reduce((n, b) => n + b.size, 0) + this.kv.bytes;
  }

  private buffer(label: string, floats: number, usage = 0): GPUBuffer {
    checkBufferSize(this.device, label, floats * f32);
    const b = this.device.createBuffer({ label, size: Math.max(16, floats * f32), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC | usage });
    this.buffers.push(b);
    return b;
  }

  private async bind(d: Promise<Dispatch>): Promise<Dispatch> {
    const dispatch = await d;
    this.dispatches.push(dispatch);
    return dispatch;
  }

  /** y = W·x for the block, with W one whole buffer. */
  private async linearLayer(weights: GpuWeights, info: GGUFTensorInfo, x: GPUBuffer, y: GPUBuffer, label: string): Promise<Step> {
    const cols = info.dims[0]!;
    const rows = info.dims[1]!;
    const common = { weight: weights.single(info), type: info.type, rows, cols, x, y, label };
    const bound: BoundLinear = {
      one: await this.bind(this.linear.bindMatVec(common)),
      many: await this.bind(this.linear.bindMatMul({ ...common, tokens: this.options.maxTokens })),
    };
    return (pass, tokens) => (tokens === 1 ? bound.one.encode(pass) : bound.many.encode(pass, tokens));
  }

  private async build(tensors: ModelTensors, weights: GpuWeights, ropeFactors: Float32Array | null): Promise<void> {
    const c = this.config;
    const T = this.options.maxTokens;
    const d = c.width;
    const L = c.layerCount;
    const P = c.pleWidth;
    const eps = c.rmsEpsilon;
    const maxHd = Math.max(c.headDimGlobal, c.headDimSliding);
    const maxKv = Math.max(...c.layers.map((l) => l.kvHeads * l.headDim));
    const maxF = Math.max(...c.layers.map((l) => l.ffnWidth));
    const ops = this.ops;
    let steps: Step[] = [];
    this.groups = [steps];
    const add = (d: Dispatch): void => {
      steps.push((pass, tokens) => d.encode(pass, tokens));
    };

    this.ids = this.buffer('ids', T);
    const h = this.buffer('h', T * d);
    const x = this.buffer('x', T * d);
    const q = this.buffer('q', T * c.headCount * maxHd);
    const k = this.buffer('k', T * maxKv);
    const v = this.buffer('v', T * maxKv);
    const o = this.buffer('o', T * c.headCount * maxHd);
    const a = this.buffer('a', T * d);
    const gate = this.buffer('gate', T * maxF);
    const up = this.buffer('up', T * maxF);
    const logitRows = this.options.allLogits ? T : 1;
    this.logits = this.buffer('logits', logitRows * c.vocabSize);

    // §3.1 inputs.
    const embd = weights.get(tensors.tokenEmbd);
    const embedTiles = embd.tiles.map((t) => ({ weight: t.buffer, firstRow: t.firstRow, rows: t.rows }));
    add(await this.bind(ops.bindEmbed({ maxTokens: T, type: tensors.tokenEmbd.type, cols: d, tiles: embedTiles, ids: this.ids, out: h, scale: Math.sqrt(d), label: 'embed' })));
    let ple: GPUBuffer | null = null;
    let g: GPUBuffer | null = null;
    if (P > 0) {
      const pleProj = this.buffer('pleProj', T * L * P);
      this.pleRows = this.buffer('pleRows', T * L * P);
      ple = this.buffer('ple', T * L * P);
      g = this.buffer('g', T * P);
      steps.push(await this.linearLayer(weights, tensors.pleModelProj!, h, pleProj, 'per_layer_model_proj'));
      add(await this.bind(ops.bindPleCombine({
        maxTokens: T, proj: pleProj, projScale: 1 / Math.sqrt(d), tokenRows: this.pleRows,
        weight: weights.single(tensors.pleProjNorm!), layers: L, size: P, out: ple, eps, label: 'ple_combine',
      })));
    }

    for (const layer of c.layers) {
      const w = tensors.layers[layer.index]!;
      const hd = layer.headDim;
      const nq = c.headCount;
      const kvWidth = layer.kvHeads * hd;
      const tag = `layer${layer.index}`;
      steps = [];
      this.groups.push(steps);
      const norm = (info: GGUFTensorInfo) => weights.single(info);
      // Attention block.
      add(await this.bind(ops.bindRmsNorm({ maxTokens: T, size: d, x: h, weight: norm(w.attnNorm), out: x, eps, label: `${tag}.attn_norm` })));
      steps.push(await this.linearLayer(weights, w.q, x, q, `${tag}.attn_q`));
      add(await this.bind(ops.bindRmsNorm({ maxTokens: T, size: hd, count: nq, x: q, weight: norm(w.qNorm), out: q, eps, label: `${tag}.q_norm` })));
      const rope = {
        maxTokens: T, headDim: hd, dims: layer.ropeDims, base: layer.ropeBase,
        factors: layer.sliding || !ropeFactors ? undefined : ropeFactors.subarray(0, layer.ropeDims / 2), position: this.position.buffer,
      };
      add(await this.bind(ops.bindRope({ ...rope, x: q, heads: nq, label: `${tag}.rope_q` })));
      const cache = this.kv.forLayer(layer.kvLayer);
      if (layer.kvLayer === layer.index) {
        steps.push(await this.linearLayer(weights, w.k!, x, k, `${tag}.attn_k`));
        add(await this.bind(ops.bindRmsNorm({ maxTokens: T, size: hd, count: layer.kvHeads, x: k, weight: norm(w.kNorm!), out: k, eps, label: `${tag}.k_norm` })));
        add(await this.bind(ops.bindRope({ ...rope, x: k, heads: layer.kvHeads, label: `${tag}.rope_k` })));
        steps.push(await this.linearLayer(weights, w.v!, x, v, `${tag}.attn_v`));
        add(await this.bind(ops.bindRmsNorm({ maxTokens: T, size: hd, count: layer.kvHeads, x: v, out: v, eps, label: `${tag}.v_norm` })));
        add(await this.bind(ops.bindKvStore({
          maxTokens: T, k, v, kCache: cache.keys, vCache: cache.values, width: kvWidth, capacity: cache.capacity, position: this.position.buffer, label: `${tag}.kv_store`,
        })));
      }
      add(await this.bind(ops.bindAttention({
        maxTokens: T, q, kCache: cache.keys, vCache: cache.values, out: o, heads: nq, kvHeads: layer.kvHeads, headDim: hd,
        capacity: cache.capacity, window: layer.sliding ? c.slidingWindow : 0, maxPosition: this.options.contextSize - 1,
        position: this.position.buffer, label: `${tag}.attention`,
      })));
      steps.push(await this.linearLayer(weights, w.attnOutput, o, a, `${tag}.attn_output`));
      add(await this.bind(ops.bindRmsNorm({ maxTokens: T, size: d, x: a, weight: norm(w.postAttnNorm), residual: h, out: h, eps, label: `${tag}.post_attention_norm` })));
      // MLP block.
      add(await this.bind(ops.bindRmsNorm({ maxTokens: T, size: d, x: h, weight: norm(w.ffnNorm), out: x, eps, label: `${tag}.ffn_norm` })));
      steps.push(await this.linearLayer(weights, w.gate, x, gate, `${tag}.ffn_gate`));
      steps.push(await this.linearLayer(weights, w.up, x, up, `${tag}.ffn_up`));
      add(await this.bind(ops.bindGeluMul({ maxTokens: T, width: layer.ffnWidth, gate, up, out: gate, label: `${tag}.gelu_mul` })));
      steps.push(await this.linearLayer(weights, w.down, gate, a, `${tag}.ffn_down`));
      add(await this.bind(ops.bindRmsNorm({ maxTokens: T, size: d, x: a, weight: norm(w.postFfnNorm), residual: h, out: h, eps, label: `${tag}.post_ffw_norm` })));
      // Per-layer-embedding block.
      if (ple && g) {
        steps.push(await this.linearLayer(weights, w.pleGate!, h, g, `${tag}.inp_gate`));
        add(await this.bind(ops.bindGeluMul({ maxTokens: T, width: P, gate: g, up: ple, upOffset: layer.index * P, upStride: L * P, out: g, label: `${tag}.ple_gate` })));
        steps.push(await this.linearLayer(weights, w.pleProj!, g, a, `${tag}.proj`));
        add(await this.bind(ops.bindRmsNorm({ maxTokens: T, size: d, x: a, weight: norm(w.plePostNorm!), residual: h, out: h, eps, label: `${tag}.post_norm` })));
      }
      add(await this.bind(ops.bindScale({ maxTokens: T, width: d, x: h, factor: weights.single(w.outputScale), out: h, label: `${tag}.layer_output_scale` })));
    }

    // §3.3 output, for the last token of the block or for every token.
    const outNorm = weights.single(tensors.outputNorm);
    const finalNorm = await this.bind(ops.bindRmsNorm({ maxTokens: T, size: d, x: h, weight: outNorm, out: x, eps, label: 'output_norm' }));
    this.everyLogits.push((pass, tokens) => finalNorm.encode(pass, tokens));
    // Every token's logits (tests and `rullama logits`, not the hot path): one matvec per token and
    // tile, which also suits the tall, narrow output matrices of small models.
    if (this.options.allLogits) {
      const perToken: Dispatch[][] = [];
      for (let t = 0; t < T; t++) {
        const row: Dispatch[] = [];
        for (const tile of embd.tiles) {
          row.push(await this.bind(this.linear.bindMatVec({
            weight: tile.buffer, type: tensors.tokenEmbd.type, rows: tile.rows, cols: d, x, xOffset: t * d, y: this.logits,
            yOffset: t * c.vocabSize + tile.firstRow, label: `output[${t}][${tile.firstRow}]`,
          })));
        }
        perToken.push(row);
      }
      this.everyLogits.push((pass, tokens) => {
        for (let t = 0; t < tokens; t++) for (const dsp of perToken[t]!) dsp.encode(pass);
      });
    }
    if (this.options.allLogits && c.logitSoftcap > 0) {
      const cap = await this.bind(ops.bindSoftcap({ maxTokens: T, width: c.vocabSize, x: this.logits, out: this.logits, cap: c.logitSoftcap, label: 'softcap' }));
      this.everyLogits.push((pass, tokens) => cap.encode(pass, tokens));
    }
    // Last-token logits: copy h's last row to a one-row buffer (a copy in the encoder), then norm and matvec.
    const lastH = this.buffer('lastH', d);
    const lastX = this.buffer('lastX', d);
    const lastNorm = await this.bind(ops.bindRmsNorm({ maxTokens: 1, size: d, x: lastH, weight: outNorm, out: lastX, eps, label: 'output_norm.last' }));
    const lastOut: Dispatch[] = [];
    for (const tile of embd.tiles) {
      lastOut.push(await this.bind(this.linear.bindMatVec({ weight: tile.buffer, type: tensors.tokenEmbd.type, rows: tile.rows, cols: d, x: lastX, y: this.logits, yOffset: tile.firstRow, label: `output.last[${tile.firstRow}]` })));
    }
    this.lastLogits.push((pass) => lastNorm.encode(pass, 1));
    for (const dsp of lastOut) this.lastLogits.push((pass) => dsp.encode(pass));
    if (c.logitSoftcap > 0) {
      const cap = await this.bind(ops.bindSoftcap({ maxTokens: 1, width: c.vocabSize, x: this.logits, out: this.logits, cap: c.logitSoftcap, label: 'softcap.last' }));
      this.lastLogits.push((pass) => cap.encode(pass, 1));
    }
    this.lastH = { from: h, to: lastH, width: d };
  }

  private async readF32(buffer: GPUBuffer, count: number): Promise<Float32Array> {
    const staging = this.device.createBuffer({ size: count * f32, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const encoder = this.device.createCommandEncoder();
    encoder.copyBufferToBuffer(buffer, 0, staging, 0, count * f32);
    this.device.queue.submit([encoder.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    const out = new Float32Array(staging.getMappedRange().slice(0));
    staging.destroy();
    return out;
  }

  /**
   * Records and submits the forward pass of `ids` (at most maxTokens) at positions start … start+T−1.
   * `pleRows` holds the per-layer token rows ([T][L·P]) when the model has PLE. Afterwards
   * `logits` holds the last token's logits (row 0) or, with `all`, every token's ([T][V]).
   *
   * Without a signal the whole block is one submit. With one, a block of several tokens is
   * submitted layer by layer and the signal is checked as each layer finishes, so a cancellation
   * takes effect within one layer's work (a single token's whole step is about that much work).
   * A cancelled block leaves the KV cache of earlier positions intact: the caller simply does not
   * count the block's positions. `after` records more work (the sampler) into the last encoder.
   */
  async run(
    ids: Uint32Array<ArrayBuffer>, start: number, pleRows: Float32Array<ArrayBuffer> | null,
    options: { all?: boolean; signal?: AbortSignal; after?: (encoder: GPUCommandEncoder) => void } = {},
  ): Promise<void> {
    const T = ids.length;
    const all = options.all ?? false;
    if (T < 1 || T > this.options.maxTokens) throw new RullamaError('bad-argument', `a forward block holds 1 to ${this.options.maxTokens} tokens, not ${T}`);
    if (start + T > this.options.contextSize) {
      throw new RullamaError('context-overflow', `positions up to ${start + T - 1} exceed the context of ${this.options.contextSize} tokens`);
    }
    if (all && !this.options.allLogits) throw new RullamaError('bad-argument', 'this forward was built without allLogits');
    const queue = this.device.queue;
    queue.writeBuffer(this.ids, 0, ids);
    if (this.pleRows && pleRows) queue.writeBuffer(this.pleRows, 0, pleRows);
    this.position.set(start);
    const { signal } = options;
    const layerByLayer = signal !== undefined && T > 1;
    let encoder = this.device.createCommandEncoder({ label: 'forward' });
    for (const group of this.groups) {
      const pass = encoder.beginComputePass();
      for (const step of group) step(pass, T);
      pass.end();
      if (layerByLayer) {
        queue.submit([encoder.finish()]);
        await queue.onSubmittedWorkDone();
        throwIfAborted(signal);
        encoder = this.device.createCommandEncoder({ label: 'forward' });
      }
    }
    let pass = encoder.beginComputePass();
    if (all) {
      for (const step of this.everyLogits) step(pass, T);
      pass.end();
    } else {
      pass.end();
      const { from, to, width } = this.lastH;
      encoder.copyBufferToBuffer(from, (T - 1) * width * f32, to, 0, width * f32);
      pass = encoder.beginComputePass();
      for (const step of this.lastLogits) step(pass, 1);
      pass.end();
    }
    options.after?.(encoder);
    queue.submit([encoder.finish()]);
  }

  /** Reads `rows` rows of logits back (after encode). */
  async readLogits(rows = 1): Promise<Float32Array> {
    return this.readF32(this.logits, rows * this.config.vocabSize);
  }

  destroy(): void {
    for (const d of this.dispatches) d.destroy();
    for (const b of this.buffers) b.destroy();
    this.kv.destroy();
    this.position.destroy();
    this.linear.destroy();
    this.ops.destroy();
  }
}
