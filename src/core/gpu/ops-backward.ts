/**
 * Backward kernels of the non-linear forward ops (src/core/gpu/ops.ts), for LoRA training on one
 * block of T tokens at a time. Every op's weights are frozen (LoRA trains only its adapters), so a
 * kernel returns the gradients of its activations only:
 *
 *   rms_norm   dx of out = (RMS(x·xScale)·w + residual·residualScale)·outScale, over slices
 *              (whole vectors, per-head q/k, the unweighted v-norm), and d residual
 *   rope       the transpose rotation (angle −pos·ω_j), in place
 *   gelu_mul   d gate and d up of out = gelu_tanh(gate)·up (up may be a strided slice, the PLE gate)
 *   attention  dq, dk, dv of causal / sliding-window GQA over a training block whose keys and
 *              values sit in plain [T][kvHeads·headDim] buffers (positions 0..T−1)
 *
 * Scales need no kernel of their own: the layer output scale is the rms_norm's outScale (fused as
 * in the forward) or, standing alone, OpKernels.bindScale on the gradient (d x = s·d out); the
 * embedding's sqrt(d) has nothing trainable upstream.
 *
 * Usage is that of {@link OpKernels}: bind each use once, then encode(pass, tokens) inside the
 * caller's compute pass with the step's token count (a dynamic offset into a shared table of
 * counts; nothing is allocated or written per call). Gradients that two paths produce (a residual
 * and a branch, a KV donor and its sharers) are summed with the `accumulate` options, which add to
 * what the output buffer holds instead of overwriting it.
 *
 * Shaders: src/wgsl/{rms_norm,rope,gelu_mul,attention}.backward.wgsl, compiled once per variant
 * by the {@link PipelineCache}. Bindings are ordered inputs → outputs → params → counts (→ position).
 */
import attentionBackwardSource from '../../wgsl/attention.backward.wgsl';
import geluMulBackwardSource from '../../wgsl/gelu_mul.backward.wgsl';
import rmsNormBackwardSource from '../../wgsl/rms_norm.backward.wgsl';
import ropeBackwardSource from '../../wgsl/rope.backward.wgsl';
import { RullamaError } from '../errors.js';
import type { Dispatch } from './linear.js';
import { ROPE_ANGLE, ropeFrequencyTable, type RopeBinding } from './ops.js';
import { PipelineCache, type ShaderPart } from './pipelines.js';
import { CountTable, countLayoutEntry } from './token-counts.js';
import { wgslConst } from './weight-snippets.js';

export type { Dispatch } from './linear.js';

const RMS_NORM_BACKWARD: ShaderPart = { name: 'rms_norm.backward.wgsl', source: rmsNormBackwardSource };
const ROPE_BACKWARD: ShaderPart = { name: 'rope.backward.wgsl', source: ropeBackwardSource };
const GELU_MUL_BACKWARD: ShaderPart = { name: 'gelu_mul.backward.wgsl', source: geluMulBackwardSource };
const ATTENTION_BACKWARD: ShaderPart = { name: 'attention.backward.wgsl', source: attentionBackwardSource };

const ROPE_WG = wgslConst(ropeBackwardSource, 'WG_SIZE');
const GELU_WG = wgslConst(geluMulBackwardSource, 'WG_SIZE');
/** Largest head dim the attention backward takes (each thread keeps head_dim/64 values per accumulator). */
export const ATTENTION_BACKWARD_MAX_HEAD_DIM = wgslConst(attentionBackwardSource, 'MAX_HEAD_DIM');

/** Common fields: the most tokens a call may process, and a label for errors and debugging. */
interface BlockBinding {
  /** The most tokens any encode passes (each operand holds rows for that many). */
  maxTokens: number;
  label?: string;
}

