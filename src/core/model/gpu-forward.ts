import { RullamaError, throwIfAborted } from '../errors.js';
import { checkBufferSize, readBack, readFirstFloats } from '../gpu/buffers.js';
import { isSoftwareDevice } from '../gpu/device.js';
import { LinearKernels, supportsResidualInput, type Dispatch, type MatVecEpilogue } from '../gpu/linear.js';
import { OpKernels, PositionUniform } from '../gpu/ops.js';
import { PipelineCache } from '../gpu/pipelines.js';
import { GGMLType, type GGUFTensorInfo } from '../gguf/types.js';
import type { Gemma4Config } from './config.js';
import { KvCache } from './kv-cache.js';
import type { GpuLoraSet } from './lora-weights.js';
import type { ModelTensors } from './tensors.js';
import type { GpuWeights } from './weights.js';

/** A linear layer bound for one token (matvec) and for a block of tokens (matmul). */
interface BoundLinear {
  one: Dispatch;
  many: Dispatch;
}

/** Where a linear layer of the chain reads and writes, for binding LoRA terms beside it. */
interface LinearSite {
  x: GPUBuffer;
  y: GPUBuffer;
  rows: number;
  cols: number;
}

/** The LoRA terms bound into the chain: per adapted weight, the steps that add B·(A·x) to its y. */
interface BoundLora {
  set: GpuLoraSet;
  steps: Map<string, Step>;
  dispatches: Dispatch[];
  buffers: GPUBuffer[];
}

/** One step of the chain: records its work for T tokens. */
interface Step {
  readonly label: string;
  encode(pass: GPUComputePassEncoder, tokens: number): void;
}

/** GPU time of one step of the chain (from {@link GpuForward.profile}). */
export interface StepTime {
  label: string;
  ms: number;
}

/** CPU time spent in {@link GpuForward.run} (recording and submitting), for benchmarks. */
export const forwardCpu = { ms: 0, calls: 0, prepareMs: 0 };

export interface GpuForwardOptions {
  /** Context size: positions 0 … contextSize − 1. */
  contextSize: number;
  /** Tokens per forward call (prefill chunk); buffers are sized for it. */
  maxTokens: number;
  /** Whether logits of every token of a block can be requested (needs [maxTokens][vocab] floats). */
  allLogits?: boolean;
  /** The one-token kernels; see {@link KernelProfile}. Default: by device ({@link isSoftwareDevice}). */
  kernelProfile?: KernelProfile;
  /** Prefill's Q4_K and Q6_K matmuls round x to 8 bits and multiply in integers (LinearKernels' int8MatMul). */
  int8Prefill?: boolean;
}

/**
 * The kernel variants of a one-token (decode) call. 'gpu': q/k/v, and gate/up with their GELU
 * product, as one matvec dispatch each, and attention by head groups over key splits. 'software'
 * (the default on SwiftShader and other CPU adapters, where a workgroup's barriers and lane sums
 * are emulated thread by thread): separate matvecs and the tiled attention kernel.
 */
export type KernelProfile = 'gpu' | 'software';

const f32 = 4;
/** Groups (the inputs, then one per layer) in the first command buffer of a decode step or block. */
const FIRST_SUBMIT_GROUPS = 3;
/** Groups in each later command buffer of a decode step (see `prepared`) or block. */
const GROUPS_PER_SUBMIT = 8;
/** The norm weights a layer keeps in the folded decode's table, in their order there. */
const NORM_SLOTS = ['postAttnNorm', 'ffnNorm', 'postFfnNorm', 'plePostNorm', 'attnNorm'] as const;
type NormSlot = (typeof NORM_SLOTS)[number];

/**
 * The Gemma 4 forward pass on the GPU (spec §3) as a chain of bound kernels: every buffer, uniform
 * and bind group is made once here; a call writes the token ids, the per-layer token rows and the
 * start position, records the whole chain into one command encoder (one compute pass), and submits
 * once. A one-token step's chain is recorded ahead, while the GPU runs the step before (see
 * `prepared`). Every layer ends with one rms_norm dispatch that also applies the layer scale and
 * the next layer's input norm, and its q/k norms, RoPE and KV store are one dispatch
 * (qk_norm_rope). Decode-only fusions (a token without LoRA terms on the weights concerned): q, k
 * and v are one matvec dispatch, gate, up and their GELU product another, the per-layer input's
 * GELU product sits in the inp_gate matvec's epilogue, attention takes the head-group decode
 * kernel, and the output norm reads h in the chain's compute pass. On Q4_K models
 * with per-layer embeddings (E2B), decode also folds the norms after attention and after the MLP
 * into the gate+up and inp_gate matvecs (they form their inputs from h and the block outputs; see
 * MatVecResidualInput): h then changes once a layer, in the norm that ends it, which in turn folds
 * into the next layer's q where q is its only projection (KV-shared layers).
 *
 * Activation buffers (f32, row-major, one row per token of the block):
 *   h [T][d] residual stream     x [T][d] normed input         q/o [T][nq·hd]   k/v [T][nkv·hd]
 *   a/a2/a3 [T][d] attention, MLP and per-layer-input outputs    hs [T][d] h + the normed a and a2
 *   gate/up [T][F]   ple/pleRows/pleProj [T][L·P]   g [T][P] per-layer gate   logits [T or 1][V]
 */