export interface RmsNormBackwardBinding extends BlockBinding {
  /** Values per slice: width for a whole-vector norm, head_dim for per-head norms. */
  size: number;
  /** Consecutive slices per token (heads); default 1. */
  count?: number;
  /** The forward's input x (before xScale): token t's slices at x[xOffset + t·xStride ...]. */
  x: GPUBuffer;
  xOffset?: number;
  /** Default size·count. */
  xStride?: number;
  /** The forward's xScale (default 1). */
  xScale?: number;
  /** The forward's F32 weight [size] at weightOffset; omitted: unweighted (v-norm). */
  weight?: GPUBuffer;
  weightOffset?: number;
  /** The forward's outScale (default 1): the layer output scale when fused. */
  outScale?: number;
  /** dL/d out, laid out like the forward's out. */
  dy: GPUBuffer;
  dyOffset?: number;
  /** Default size·count. */
  dyStride?: number;
  /** dL/d x. May be `dy` itself (same offset and stride; then not accumulated). */
  dx: GPUBuffer;
  dxOffset?: number;
  /** Default size·count. */
  dxStride?: number;
  /** Adds to dx instead of overwriting it. */
  accumulate?: boolean;
  /**
   * The residual form: also write dL/d residual = dy·outScale·residualScale here. May be `dy`
   * itself (same offset and stride; then not accumulated): the gradient flowing along the
   * residual stream is scaled in place.
   */
  dResidual?: GPUBuffer;
  dResidualOffset?: number;
  /** Default size·count. */
  dResidualStride?: number;
  /** The forward's residualScale (default 1). */
  residualScale?: number;
  /** Adds to dResidual instead of overwriting it. */
  accumulateResidual?: boolean;
  eps: number;
}

/** As the forward's binding: `x` holds dL/d(rotated values) and is turned into dL/d(input) in place. */
export type RopeBackwardBinding = RopeBinding;

export interface GeluMulBackwardBinding extends BlockBinding {
  /** Values per token. */
  width: number;
  /** dL/d out of out = gelu_tanh(gate)·up. May be dGate or dUp itself (same offset and stride). */
  dOut: GPUBuffer;
  dOutOffset?: number;
  /** Default width. */
  dOutStride?: number;
  /** The forward's gate. May be dGate or dUp itself (same offset and stride). */
  gate: GPUBuffer;
  gateOffset?: number;
  gateStride?: number;
  /** The forward's up, possibly a slice of a wider row (offset, stride). May be dGate or dUp itself. */
  up: GPUBuffer;
  upOffset?: number;
  upStride?: number;
  /** dL/d gate. */
  dGate: GPUBuffer;
  dGateOffset?: number;
  dGateStride?: number;
  accumulateGate?: boolean;
  /** dL/d up; omitted: not computed (the PLE path, where up is a frozen per-layer input). */
  dUp?: GPUBuffer;
  dUpOffset?: number;
  dUpStride?: number;
  accumulateUp?: boolean;
}

export interface AttentionBackwardBinding extends BlockBinding {
  heads: number;
  kvHeads: number;
  /** At most {@link ATTENTION_BACKWARD_MAX_HEAD_DIM}. */
  headDim: number;
  /** Sliding window (key j visible from query i iff 0 ≤ i − j < window); 0 or omitted: causal only. */
  window?: number;
  /** Score multiplier; Gemma 4 uses 1 (the default). */
  scale?: number;
  /** The forward's queries (after norm and rope): token t's head h at q[qOffset + t·qStride + h·headDim]. */
  q: GPUBuffer;
  qOffset?: number;
  /** Default heads·headDim. */
  qStride?: number;
  /** Keys and values of the block's tokens 0..T−1, [T][kvHeads·headDim] with offsets and strides. */
  k: GPUBuffer;
  kOffset?: number;
  /** Default kvHeads·headDim. */
  kStride?: number;
  v: GPUBuffer;
  vOffset?: number;
  vStride?: number;
  /** dL/d o, laid out like q. */
  dOut: GPUBuffer;
  dOutOffset?: number;
  dOutStride?: number;
  /** dL/d q, laid out like q (a buffer of its own). */
  dq: GPUBuffer;
  dqOffset?: number;
  dqStride?: number;
  /** Adds to dq instead of overwriting it. */
  accumulateQ?: boolean;
  /** dL/d k and dL/d v, laid out like k (buffers of their own), summed over the heads of each kv head. */
  dk: GPUBuffer;
  dkOffset?: number;
  dkStride?: number;
  dv: GPUBuffer;
  dvOffset?: number;
  dvStride?: number;
  /** Adds to dk and dv instead of overwriting them (a KV-shared layer's gradient joining its donor's). */
  accumulateKv?: boolean;
}