export class GpuForward {
  readonly kv: KvCache;
  private readonly position: PositionUniform;
  private readonly buffers: GPUBuffer[] = [];
  private readonly dispatches: Dispatch[] = [];
  /** The chain in the groups a cancellation may stop between: the inputs, then one per layer. */
  private groups: Step[][] = [];
  private lastLogits: Step[] = [];
  /** The last-token output steps of a one-token block: the norm reads h itself, in the chain's pass. */
  private oneLogits: Step[] = [];
  private everyLogits: Step[] = [];
  private ids!: GPUBuffer;
  private pleRows: GPUBuffer | null = null;
  /** The per-layer token rows are gathered on the GPU (the table was uploaded): `run` takes no rows. */
  private gathersPerLayerRows = false;
  /** The block's last row of h, copied to its own buffer before the last-token output steps. */
  private lastH!: { from: GPUBuffer; to: GPUBuffer; width: number };
  /**
   * The one-token chain (last-token logits) recorded ahead, right after the previous step was
   * submitted, while the GPU runs it: the chain does not depend on the token (ids, PLE rows and
   * the position are written to buffers with queue.writeBuffer before submit), so the next decode
   * step only writes those, appends the sampler and submits. It is cut into command buffers
   * (`head`, then the open `tail`) submitted one by one: Dawn translates a command buffer to the
   * native API inside submit, so the GPU starts on the first layers while the CPU translates the
   * rest, instead of waiting for the whole chain's translation. A chained step (token from the GPU)
   * is submitted ahead of the GPU, so its parts go in one submit.
   */
  private prepared: { head: GPUCommandBuffer[]; tail: GPUCommandEncoder } | null = null;
  /** The linear layers LoRA may adapt, by weight name. */
  private readonly linearSites = new Map<string, LinearSite>();
  private lora: BoundLora | null = null;
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
    const forward = new GpuForward(device, config, options, new LinearKernels(device, { pipelines: cache, int8MatMul: options.int8Prefill }), new OpKernels(device, cache));
    try {
      await forward.build(tensors, weights, ropeFactors);
    } catch (e) {
      forward.destroy();
      throw e;
    }
    return forward;
  }

  /** GPU bytes of activations, KV cache and kernel scratch (weights are counted by GpuWeights), and of LoRA terms. */
  get bytes(): number {
    const lora = this.lora ? this.lora.set.bytes + this.lora.buffers.reduce((n, b) => n + b.size, 0) : 0;
    return this.buffers.reduce((n, b) => n + b.size, 0) + this.kv.bytes + this.linear.bytes + this.ops.bytes + lora;
  }

  /**
   * Whether a one-token step can take its token from a GPU buffer (see {@link run}): the CPU needs
   * nothing of the token, because the model has no per-layer rows or gathers them on the GPU.
   */
  get chainable(): boolean {
    return this.pleRows === null || this.gathersPerLayerRows;
  }

  /** Whether `run` needs the per-layer token rows from the CPU. */
  get needsPerLayerRows(): boolean {
    return this.pleRows !== null && !this.gathersPerLayerRows;
  }

  /** Names of the weights whose outputs LoRA terms can be added to. */
  get adaptable(): ReadonlySet<string> {
    return new Set(this.linearSites.keys());
  }

  /**
   * Binds a set of LoRA terms into the chain (null removes them; the set stays the caller's to
   * destroy). Each adapted weight's step then adds B·(A·x) to its output: t = A·x and u = B·t
   * with the f32 linear kernels, then y += u.
   */
  async setLora(set: GpuLoraSet | null): Promise<void> {
    this.prepared = null; // recorded with the old terms
    this.unbindLora();
    if (!set) return;
    const T = this.options.maxTokens;
    const bound: BoundLora = { set, steps: new Map(), dispatches: [], buffers: [] };
    this.lora = bound;
    const scratch = (label: string, floats: number) => {
      checkBufferSize(this.device, label, floats * f32);
      const b = this.device.createBuffer({ label, size: Math.max(16, floats * f32), usage: GPUBufferUsage.STORAGE });
      bound.buffers.push(b);
      return b;
    };
    const pairs = [...set.pairs.values()];
    const t = scratch('lora.t', T * Math.max(...pairs.map((p) => p.rank)));
    const u = scratch('lora.u', T * Math.max(...pairs.map((p) => p.outFeatures)));
    const bind = async (d: Promise<Dispatch>) => {
      const dispatch = await d;
      bound.dispatches.push(dispatch);
      return dispatch;
    };
    for (const pair of pairs) {
      const site = this.linearSites.get(pair.base);
      if (!site || site.rows !== pair.outFeatures || site.cols !== pair.inFeatures) {
        throw new RullamaError('bad-argument', `LoRA terms for ${pair.base} do not fit this model`);
      }
      const label = `${pair.base}.lora`;
      const down = { weight: pair.a, type: GGMLType.F32, rows: pair.rank, cols: pair.inFeatures, x: site.x, y: t, label: `${label}_a` };
      const up = { weight: pair.b, type: GGMLType.F32, rows: pair.outFeatures, cols: pair.rank, x: t, y: u, label: `${label}_b` };
      const one = [await bind(this.linear.bindMatVec(down)), await bind(this.linear.bindMatVec(up))];
      const many = [await bind(this.linear.bindMatMul({ ...down, tokens: T })), await bind(this.linear.bindMatMul({ ...up, tokens: T }))];
      const add = await bind(this.ops.bindAdd({ maxTokens: T, width: pair.outFeatures, a: site.y, b: u, out: site.y, label: `${label}_add` }));
      bound.steps.set(pair.base, {
        label,
        encode: (pass, tokens) => {
          for (const d of tokens === 1 ? one : many) d.encode(pass, tokens);
          add.encode(pass, tokens);
        },
      });
    }
  }

  private unbindLora(): void {
    if (!this.lora) return;
    for (const d of this.lora.dispatches) d.destroy();
    for (const b of this.lora.buffers) b.destroy();
    this.lora = null;
  }

  /** The LoRA step of weight `name`, when one is bound. */
  private loraStep(name: string): Step | undefined {
    return this.lora?.steps.get(name);
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

  /** y = W·x for the block, with W one whole buffer, plus W's LoRA terms when some are bound. */
  private async linearLayer(weights: GpuWeights, info: GGUFTensorInfo, x: GPUBuffer, y: GPUBuffer, label: string): Promise<Step> {
    const cols = info.dims[0]!;
    const rows = info.dims[1]!;
    const common = { weight: weights.single(info), type: info.type, rows, cols, x, y, label };
    const bound: BoundLinear = {
      one: await this.bind(this.linear.bindMatVec(common)),
      many: await this.bind(this.linear.bindMatMul({ ...common, tokens: this.options.maxTokens })),
    };
    this.linearSites.set(info.name, { x, y, rows, cols });
    return {
      label,
      encode: (pass, tokens) => {
        if (tokens === 1) bound.one.encode(pass);
        else bound.many.encode(pass, tokens);
        this.loraStep(info.name)?.encode(pass, tokens);
      },
    };
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
      steps.push({ label: d.label, encode: (pass, tokens) => d.encode(pass, tokens) });
    };

    this.ids = this.buffer('ids', T);
    const h = this.buffer('h', T * d);
    const x = this.buffer('x', T * d);
    const q = this.buffer('q', T * c.headCount * maxHd);
    const k = this.buffer('k', T * maxKv);
    const v = this.buffer('v', T * maxKv);
    const o = this.buffer('o', T * c.headCount * maxHd);
    const a = this.buffer('a', T * d);
    // The MLP's and the per-layer input's outputs get buffers of their own, and hs holds h plus the
    // attention and MLP terms: the norm that ends a layer reads hs, so h itself changes once a layer.
    const a2 = this.buffer('a2', T * d);
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
    let a3: GPUBuffer | null = null;
    let hs: GPUBuffer | null = null;
    if (P > 0) {
      const pleProj = this.buffer('pleProj', T * L * P);
      this.pleRows = this.buffer('pleRows', T * L * P);
      ple = this.buffer('ple', T * L * P);
      g = this.buffer('g', T * P);
      a3 = this.buffer('a3', T * d);
      hs = this.buffer('hs', T * d);
      if (weights.has(tensors.pleTokenEmbd)) {
        // The table is on the GPU: gather the block's rows there (run then takes no rows).
        const table = weights.get(tensors.pleTokenEmbd!);
        const tiles = table.tiles.map((t) => ({ weight: t.buffer, firstRow: t.firstRow, rows: t.rows }));
        add(await this.bind(ops.bindEmbed({ maxTokens: T, type: table.info.type, cols: L * P, tiles, ids: this.ids, out: this.pleRows, label: 'per_layer_token_embd' })));
        this.gathersPerLayerRows = true;
      }
      steps.push(await this.linearLayer(weights, tensors.pleModelProj!, h, pleProj, 'per_layer_model_proj'));
      add(await this.bind(ops.bindPleCombine({
        maxTokens: T, proj: pleProj, projScale: 1 / Math.sqrt(d), tokenRows: this.pleRows,
        weight: weights.single(tensors.pleProjNorm!), layers: L, size: P, out: ple, eps, label: 'ple_combine',
      })));
    }

    // Each layer's output scale (one f32 on the GPU) is read once here and folded into the norm
    // that ends the layer.
    const layerScales = await readFirstFloats(this.device, c.layers.map((l) => weights.single(tensors.layers[l.index]!.outputScale)));
    const one = (d: Dispatch, many: Dispatch[], label: string): Step => ({
      label,
      encode: (pass, tokens) => {
        if (tokens === 1) d.encode(pass, 1);
        else for (const m of many) m.encode(pass, tokens);
      },
    });
    const matmul = (info: GGUFTensorInfo, x: GPUBuffer, y: GPUBuffer, label: string) =>
      this.bind(this.linear.bindMatMul({ weight: weights.single(info), type: info.type, rows: info.dims[1]!, cols: info.dims[0]!, x, y, label, tokens: T }));
    const matvec = (info: GGUFTensorInfo, x: GPUBuffer, y: GPUBuffer, label: string, epilogue?: { kind: MatVecEpilogue; aux: GPUBuffer; auxOffset?: number }) =>
      this.bind(this.linear.bindMatVec({
        weight: weights.single(info), type: info.type, rows: info.dims[1]!, cols: info.dims[0]!, x, y, label,
        epilogue: epilogue?.kind, aux: epilogue?.aux, auxOffset: epilogue?.auxOffset,
      }));

    // The first layer's input norm; every later one comes out of the norm that ends the layer before.
    add(await this.bind(ops.bindRmsNorm({ maxTokens: T, size: d, x: h, weight: weights.single(tensors.layers[0]!.attnNorm), out: x, eps, label: 'layer0.attn_norm' })));
    const profile = this.options.kernelProfile ?? (isSoftwareDevice(this.device) ? 'software' : 'gpu');
    const multi = profile === 'gpu';
    // Decode folds residual norms into the matvecs that read them (the 'gpu' profile, Q4_K
    // gate/up/inp_gate, a device that allows it): gate+up forms RMS(h + RMS(a)·w)·w' itself, and
    // inp_gate forms hs = h + RMS(a)·w + RMS(a2)·w'' and writes it for the layer's last norm. That
    // last norm folds too where the next layer's only projection is a Q4_K q (KV-shared layers):
    // q forms RMS((hs + RMS(a3)·w)·scale)·w_attn and writes h. The norm weights sit side by side
    // in one table ([layer][post_attn, ffn, post_ffw, post_norm, attn_norm][d]).
    const fusable = multi && ple !== null && supportsResidualInput(this.device, d)
      && c.layers.every((l) => [tensors.layers[l.index]!.gate, tensors.layers[l.index]!.up, tensors.layers[l.index]!.pleGate!].every((t) => t.type === GGMLType.Q4_K));
    const normTable = fusable ? this.buffer('residualNorms', L * NORM_SLOTS.length * d) : null;
    /** Where layer i's norm weights `slot` start in the table (elements). */
    const normAt = (i: number, slot: NormSlot) => (i * NORM_SLOTS.length + NORM_SLOTS.indexOf(slot)) * d;
    if (normTable) {
      const encoder = this.device.createCommandEncoder({ label: 'residual norm table' });
      for (const layer of c.layers) {
        for (const slot of NORM_SLOTS) encoder.copyBufferToBuffer(weights.single(tensors.layers[layer.index]![slot]!), 0, normTable, normAt(layer.index, slot) * f32, d * f32);
      }
      this.device.queue.submit([encoder.finish()]);
    }
    // Whether layer i's q forms its input from the end of layer i − 1 (see above), for a token
    // without LoRA terms on that q.
    const qFolds = (i: number): boolean => normTable !== null && i > 0 && c.layers[i]!.kvLayer !== i && tensors.layers[i]!.q.type === GGMLType.Q4_K;
    const qFolded = (i: number, tokens: number): boolean => tokens === 1 && qFolds(i) && !this.loraStep(tensors.layers[i]!.q.name);
    for (const layer of c.layers) {
      const w = tensors.layers[layer.index]!;
      const hd = layer.headDim;
      const nq = c.headCount;
      const tag = `layer${layer.index}`;
      const nextNorm = layer.index + 1 < L ? { weight: weights.single(tensors.layers[layer.index + 1]!.attnNorm), out: x } : undefined;
      steps = [];
      this.groups.push(steps);
      const norm = (info: GGUFTensorInfo) => weights.single(info);
      // Attention block: q (and k, v on layers with their own KV) — one dispatch for a token
      // without LoRA terms on them —, then q/k norms, RoPE and the KV store in one dispatch.
      const cache = this.kv.forLayer(layer.kvLayer);
      const ownKv = layer.kvLayer === layer.index;
      const projections = [{ info: w.q, y: q, name: 'q' }, ...(ownKv ? [{ info: w.k!, y: k, name: 'k' }, { info: w.v!, y: v, name: 'v' }] : [])];
      const projSteps: Step[] = [];
      for (const pr of projections) projSteps.push(await this.linearLayer(weights, pr.info, x, pr.y, `${tag}.attn_${pr.name}`));
      const qkvOne = multi ? await this.bind(this.linear.bindMatVecMulti({
        cols: d, x, parts: projections.map((pr) => ({ weight: weights.single(pr.info), type: pr.info.type, rows: pr.info.dims[1]!, y: pr.y })),
        label: `${tag}.attn_${projections.map((pr) => pr.name).join('')}`,
      })) : null;
      const prev = layer.index - 1;
      const qOwnInput = qFolds(layer.index) ? await this.bind(this.linear.bindMatVec({
        weight: weights.single(w.q), type: w.q.type, rows: w.q.dims[1]!, cols: d, x: hs!, y: q, label: `layer${prev}.post_norm+scale+${tag}.attn_norm+attn_q`,
        residual: { terms: [{ a: a3!, norm: normAt(prev, 'plePostNorm') }], norm: normAt(layer.index, 'attnNorm'), norms: normTable!, eps, scale: layerScales[prev]!, out: { buffer: h } },
      })) : null;
      steps.push({
        label: `${tag}.attn_${projections.map((pr) => pr.name).join('')}`,
        encode: (pass, tokens) => {
          if (qOwnInput && qFolded(layer.index, tokens)) return qOwnInput.encode(pass, 1);
          if (qkvOne && tokens === 1 && !projections.some((pr) => this.loraStep(pr.info.name))) return qkvOne.encode(pass, 1);
          for (const st of projSteps) st.encode(pass, tokens);
        },
      });
      add(await this.bind(ops.bindQkNormRope({
        maxTokens: T, q, heads: nq, headDim: hd, dims: layer.ropeDims, base: layer.ropeBase,
        factors: layer.sliding || !ropeFactors ? undefined : ropeFactors.subarray(0, layer.ropeDims / 2),
        qNorm: norm(w.qNorm), eps, position: this.position.buffer,
        kv: ownKv ? { k, v, kvHeads: layer.kvHeads, kNorm: norm(w.kNorm!), kCache: cache.keys, vCache: cache.values, capacity: cache.capacity } : undefined,
        label: `${tag}.qk_norm_rope${ownKv ? '+kv_store' : ''}`,
      })));
      add(await this.bind(ops.bindAttention({
        maxTokens: T, q, kCache: cache.keys, vCache: cache.values, out: o, heads: nq, kvHeads: layer.kvHeads, headDim: hd,
        capacity: cache.capacity, window: layer.sliding ? c.slidingWindow : 0, maxPosition: this.options.contextSize - 1,
        position: this.position.buffer, decodeKernel: profile === 'gpu' ? 'head-groups' : 'tiled', label: `${tag}.attention`,
      })));
      steps.push(await this.linearLayer(weights, w.attnOutput, o, a, `${tag}.attn_output`));
      // Whether this call takes the folded norms (see `fusable`): one token, no LoRA terms on gate or up.
      const folded = (tokens: number) => normTable !== null && tokens === 1 && !this.loraStep(w.gate.name) && !this.loraStep(w.up.name);
      // h = h + RMS(a)·w, and the MLP's input norm of the new h, in one dispatch.
      const postAttn = await this.bind(ops.bindRmsNorm({
        maxTokens: T, size: d, x: a, weight: norm(w.postAttnNorm), residual: h, out: h, eps, label: `${tag}.post_attention_norm+ffn_norm`,
        next: { weight: norm(w.ffnNorm), out: x },
      }));
      steps.push({
        label: postAttn.label,
        encode: (pass, tokens) => {
          if (!folded(tokens)) postAttn.encode(pass, tokens);
        },
      });
      // MLP block: a token without LoRA terms on gate or up computes gate, up and their GELU
      // product in one dispatch; with terms on gate only, gate then up with the GELU of the gate in
      // its epilogue; a block (or terms on up) runs gate, up, then gelu_mul into up. The down
      // projection reads up either way.
      const gateStep = await this.linearLayer(weights, w.gate, x, gate, `${tag}.ffn_gate`);
      const gateUpOne = multi ? await this.bind(this.linear.bindMatVecMulti({
        cols: d, x, gelu: { y: up }, label: `${tag}.ffn_gate+up+gelu`,
        parts: [w.gate, w.up].map((info) => ({ weight: weights.single(info), type: info.type, rows: info.dims[1]! })),
      })) : null;
      const gateUpFolded = normTable ? await this.bind(this.linear.bindMatVecMulti({
        cols: d, x: h, gelu: { y: up }, label: `${tag}.ffn_norm+gate+up+gelu`,
        parts: [w.gate, w.up].map((info) => ({ weight: weights.single(info), type: info.type, rows: info.dims[1]! })),
        residual: { terms: [{ a, norm: normAt(layer.index, 'postAttnNorm') }], norm: normAt(layer.index, 'ffnNorm'), norms: normTable, eps },
      })) : null;
      // With LoRA terms on up, they join W_up·x before the GELU product, so a token takes the block path.
      const upOne = await matvec(w.up, x, up, `${tag}.ffn_up+gelu`, { kind: 'gelu-aux-times', aux: gate });
      const upMany = await matmul(w.up, x, up, `${tag}.ffn_up`);
      const geluMany = await this.bind(ops.bindGeluMul({ maxTokens: T, width: layer.ffnWidth, gate, up, out: up, label: `${tag}.gelu_mul` }));
      this.linearSites.set(w.up.name, { x, y: up, rows: w.up.dims[1]!, cols: w.up.dims[0]! });
      steps.push({
        label: `${tag}.ffn_gate+up+gelu`,
        encode: (pass, tokens) => {
          if (gateUpFolded && folded(tokens)) return gateUpFolded.encode(pass, 1);
          const upLora = this.loraStep(w.up.name);
          if (gateUpOne && tokens === 1 && !upLora && !this.loraStep(w.gate.name)) return gateUpOne.encode(pass, 1);
          gateStep.encode(pass, tokens);
          if (tokens === 1 && !upLora) return upOne.encode(pass, 1);
          upMany.encode(pass, tokens);
          upLora?.encode(pass, tokens);
          geluMany.encode(pass, tokens);
        },
      });
      steps.push(await this.linearLayer(weights, w.down, up, a2, `${tag}.ffn_down`));
      const scale = layerScales[layer.index]!;
      if (ple && g && a3 && hs) {
        // hs = h + RMS(a2)·w (h already holds the attention term here).
        const postFfw = await this.bind(ops.bindRmsNorm({ maxTokens: T, size: d, x: a2, weight: norm(w.postFfnNorm), residual: h, out: hs, eps, label: `${tag}.post_ffw_norm` }));
        steps.push({
          label: postFfw.label,
          encode: (pass, tokens) => {
            if (!folded(tokens)) postFfw.encode(pass, tokens);
          },
        });
        // Per-layer-embedding block: the gate's GELU times this layer's per-layer input in the matvec epilogue.
        const gateOne = await matvec(w.pleGate!, hs, g, `${tag}.inp_gate+gelu`, { kind: 'gelu-times-aux', aux: ple, auxOffset: layer.index * P });
        const gateMany = await matmul(w.pleGate!, hs, g, `${tag}.inp_gate`);
        const pleGateMany = await this.bind(ops.bindGeluMul({ maxTokens: T, width: P, gate: g, up: ple, upOffset: layer.index * P, upStride: L * P, out: g, label: `${tag}.ple_gate` }));
        const gateStep = one(gateOne, [gateMany, pleGateMany], `${tag}.inp_gate+gelu`);
        const gateFolded = normTable ? await this.bind(this.linear.bindMatVec({
          weight: weights.single(w.pleGate!), type: w.pleGate!.type, rows: w.pleGate!.dims[1]!, cols: d, x: h, y: g, label: `${tag}.post_ffw_norm+inp_gate+gelu`,
          epilogue: 'gelu-times-aux', aux: ple, auxOffset: layer.index * P,
          residual: { terms: [{ a, norm: normAt(layer.index, 'postAttnNorm') }, { a: a2, norm: normAt(layer.index, 'postFfnNorm') }], norms: normTable, eps, out: { buffer: hs } },
        })) : null;
        steps.push({
          label: gateStep.label,
          encode: (pass, tokens) => (gateFolded && folded(tokens) ? gateFolded.encode(pass, 1) : gateStep.encode(pass, tokens)),
        });
        steps.push(await this.linearLayer(weights, w.pleProj!, g, a3, `${tag}.proj`));
        // h = (hs + RMS(a3)·w)·layer scale, and the next layer's input norm (unless the next q forms them).
        const postNorm = await this.bind(ops.bindRmsNorm({
          maxTokens: T, size: d, x: a3, weight: norm(w.plePostNorm!), residual: hs, out: h, outScale: scale, eps, next: nextNorm,
          label: `${tag}.post_norm+scale${nextNorm ? '+attn_norm' : ''}`,
        }));
        const next = layer.index + 1;
        steps.push({
          label: postNorm.label,
          encode: (pass, tokens) => {
            if (!(next < L && qFolded(next, tokens))) postNorm.encode(pass, tokens);
          },
        });
      } else {
        add(await this.bind(ops.bindRmsNorm({
          maxTokens: T, size: d, x: a2, weight: norm(w.postFfnNorm), residual: h, out: h, outScale: scale, eps, next: nextNorm,
          label: `${tag}.post_ffw_norm+scale${nextNorm ? '+attn_norm' : ''}`,
        })));
      }
    }

    // §3.3 output, for the last token of the block or for every token.
    const outNorm = weights.single(tensors.outputNorm);
    const finalNorm = await this.bind(ops.bindRmsNorm({ maxTokens: T, size: d, x: h, weight: outNorm, out: x, eps, label: 'output_norm' }));
    this.everyLogits.push({ label: finalNorm.label, encode: (pass, tokens) => finalNorm.encode(pass, tokens) });
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
      this.everyLogits.push({
        label: 'output',
        encode: (pass, tokens) => {
          for (let t = 0; t < tokens; t++) for (const dsp of perToken[t]!) dsp.encode(pass);
        },
      });
    }
    if (this.options.allLogits && c.logitSoftcap > 0) {
      const cap = await this.bind(ops.bindSoftcap({ maxTokens: T, width: c.vocabSize, x: this.logits, out: this.logits, cap: c.logitSoftcap, label: 'softcap' }));
      this.everyLogits.push({ label: cap.label, encode: (pass, tokens) => cap.encode(pass, tokens) });
    }
    // Last-token logits: copy h's last row to a one-row buffer (a copy in the encoder), then norm and matvec.
    const lastH = this.buffer('lastH', d);
    const lastX = this.buffer('lastX', d);
    const lastNorm = await this.bind(ops.bindRmsNorm({ maxTokens: 1, size: d, x: lastH, weight: outNorm, out: lastX, eps, label: 'output_norm.last' }));
    const lastOut: Dispatch[] = [];
    for (const tile of embd.tiles) {
      lastOut.push(await this.bind(this.linear.bindMatVec({ weight: tile.buffer, type: tensors.tokenEmbd.type, rows: tile.rows, cols: d, x: lastX, y: this.logits, yOffset: tile.firstRow, label: `output.last[${tile.firstRow}]` })));
    }
    const oneNorm = await this.bind(ops.bindRmsNorm({ maxTokens: 1, size: d, x: h, weight: outNorm, out: lastX, eps, label: 'output_norm.last' }));
    this.lastLogits.push({ label: lastNorm.label, encode: (pass) => lastNorm.encode(pass, 1) });
    this.oneLogits.push({ label: oneNorm.label, encode: (pass) => oneNorm.encode(pass, 1) });
    for (const dsp of lastOut) this.lastLogits.push({ label: dsp.label, encode: (pass) => dsp.encode(pass) });
    if (c.logitSoftcap > 0) {
      const cap = await this.bind(ops.bindSoftcap({ maxTokens: 1, width: c.vocabSize, x: this.logits, out: this.logits, cap: c.logitSoftcap, label: 'softcap.last' }));
      this.lastLogits.push({ label: cap.label, encode: (pass) => cap.encode(pass, 1) });
    }
    this.oneLogits.push(...this.lastLogits.slice(1));
    this.lastH = { from: h, to: lastH, width: d };
  }

  /**
   * Records and submits the forward pass of `ids` (at most maxTokens) at positions start … start+T−1.
   * `ids` may instead be a GPU buffer whose first u32 is the one token of a decode step (a
   * sampler's result, copied on the GPU: the step is submitted before the CPU knows its token; see
   * {@link chainable}). `pleRows` holds the per-layer token rows ([T][L·P]) when the model has PLE
   * and {@link needsPerLayerRows}. Afterwards
   * `logits` holds the last token's logits (row 0) or, with `all`, every token's ([T][V]).
   *
   * Without a signal the whole block is one submit. With one, a block of several tokens is
   * submitted layer by layer and the signal is checked as each layer finishes, so a cancellation
   * takes effect within one layer's work (a single token's whole step is about that much work).
   * A cancelled block leaves the KV cache of earlier positions intact: the caller simply does not
   * count the block's positions. `after` records more work (the sampler) into the last encoder.
   */
  async run(
    ids: Uint32Array<ArrayBuffer> | GPUBuffer, start: number, pleRows: Float32Array<ArrayBuffer> | null,
    options: { all?: boolean; signal?: AbortSignal; after?: (encoder: GPUCommandEncoder) => void } = {},
  ): Promise<void> {
    const fromGpu = !ArrayBuffer.isView(ids);
    const T = fromGpu ? 1 : ids.length;
    const all = options.all ?? false;
    if (T < 1 || T > this.options.maxTokens) throw new RullamaError('bad-argument', `a forward block holds 1 to ${this.options.maxTokens} tokens, not ${T}`);
    if (start + T > this.options.contextSize) {
      throw new RullamaError('context-overflow', `positions up to ${start + T - 1} exceed the context of ${this.options.contextSize} tokens`);
    }
    if (all && !this.options.allLogits) throw new RullamaError('bad-argument', 'this forward was built without allLogits');
    if (fromGpu && !this.chainable) throw new RullamaError('bad-argument', 'this forward needs each token on the CPU (its per-layer rows are read there)');
    const rowFloats = T * this.config.layerCount * this.config.pleWidth;
    if (this.needsPerLayerRows && (pleRows?.length ?? 0) < rowFloats) throw new RullamaError('bad-argument', `the per-layer rows of ${T} tokens (${rowFloats} floats) are needed`);
    const cpu0 = performance.now();
    const queue = this.device.queue;
    /** Command buffers submitted with the last one, in one submit. */
    const first: GPUCommandBuffer[] = [];
    if (fromGpu) {
      const copy = this.device.createCommandEncoder({ label: 'chained token' });
      copy.copyBufferToBuffer(ids, 0, this.ids, 0, 4);
      first.push(copy.finish());
    } else {
      queue.writeBuffer(this.ids, 0, ids);
    }
    if (this.needsPerLayerRows) queue.writeBuffer(this.pleRows!, 0, pleRows!);
    this.position.set(start);
    const { signal } = options;
    const layerByLayer = signal !== undefined && T > 1;
    let encoder: GPUCommandEncoder;
    if (T === 1 && !all) {
      const prepared = this.prepared ?? this.recordOne();
      this.prepared = null;
      // A chained step is submitted while the GPU still runs the step before: its parts go in one
      // submit (one native submission, measured 0.1 ms a token faster on an H200 than one each).
      if (fromGpu) first.push(...prepared.head);
      else for (const buffer of prepared.head) queue.submit([buffer]);
      encoder = prepared.tail;
    } else {
      this.prepared = null;
      encoder = this.device.createCommandEncoder({ label: 'forward' });
      // A cancellable block is submitted layer by layer, waiting for each; otherwise in parts as a
      // decode step is (see recordOne), so the GPU starts on the first layers while the CPU records
      // and Dawn translates the rest. Within a part, one compute pass (Dawn orders the dispatches by
      // their buffer usage).
      let pass = encoder.beginComputePass();
      let open = 0;
      let parts = 0;
      for (const [i, group] of this.groups.entries()) {
        for (const step of group) step.encode(pass, T);
        open++;
        const cut = layerByLayer || (open === (parts === 0 ? FIRST_SUBMIT_GROUPS : GROUPS_PER_SUBMIT) && i + 1 < this.groups.length);
        if (!cut) continue;
        pass.end();
        queue.submit([encoder.finish()]);
        parts++;
        open = 0;
        if (layerByLayer) {
          await queue.onSubmittedWorkDone();
          throwIfAborted(signal);
        }
        encoder = this.device.createCommandEncoder({ label: 'forward' });
        pass = encoder.beginComputePass();
      }
      if (all) {
        for (const step of this.everyLogits) step.encode(pass, T);
        pass.end();
      } else {
        pass.end();
        this.recordLast(encoder, T);
      }
    }
    options.after?.(encoder);
    queue.submit([...first, encoder.finish()]);
    // Decode steps follow a one-token step or a block whose next token is being sampled. After a
    // chained step the next is likely chained too: one part, as it is submitted whole anyway.
    const cpu1 = performance.now();
    if (T === 1 || options.after) this.prepared = this.recordOne(fromGpu);
    const cpu2 = performance.now();
    forwardCpu.ms += cpu2 - cpu0;
    forwardCpu.prepareMs += cpu2 - cpu1;
    forwardCpu.calls++;
  }

  /**
   * The one-token chain with last-token logits: finished command buffers of the first groups, then
   * an open encoder with the rest (one compute pass each). The first buffer is small, so the GPU
   * starts early; the others hold {@link GROUPS_PER_SUBMIT} groups (layers) each. `whole`: one
   * open encoder with everything (for a chained step, which the GPU reaches only later).
   */
  private recordOne(whole = false): { head: GPUCommandBuffer[]; tail: GPUCommandEncoder } {
    const head: GPUCommandBuffer[] = [];
    let encoder = this.device.createCommandEncoder({ label: 'forward' });
    let pass = encoder.beginComputePass();
    let open = 0;
    for (const [i, group] of this.groups.entries()) {
      for (const step of group) step.encode(pass, 1);
      open++;
      const cut = !whole && (head.length === 0 ? open === FIRST_SUBMIT_GROUPS : open === GROUPS_PER_SUBMIT);
      if (cut && i + 1 < this.groups.length) {
        pass.end();
        head.push(encoder.finish());
        encoder = this.device.createCommandEncoder({ label: 'forward' });
        pass = encoder.beginComputePass();
        open = 0;
      }
    }
    for (const step of this.oneLogits) step.encode(pass, 1);
    pass.end();
    return { head, tail: encoder };
  }

  /** Copies the block's last row of h and records the last-token output steps. */
  private recordLast(encoder: GPUCommandEncoder, T: number): void {
    const { from, to, width } = this.lastH;
    encoder.copyBufferToBuffer(from, (T - 1) * width * f32, to, 0, width * f32);
    const pass = encoder.beginComputePass();
    for (const step of this.lastLogits) step.encode(pass, 1);
    pass.end();
  }

  /**
   * GPU time of every step of one forward block (last-token logits), from timestamp queries: each
   * step runs in its own compute pass with timestamps at its start and end, `repeat` times in a
   * row (the time is per run: repeats average out timestamp quantisation and pass overhead).
   * Needs the device's 'timestamp-query' feature; writes the KV cache and activations like
   * {@link run} (repeats of in-place steps change them: prefill again afterwards). For benchmarks.
   */
  async profile(ids: Uint32Array<ArrayBuffer>, start: number, pleRows: Float32Array<ArrayBuffer> | null, repeat = 1): Promise<StepTime[]> {
    const T = ids.length;
    const device = this.device;
    if (!device.features.has('timestamp-query')) throw new RullamaError('unsupported', 'this device has no timestamp-query feature');
    const steps = [...this.groups.flat(), ...this.lastLogits];
    const count = 2 * steps.length;
    const querySet = device.createQuerySet({ type: 'timestamp', count });
    const resolve = device.createBuffer({ size: 8 * count, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
    const read = device.createBuffer({ size: 8 * count, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    try {
      device.queue.writeBuffer(this.ids, 0, ids);
      if (this.needsPerLayerRows && pleRows) device.queue.writeBuffer(this.pleRows!, 0, pleRows);
      this.position.set(start);
      const encoder = device.createCommandEncoder({ label: 'forward profile' });
      const lastStep = this.groups.flat().length;
      steps.forEach((step, i) => {
        if (i === lastStep) {
          const { from, to, width } = this.lastH;
          encoder.copyBufferToBuffer(from, (T - 1) * width * f32, to, 0, width * f32);
        }
        const pass = encoder.beginComputePass({ label: step.label, timestampWrites: { querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 } });
        for (let r = 0; r < repeat; r++) step.encode(pass, i >= lastStep ? 1 : T);
        pass.end();
      });
      encoder.resolveQuerySet(querySet, 0, count, resolve, 0);
      encoder.copyBufferToBuffer(resolve, 0, read, 0, 8 * count);
      device.queue.submit([encoder.finish()]);
      await read.mapAsync(GPUMapMode.READ);
      const ns = new BigUint64Array(read.getMappedRange().slice(0));
      read.unmap();
      return steps.map((step, i) => ({ label: step.label, ms: Number(ns[2 * i + 1]! - ns[2 * i]!) / 1e6 / repeat }));
    } finally {
      querySet.destroy();
      resolve.destroy();
      read.destroy();
    }
  }

  /** Reads `rows` rows of logits back (after encode). */
  async readLogits(rows = 1): Promise<Float32Array> {
    return new Float32Array(await readBack(this.device, this.logits, rows * this.config.vocabSize * f32));
  }

  destroy(): void {
    this.prepared = null;
    this.unbindLora();
    for (const d of this.dispatches) d.destroy();
    for (const b of this.buffers) b.destroy();
    this.kv.destroy();
    this.position.destroy();
    this.linear.destroy();
    this.ops.destroy();
  }
}