type EntryKind = 'read' | 'write' | 'uniform' | 'count';

interface Layout {
  group: GPUBindGroupLayout;
  pipeline: GPUPipelineLayout;
}

interface Rows {
  offset: number;
  stride: number;
}

const bad = (label: string, message: string): never => {
  throw new RullamaError('bad-argument', `${label}: ${message}`);
};

function isCount(v: number): boolean {
  return Number.isSafeInteger(v) && v >= 1;
}

function isIndex(v: number): boolean {
  return Number.isSafeInteger(v) && v >= 0;
}

/** Pipelines, layouts and shared buffers of the backward ops on one device. */
export class OpBackwardKernels {
  readonly pipelines: PipelineCache;
  private readonly counts: CountTable;
  private readonly layouts = new Map<string, Layout>();
  /** Bound in place of an operand a variant does not read (a binding must hold some buffer). */
  private readonly placeholder: GPUBuffer;
  /** Bound in place of an output a variant does not write. */
  private readonly placeholderOut: GPUBuffer;
  private readonly ropeTables = new Map<string, GPUBuffer>();
  private readonly maxGroups: number;

  constructor(
    readonly device: GPUDevice,
    pipelines: PipelineCache = new PipelineCache(device),
  ) {
    this.pipelines = pipelines;
    this.counts = new CountTable(device, 'backward op token counts');
    this.placeholder = device.createBuffer({ label: 'backward op placeholder', size: 16, usage: GPUBufferUsage.STORAGE });
    this.placeholderOut = device.createBuffer({ label: 'backward op output placeholder', size: 16, usage: GPUBufferUsage.STORAGE });
    this.maxGroups = device.limits.maxComputeWorkgroupsPerDimension;
  }

  /** Frees the count tables, rope tables and placeholders. Bindings stop working. */
  destroy(): void {
    this.counts.destroy();
    this.placeholder.destroy();
    this.placeholderOut.destroy();
    for (const b of this.ropeTables.values()) b.destroy();
    this.ropeTables.clear();
  }

  // ---------------------------------------------------------------------------------------------
  // rms_norm

  /**
   * Binds dx = xScale·∂/∂u [RMS(u)·w]ᵀ(dy·outScale) (u = x·xScale) and, for the residual form,
   * dResidual = dy·outScale·residualScale, over slices of `size` values (`count` per token).
   */
  async bindRmsNormBackward(b: RmsNormBackwardBinding): Promise<Dispatch> {
    const count = b.count ?? 1;
    const label = b.label ?? `rms_norm backward ${count}x${b.size}`;
    const maxTokens = this.checkTokens(label, b.maxTokens);
    if (!isCount(b.size) || !isCount(count)) bad(label, `size ${b.size} and count ${count} must be positive integers`);
    const width = b.size * count;
    const x = this.operand(label, 'x', b.x, b.xOffset, b.xStride, width, maxTokens);
    const dy = this.operand(label, 'dy', b.dy, b.dyOffset, b.dyStride, width, maxTokens);
    const dx = this.operand(label, 'dx', b.dx, b.dxOffset, b.dxStride, width, maxTokens);
    const dres = b.dResidual ? this.operand(label, 'dResidual', b.dResidual, b.dResidualOffset, b.dResidualStride, width, maxTokens) : { offset: 0, stride: 0 };
    const weightOffset = b.weightOffset ?? 0;
    if (b.weight) {
      if (!isIndex(weightOffset)) bad(label, `weightOffset must be a non-negative integer, not ${weightOffset}`);
      this.checkStorage(label, 'weight', b.weight);
      if (b.weight.size < 4 * (weightOffset + b.size)) bad(label, `weight has ${b.weight.size} bytes, ${4 * (weightOffset + b.size)} are needed`);
    }
    for (const [name, out] of [['dx', b.dx], ['dResidual', b.dResidual]] as const) {
      if (out && (out === b.x || out === b.weight)) bad(label, `${name} must differ from x and the weight`);
    }
    if (b.dResidual === b.dx) bad(label, 'dx and dResidual must be different buffers');
    const dxIsDy = this.aliased(label, 'dx', b.dx, dx, b.dy, dy);
    const dresIsDy = b.dResidual ? this.aliased(label, 'dResidual', b.dResidual, dres, b.dy, dy) : false;
    if (dxIsDy && b.accumulate) bad(label, 'dx is dy itself: it cannot also accumulate');
    if (dresIsDy && b.accumulateResidual) bad(label, 'dResidual is dy itself: it cannot also accumulate');
    const floats = [b.eps, b.xScale ?? 1, b.outScale ?? 1, b.residualScale ?? 1];
    if (!floats.every(Number.isFinite) || b.eps < 0) bad(label, 'eps and the scales must be finite (eps ≥ 0)');
    if (maxTokens * count > this.maxGroups ** 2) bad(label, `${maxTokens * count} slices need more workgroups than one dispatch allows`);

    const layout = this.layout('rms_norm_backward', ['read', 'read', 'read', 'write', 'write', 'uniform', 'count']);
    const pipeline = await this.pipelines.get({
      name: 'rms_norm_backward',
      constants: {
        HAS_WEIGHT: b.weight ? 1 : 0,
        HAS_RESIDUAL: b.dResidual ? 1 : 0,
        DX_IS_DY: dxIsDy ? 1 : 0,
        DRES_IS_DY: dresIsDy ? 1 : 0,
        ACCUMULATE_DX: b.accumulate ? 1 : 0,
        ACCUMULATE_RES: b.accumulateResidual ? 1 : 0,
      },
      parts: [RMS_NORM_BACKWARD],
      layout: layout.pipeline,
    });
    const params = this.params(label, [b.size, count, x.offset, x.stride, weightOffset, dy.offset, dy.stride, dx.offset, dx.stride, dres.offset, dres.stride], floats);
    const ph = this.placeholder;
    const group = this.bindGroup(label, layout, [b.x, b.weight ?? ph, dxIsDy || dresIsDy ? ph : b.dy, b.dx, b.dResidual ?? this.placeholderOut, params], maxTokens);
    return this.flatDispatch(label, maxTokens, pipeline, group, params, count, 1);
  }

  // ---------------------------------------------------------------------------------------------
  // rope

  /** Binds the transpose of NeoX RoPE (rotation by −pos·ω_j), in place on `heads` heads per token at positions start + t. */
  async bindRopeBackward(b: RopeBackwardBinding): Promise<Dispatch> {
    const dims = b.dims ?? b.headDim;
    const label = b.label ?? `rope backward ${b.heads}x${b.headDim}/${dims}`;
    const maxTokens = this.checkTokens(label, b.maxTokens);
    if (!isCount(b.heads) || !isCount(b.headDim)) bad(label, `heads ${b.heads} and headDim ${b.headDim} must be positive integers`);
    if (!isCount(dims) || dims % 2 !== 0 || dims > b.headDim) bad(label, `dims must be even and at most headDim (${b.headDim}), not ${dims}`);
    if (!(b.base > 0) || !Number.isFinite(b.base)) bad(label, `base must be positive, not ${b.base}`);
    if (b.factors) {
      if (b.factors.length < dims / 2) bad(label, `factors has ${b.factors.length} values, ${dims / 2} are needed`);
      for (let j = 0; j < dims / 2; j++) if (!(b.factors[j]! > 0) || !Number.isFinite(b.factors[j]!)) bad(label, `factor ${j} (${b.factors[j]}) must be positive and finite`);
    }
    const x = this.operand(label, 'x', b.x, b.xOffset, b.xStride, b.heads * b.headDim, maxTokens);
    if ((b.position.usage & GPUBufferUsage.UNIFORM) === 0 || b.position.size < 16) bad(label, 'position must be a UNIFORM buffer of at least 16 bytes (PositionUniform)');
    const half = dims / 2;

    const layout = this.layout('rope_backward', ['read', 'write', 'uniform', 'count', 'uniform']);
    const pipeline = await this.pipelines.get({ name: 'rope_backward', parts: [ROPE_ANGLE, ROPE_BACKWARD], layout: layout.pipeline });
    const table = this.ropeTable(dims, b.base, b.factors ? b.factors.subarray(0, half) : null);
    const params = this.params(label, [b.heads, b.headDim, half, x.offset, x.stride], []);
    const group = this.bindGroup(label, layout, [table, b.x, params], maxTokens, b.position);
    return this.flatDispatch(label, maxTokens, pipeline, group, params, half, ROPE_WG);
  }

  // ---------------------------------------------------------------------------------------------
  // gelu_mul

  /** Binds dGate = dOut·up·gelu_tanh'(gate) and (with dUp) dUp = dOut·gelu_tanh(gate). */
  async bindGeluMulBackward(b: GeluMulBackwardBinding): Promise<Dispatch> {
    const label = b.label ?? `gelu_mul backward ${b.width}`;
    const maxTokens = this.checkTokens(label, b.maxTokens);
    if (!isCount(b.width)) bad(label, `width must be a positive integer, not ${b.width}`);
    const dGate = this.operand(label, 'dGate', b.dGate, b.dGateOffset, b.dGateStride, b.width, maxTokens);
    const dUp = b.dUp ? this.operand(label, 'dUp', b.dUp, b.dUpOffset, b.dUpStride, b.width, maxTokens) : { offset: 0, stride: 0 };
    if (b.dUp === b.dGate) bad(label, 'dGate and dUp must be different buffers');
    // Where each input is read from: 0 its own binding, 1 dGate, 2 dUp (same rows).
    const source = (name: string, buffer: GPUBuffer, offset: number | undefined, stride: number | undefined): { rows: Rows; src: number } => {
      const rows = this.operand(label, name, buffer, offset, stride, b.width, maxTokens);
      if (this.aliased(label, name, buffer, rows, b.dGate, dGate)) {
        if (b.accumulateGate) bad(label, `${name} is dGate itself: dGate cannot also accumulate`);
        return { rows, src: 1 };
      }
      if (b.dUp && this.aliased(label, name, buffer, rows, b.dUp, dUp)) {
        if (b.accumulateUp) bad(label, `${name} is dUp itself: dUp cannot also accumulate`);
        return { rows, src: 2 };
      }
      return { rows, src: 0 };
    };
    const dOut = source('dOut', b.dOut, b.dOutOffset, b.dOutStride);
    const gate = source('gate', b.gate, b.gateOffset, b.gateStride);
    const up = source('up', b.up, b.upOffset, b.upStride);
    if ((maxTokens * b.width) / GELU_WG > this.maxGroups ** 2) bad(label, 'too many elements for one dispatch');

    const layout = this.layout('gelu_mul_backward', ['read', 'read', 'read', 'write', 'write', 'uniform', 'count']);
    const pipeline = await this.pipelines.get({
      name: 'gelu_mul_backward',
      constants: {
        DOUT_SRC: dOut.src,
        GATE_SRC: gate.src,
        UP_SRC: up.src,
        HAS_DUP: b.dUp ? 1 : 0,
        ACCUMULATE_GATE: b.accumulateGate ? 1 : 0,
        ACCUMULATE_UP: b.accumulateUp ? 1 : 0,
      },
      parts: [GELU_MUL_BACKWARD],
      layout: layout.pipeline,
    });
    const params = this.params(
      label,
      [b.width, dOut.rows.offset, dOut.rows.stride, gate.rows.offset, gate.rows.stride, up.rows.offset, up.rows.stride, dGate.offset, dGate.stride, dUp.offset, dUp.stride],
      [],
    );
    const ph = this.placeholder;
    const group = this.bindGroup(
      label, layout,
      [dOut.src ? ph : b.dOut, gate.src ? ph : b.gate, up.src ? ph : b.up, b.dGate, b.dUp ?? this.placeholderOut, params],
      maxTokens,
    );
    return this.flatDispatch(label, maxTokens, pipeline, group, params, b.width, GELU_WG);
  }

  // ---------------------------------------------------------------------------------------------
  // attention

  /**
   * Binds dq, dk, dv of o[i, h] = Σ_j softmax_j(scale·q[i, h]·k_j)·v_j over the visible keys of
   * a training block (see {@link AttentionBackwardBinding}). Records two dispatches: one workgroup
   * per query row (the softmax statistics, then dq), then one per key and kv head (dk, dv).
   */
  async bindAttentionBackward(b: AttentionBackwardBinding): Promise<Dispatch> {
    const window = b.window ?? 0;
    const label = b.label ?? `attention backward ${b.heads}/${b.kvHeads}x${b.headDim}${window ? ` window ${window}` : ''}`;
    const maxTokens = this.checkTokens(label, b.maxTokens);
    const { heads, kvHeads, headDim } = b;
    if (!isCount(heads) || !isCount(kvHeads) || heads % kvHeads !== 0) bad(label, `heads ${heads} must be a positive multiple of kvHeads ${kvHeads}`);
    if (!isCount(headDim) || headDim > ATTENTION_BACKWARD_MAX_HEAD_DIM) bad(label, `headDim must be a positive integer up to ${ATTENTION_BACKWARD_MAX_HEAD_DIM}, not ${headDim}`);
    if (!isIndex(window)) bad(label, `window must be a non-negative integer, not ${window}`);
    const scale = b.scale ?? 1;
    if (!Number.isFinite(scale)) bad(label, `scale must be finite, not ${scale}`);
    if (maxTokens > this.maxGroups || heads > this.maxGroups) bad(label, `${maxTokens} tokens × ${heads} heads need more workgroups than one dispatch allows`);
    const qw = heads * headDim;
    const kvw = kvHeads * headDim;
    const q = this.operand(label, 'q', b.q, b.qOffset, b.qStride, qw, maxTokens);
    const k = this.operand(label, 'k', b.k, b.kOffset, b.kStride, kvw, maxTokens);
    const v = this.operand(label, 'v', b.v, b.vOffset, b.vStride, kvw, maxTokens);
    const dOut = this.operand(label, 'dOut', b.dOut, b.dOutOffset, b.dOutStride, qw, maxTokens);
    const dq = this.operand(label, 'dq', b.dq, b.dqOffset, b.dqStride, qw, maxTokens);
    const dk = this.operand(label, 'dk', b.dk, b.dkOffset, b.dkStride, kvw, maxTokens);
    const dv = this.operand(label, 'dv', b.dv, b.dvOffset, b.dvStride, kvw, maxTokens);
    const inputs = [b.q, b.k, b.v, b.dOut];
    for (const [name, out] of [['dq', b.dq], ['dk', b.dk], ['dv', b.dv]] as const) {
      if (inputs.includes(out)) bad(label, `${name} must differ from q, k, v and dOut`);
    }
    if (b.dq === b.dk || b.dq === b.dv || b.dk === b.dv) bad(label, 'dq, dk and dv must be different buffers');

    const layout = this.layout('attention_backward', ['read', 'read', 'read', 'read', 'write', 'write', 'write', 'write', 'uniform', 'count']);
    const constants = { ACCUMULATE_Q: b.accumulateQ ? 1 : 0, ACCUMULATE_KV: b.accumulateKv ? 1 : 0 };
    const [rows, keys] = await Promise.all([
      this.pipelines.get({ name: 'attention_backward_rows', constants, parts: [ATTENTION_BACKWARD], layout: layout.pipeline, entryPoint: 'rows' }),
      this.pipelines.get({ name: 'attention_backward_keys', constants, parts: [ATTENTION_BACKWARD], layout: layout.pipeline, entryPoint: 'keys' }),
    ]);
    // (log-sum-exp, c, A, 0) per query row, written by `rows` and read by `keys`.
    const stats = this.device.createBuffer({ label: `${label} row stats`, size: 16 * maxTokens * heads, usage: GPUBufferUsage.STORAGE });
    const params = this.params(
      label,
      [heads, heads / kvHeads, headDim, window, q.offset, q.stride, k.offset, k.stride, v.offset, v.stride, dOut.offset, dOut.stride, dq.offset, dq.stride, dk.offset, dk.stride, dv.offset, dv.stride],
      [scale],
    );
    const group = this.bindGroup(label, layout, [b.q, b.k, b.v, b.dOut, b.dq, b.dk, b.dv, stats, params], maxTokens);
    return this.dispatch(
      label,
      maxTokens,
      (pass, tokens, offsets) => {
        pass.setBindGroup(0, group, offsets, 0, 1);
        pass.setPipeline(rows);
        pass.dispatchWorkgroups(tokens, heads);
        pass.setPipeline(keys);
        pass.dispatchWorkgroups(tokens, kvHeads);
      },
      () => {
        params.destroy();
        stats.destroy();
      },
    );
  }

  // ---------------------------------------------------------------------------------------------
  // helpers (the conventions of ops.ts)

  /** A Dispatch of ceil(tokens·perToken / perGroup) workgroups, x-fastest over a 2-D grid. */
  private flatDispatch(label: string, maxTokens: number, pipeline: GPUComputePipeline, group: GPUBindGroup, params: GPUBuffer, perToken: number, perGroup: number): Dispatch {
    if (maxTokens * perToken > 2 ** 32 - 1) bad(label, 'more than 2^32 elements per call');
    return this.dispatch(
      label,
      maxTokens,
      (pass, tokens, offsets) => {
        const n = Math.ceil((tokens * perToken) / perGroup);
        const gx = Math.min(n, this.maxGroups);
        pass.setPipeline(pipeline);
        pass.setBindGroup(0, group, offsets, 0, 1);
        pass.dispatchWorkgroups(gx, Math.ceil(n / gx));
      },
      () => params.destroy(),
    );
  }

  /** A Dispatch whose encode refuses token counts outside 0..maxTokens and records nothing for 0. */
  private dispatch(label: string, maxTokens: number, record: (pass: GPUComputePassEncoder, tokens: number, offsets: Uint32Array) => void, destroy: () => void): Dispatch {
    const offsets = new Uint32Array(1);
    return {
      label,
      maxTokens,
      encode: (pass: GPUComputePassEncoder, tokens = maxTokens): void => {
        if (!Number.isSafeInteger(tokens) || tokens < 0 || tokens > maxTokens) bad(label, `token count ${tokens} is outside 0..${maxTokens}`);
        if (tokens === 0) return;
        offsets[0] = this.counts.offset(tokens);
        record(pass, tokens, offsets);
      },
      destroy,
    };
  }

  /** Entries 0..n-1 from `buffers`, then the count table, then the position uniform if any. */
  private bindGroup(label: string, layout: Layout, buffers: readonly GPUBuffer[], maxCount: number, position?: GPUBuffer): GPUBindGroup {
    const entries: GPUBindGroupEntry[] = buffers.map((buffer, binding) => ({ binding, resource: { buffer } }));
    entries.push(this.counts.entry(entries.length, maxCount));
    if (position) entries.push({ binding: entries.length, resource: { buffer: position, offset: 0, size: 16 } });
    return this.device.createBindGroup({ label, layout: layout.group, entries });
  }

  private layout(name: string, kinds: readonly EntryKind[]): Layout {
    let layout = this.layouts.get(name);
    if (!layout) {
      const entries = kinds.map((kind, binding): GPUBindGroupLayoutEntry => {
        if (kind === 'count') return countLayoutEntry(binding);
        const type: GPUBufferBindingType = kind === 'read' ? 'read-only-storage' : kind === 'write' ? 'storage' : 'uniform';
        return { binding, visibility: GPUShaderStage.COMPUTE, buffer: { type } };
      });
      const group = this.device.createBindGroupLayout({ label: name, entries });
      layout = { group, pipeline: this.device.createPipelineLayout({ label: name, bindGroupLayouts: [group] }) };
      this.layouts.set(name, layout);
    }
    return layout;
  }

  /** A uniform buffer of u32 words followed by f32 words (the order of every Params struct here). */
  private params(label: string, u32s: readonly number[], f32s: readonly number[]): GPUBuffer {
    const bytes = Math.max(16, Math.ceil(((u32s.length + f32s.length) * 4) / 16) * 16);
    const data = new ArrayBuffer(bytes);
    new Uint32Array(data, 0, u32s.length).set(u32s);
    new Float32Array(data, 4 * u32s.length, f32s.length).set(f32s);
    const buffer = this.device.createBuffer({ label: `${label} params`, size: bytes, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    this.device.queue.writeBuffer(buffer, 0, data);
    return buffer;
  }

  private ropeTable(dims: number, base: number, factors: Float32Array | null): GPUBuffer {
    const key = `${dims}|${base}|${factors ? Array.from(factors).join(',') : ''}`;
    let buffer = this.ropeTables.get(key);
    if (!buffer) {
      const table = ropeFrequencyTable(dims, base, factors);
      buffer = this.device.createBuffer({ label: `rope frequencies ${dims}/${base}`, size: table.byteLength, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
      this.device.queue.writeBuffer(buffer, 0, table);
      this.ropeTables.set(key, buffer);
    }
    return buffer;
  }

  private checkTokens(label: string, maxTokens: number): number {
    if (!isCount(maxTokens)) bad(label, `maxTokens must be a positive integer, not ${maxTokens}`);
    return maxTokens;
  }

  private checkStorage(label: string, name: string, buffer: GPUBuffer): void {
    if ((buffer.usage & GPUBufferUsage.STORAGE) === 0) bad(label, `the ${name} buffer lacks STORAGE usage`);
  }

  /** Validates an f32 operand of `maxTokens` rows of `width` values; returns its offset and stride. */
  private operand(label: string, name: string, buffer: GPUBuffer, offsetArg: number | undefined, strideArg: number | undefined, width: number, maxTokens: number): Rows {
    const offset = offsetArg ?? 0;
    const stride = strideArg ?? width;
    if (!isIndex(offset)) bad(label, `${name} offset must be a non-negative integer, not ${offset}`);
    if (!Number.isSafeInteger(stride) || stride < width) bad(label, `${name} stride ${stride} must be at least ${width}`);
    this.checkStorage(label, name, buffer);
    const need = 4 * (offset + (maxTokens - 1) * stride + width);
    if (buffer.size < need) bad(label, `${name} has ${buffer.size} bytes, ${need} are needed`);
    if (need / 4 > 2 ** 32 - 1) bad(label, `${name} spans more than 2^32 values`);
    return { offset, stride };
  }

  /** Whether `buffer` is `other` itself; then it must be the very same rows (same offset and stride). */
  private aliased(label: string, name: string, buffer: GPUBuffer, g: Rows, other: GPUBuffer, o: Rows): boolean {
    if (buffer !== other) return false;
    if (g.offset !== o.offset || g.stride !== o.stride) bad(label, `${name} shares a buffer at other rows; in place needs the same offset and stride`);
    return true;
  }
}
