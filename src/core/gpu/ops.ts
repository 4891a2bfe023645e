/**
 * The non-matmul kernels of the Gemma 4 forward pass, each for a block of T tokens (T = 1 when
 * decoding, up to a binding's maxTokens when prefilling), over f32 activations stored row-major
 * [T][stride] with a per-operand element offset and stride:
 *
 *   embed       gather token rows of a (quantised) embedding table, one dispatch per row tile, × scale
 *   rms_norm    x·(mean(x²)+eps)^(-1/2)·w over slices (whole vectors, per-head q/k, unweighted v),
 *               optionally fused into out = residual + RMS(x)·w, in place where safe, and
 *               followed in the same dispatch by a second norm of the result (`next`)
 *   ple_combine (RMS(proj·s, w) + e·sqrt(P))·2^(-1/2) per layer slice (the same kernel)
 *   rope        NeoX rotate-half, in place, angles pos·base^(-2j/dims)/factor[j]
 *   kv_store    append T tokens' K and V to a layer's (possibly ring) cache
 *   qk_norm_rope  a layer's q-norm + rope in place and, with its own KV, k-norm + rope, v-norm and
 *               the KV store, in one dispatch
 *   attention   causal / sliding-window GQA over the cache, scale 1, online softmax; key splits
 *               spread short blocks over many workgroups; one token (decode) takes key splits by
 *               head group (every head of a kv head in one workgroup) and a combine, or a
 *               one-pass kernel (see AttentionBinding.decodeKernel)
 *   add, mul, gelu_mul, scale (by a GPU scalar), softcap — elementwise
 *
 * Usage is that of {@link LinearKernels}: bind each use once (this builds its uniform and bind
 * group and fetches the shared pipeline), then every step {@link Dispatch.encode} inside the
 * caller's compute pass with the step's token count, selected by a dynamic offset into a shared
 * table of counts ({@link CountTable}): nothing is allocated or written per call.
 *
 * Positions: rope, kv_store and attention place the block at positions start..start+T-1, where
 * `start` is the first u32 of a small uniform buffer (see {@link PositionUniform}) that the engine
 * rewrites with queue.writeBuffer before submitting each step. All work recorded in one submit
 * therefore sees one `start`: submit each block (prefill chunk, decode step) separately, or use
 * one position buffer per block.
 *
 * Shaders: src/wgsl/{embed,rms_norm,rope,kv_store,qk_norm_rope,attention,elementwise}.forward.wgsl (embed also
 * takes weights/common.wgsl and one weights/<dtype>.wgsl), compiled once per variant by the
 * {@link PipelineCache}. Bindings are ordered inputs → outputs → params → counts (→ position).
 */
import attentionSource from '../../wgsl/attention.forward.wgsl';
import elementwiseSource from '../../wgsl/elementwise.forward.wgsl';
import embedSource from '../../wgsl/embed.forward.wgsl';
import kvStoreSource from '../../wgsl/kv_store.forward.wgsl';
import rmsNormSource from '../../wgsl/rms_norm.forward.wgsl';
import ropeSource from '../../wgsl/rope.forward.wgsl';
import ropeAngleSource from '../../wgsl/rope_angle.wgsl';
import qkNormRopeSource from '../../wgsl/qk_norm_rope.forward.wgsl';
import { RullamaError } from '../errors.js';
import { GGML_TYPES, type GGMLType, typeName } from '../gguf/types.js';
import { isSoftwareDevice } from './device.js';
import type { Dispatch } from './linear.js';
import { PipelineCache, type ShaderPart } from './pipelines.js';
import { CountTable, countLayoutEntry } from './token-counts.js';
import { WEIGHT_SNIPPETS, WEIGHTS_COMMON, wgslConst } from './weight-snippets.js';

export type { Dispatch } from './linear.js';

/** Embedding dtypes {@link OpKernels.bindEmbed} handles. */
export const EMBED_TYPES: readonly GGMLType[] = [...WEIGHT_SNIPPETS.keys()];

const EMBED: ShaderPart = { name: 'embed.forward.wgsl', source: embedSource };
const RMS_NORM: ShaderPart = { name: 'rms_norm.forward.wgsl', source: rmsNormSource };
const ROPE: ShaderPart = { name: 'rope.forward.wgsl', source: ropeSource };
/** The RoPE angle functions every rotating kernel composes before its own file. */
export const ROPE_ANGLE: ShaderPart = { name: 'rope_angle.wgsl', source: ropeAngleSource };
const KV_STORE: ShaderPart = { name: 'kv_store.forward.wgsl', source: kvStoreSource };
const QK_NORM_ROPE: ShaderPart = { name: 'qk_norm_rope.forward.wgsl', source: qkNormRopeSource };
/** Largest head dim the fused q/k norm + RoPE kernel takes (one head in shared memory). */
export const QK_NORM_ROPE_MAX_HEAD_DIM = wgslConst(qkNormRopeSource, 'MAX_HEAD_DIM');
const ATTENTION: ShaderPart = { name: 'attention.forward.wgsl', source: attentionSource };
const ELEMENTWISE: ShaderPart = { name: 'elementwise.forward.wgsl', source: elementwiseSource };

const EMBED_WG = wgslConst(embedSource, 'WG_SIZE');
const ROPE_WG = wgslConst(ropeSource, 'WG_SIZE');
const KV_STORE_WG = wgslConst(kvStoreSource, 'WG_SIZE');
const ELEMENTWISE_WG = wgslConst(elementwiseSource, 'WG_SIZE');
/** Query rows ((token, head) pairs of one kv head) per attention workgroup. */
export const ATTENTION_ROWS = wgslConst(attentionSource, 'ROWS');
/** Keys per attention tile. */
export const ATTENTION_KEYS = wgslConst(attentionSource, 'KEYS');
/** The most parts the keys of one row block are split into. */
export const ATTENTION_MAX_SPLITS = wgslConst(attentionSource, 'MAX_SPLITS');
/** Largest head dim the attention kernel takes (each thread keeps head_dim/32 vec4 of output in registers). */
export const ATTENTION_MAX_HEAD_DIM = wgslConst(attentionSource, 'MAX_HEAD_DIM');
/** The most keys a query may see for the one-pass decode kernel. */
export const ATTENTION_DECODE_MAX_KEYS = wgslConst(attentionSource, 'DEC_MAX_KEYS');
/** Key splits (workgroups per kv head) of the head-group decode kernel. */
const ATTENTION_DECODE_SPLITS = wgslConst(attentionSource, 'DS_SPLITS');
/** The most vec4s of a head one workgroup of the decode kernel computes. */
const ATTENTION_DECODE_SLICE = wgslConst(attentionSource, 'DEC_SLICE_MAX');
/** Attention splits the keys until about this many workgroups run (row blocks × kv heads × splits). */
const ATTENTION_TARGET_WORKGROUPS = 512;

const ELEMENTWISE_OPS = { add: 0, mul: 1, gelu_mul: 2, scale: 3, softcap: 4 } as const;
type ElementwiseOp = keyof typeof ELEMENTWISE_OPS;

/** The largest position rope can place exactly (positions are split into two 12-bit halves). */
export const MAX_POSITION = 2 ** 24 - 1;

/**
 * The uniform that holds `start`, the position of the first token of the block being computed,
 * for every rope, kv_store and attention binding of a model. {@link set} writes it with
 * queue.writeBuffer; the value applies to every dispatch submitted after the call (and before the
 * next set), so a step is: set(start), encode the block's passes, submit.
 */
export class PositionUniform {
  readonly buffer: GPUBuffer;
  private readonly words = new Uint32Array(4);

  constructor(
    private readonly device: GPUDevice,
    label = 'position',
  ) {
    this.buffer = device.createBuffer({ label, size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  }

  set(start: number): void {
    if (!Number.isSafeInteger(start) || start < 0 || start > MAX_POSITION) {
      throw new RullamaError('bad-argument', `position ${start} is outside 0..${MAX_POSITION}`);
    }
    this.words[0] = start;
    this.device.queue.writeBuffer(this.buffer, 0, this.words);
  }

  destroy(): void {
    this.buffer.destroy();
  }
}

/** Common fields: the most tokens a call may process, and a label for errors and debugging. */
interface BlockBinding {
  /** The most tokens any encode passes (each operand holds rows for that many). */
  maxTokens: number;
  label?: string;
}

/** One row tile of an embedding table: rows [firstRow, firstRow + rows) in GGUF bytes, row firstRow at byte 0. */
export interface EmbedTile {
  weight: GPUBuffer;
  firstRow: number;
  rows: number;
}

export interface EmbedBinding extends BlockBinding {
  type: GGMLType;
  /** Values per row (d_model); a multiple of 8 and of the dtype's block size. */
  cols: number;
  /** The table's row tiles (one dispatch each); together they should cover every id that occurs. */
  tiles: readonly EmbedTile[];
  /** u32 token ids: token t's id at ids[idsOffset + t]. */
  ids: GPUBuffer;
  idsOffset?: number;
  /** f32 [T][outStride]; token t's row at out[outOffset + t·outStride]. */
  out: GPUBuffer;
  outOffset?: number;
  /** Default cols. */
  outStride?: number;
  /** Multiplies every value (Gemma: sqrt(d_model)); default 1. */
  scale?: number;
}

export interface RmsNormBinding extends BlockBinding {
  /** Values per slice: width for a whole-vector norm, head_dim for per-head norms. */
  size: number;
  /** Consecutive slices per token (heads); default 1. */
  count?: number;
  /** f32 input, token t's slices at x[xOffset + t·xStride ...]. May be `out` itself (same offset and stride). */
  x: GPUBuffer;
  xOffset?: number;
  /** Default size·count. */
  xStride?: number;
  /** Multiplies x before the norm (default 1). */
  xScale?: number;
  /** F32 norm weight [size] at weightOffset; omitted: unweighted (v-norm). */
  weight?: GPUBuffer;
  weightOffset?: number;
  /** Added after the norm: out = residual·residualScale + RMS(x)·w. May be `out` itself (same offset and stride). */
  residual?: GPUBuffer;
  residualOffset?: number;
  /** Default size·count. */
  residualStride?: number;
  /** Default 1. */
  residualScale?: number;
  /** Multiplies the result (default 1). */
  outScale?: number;
  out: GPUBuffer;
  outOffset?: number;
  /** Default size·count. */
  outStride?: number;
  eps: number;
  /**
   * A second norm of the result, fused: out2 = RMS(out)·w2 per slice, computed from the values
   * just written to `out` (bitwise what a separate rms_norm over `out` gives). For the end of a
   * Gemma 4 block, h = (h + RMS(a)·w)·s, followed by the next block's x = RMS(h)·w'.
   */
  next?: {
    weight: GPUBuffer;
    weightOffset?: number;
    /** f32, a buffer other than x, residual and out. */
    out: GPUBuffer;
    outOffset?: number;
    /** Default size·count. */
    outStride?: number;
  };
}

export interface PleCombineBinding extends BlockBinding {
  /** per_layer_model_proj · h: f32 [T][layers·size] (the unscaled matmul output). */
  proj: GPUBuffer;
  projOffset?: number;
  projStride?: number;
  /** Multiplies proj before the norm: 1/sqrt(d_model) for Gemma 4. */
  projScale: number;
  /** The per-layer token embedding rows: f32 [T][layers·size]. */
  tokenRows: GPUBuffer;
  tokenRowsOffset?: number;
  tokenRowsStride?: number;
  /** per_layer_proj_norm (F32 [size]), shared by all layers. */
  weight: GPUBuffer;
  /** Layers L. */
  layers: number;
  /** Per-layer width P. */
  size: number;
  /** f32 [T][layers·size]; may be proj or tokenRows itself (same offset and stride). */
  out: GPUBuffer;
  outOffset?: number;
  outStride?: number;
  eps: number;
}

export interface RopeBinding extends BlockBinding {
  /** f32 heads rotated in place: token t's head h at x[xOffset + t·xStride + h·headDim]. */
  x: GPUBuffer;
  xOffset?: number;
  /** Default heads·headDim. */
  xStride?: number;
  heads: number;
  headDim: number;
  /** Rotated values per head (pairs (j, j + dims/2)); even, at most headDim; default headDim. */
  dims?: number;
  /** θ: 1e4 for sliding, 1e6 for global Gemma 4 layers. */
  base: number;
  /**
   * Divisors of the pair frequencies (rope_freqs.weight: dims/2 values, positive). Passed as CPU
   * values because the per-pair frequencies are built once, in float64, when binding: f32 angles
   * at positions of 10^5 would lose all accuracy.
   */
  factors?: Float32Array;
  /** The uniform holding the block's first position ({@link PositionUniform}). */
  position: GPUBuffer;
}

export interface KvStoreBinding extends BlockBinding {
  /** f32 [T][kStride]: token t's kv_heads·head_dim key values at k[kOffset + t·kStride]. */
  k: GPUBuffer;
  kOffset?: number;
  kStride?: number;
  v: GPUBuffer;
  vOffset?: number;
  vStride?: number;
  /** f32 [capacity][width] each; position p goes to slot p % capacity. */
  kCache: GPUBuffer;
  vCache: GPUBuffer;
  /** Values per token: kv_heads·head_dim. */
  width: number;
  /** Cache slots; at least maxTokens. */
  capacity: number;
  position: GPUBuffer;
}

/**
 * A layer's per-head work before attention in one dispatch: q = rope(RMS(q)·qNorm) in place and,
 * with `kv`, the cache slots of positions start + t get rope(RMS(k)·kNorm) and RMS(v) (unweighted):
 * bindRmsNorm + bindRope for q, and for k/v two norms, a rope and bindKvStore, fused.
 */
export interface QkNormRopeBinding extends BlockBinding {
  /** f32 queries, rotated in place: token t's head h at q[qOffset + t·qStride + h·headDim]. */
  q: GPUBuffer;
  qOffset?: number;
  /** Default heads·headDim. */
  qStride?: number;
  heads: number;
  /** At most {@link QK_NORM_ROPE_MAX_HEAD_DIM}. */
  headDim: number;
  /** Rotated values per head (even, at most headDim; default headDim). */
  dims?: number;
  base: number;
  /** As {@link RopeBinding.factors}. */
  factors?: Float32Array;
  /** F32 [headDim] q_norm weight at qNormOffset. */
  qNorm: GPUBuffer;
  qNormOffset?: number;
  eps: number;
  position: GPUBuffer;
  /** The k and v heads of a layer that computes its own KV (omitted on layers that reuse another's cache). */
  kv?: {
    k: GPUBuffer;
    kOffset?: number;
    kStride?: number;
    v: GPUBuffer;
    vOffset?: number;
    vStride?: number;
    kvHeads: number;
    /** F32 [headDim] k_norm weight. */
    kNorm: GPUBuffer;
    kNormOffset?: number;
    /** f32 [capacity][kvHeads·headDim] each; position p goes to slot p % capacity. */
    kCache: GPUBuffer;
    vCache: GPUBuffer;
    /** At least maxTokens. */
    capacity: number;
  };
}

export interface AttentionBinding extends BlockBinding {
  /** f32 queries: token t's head h at q[qOffset + t·qStride + h·headDim] (offset and stride multiples of 4). */
  q: GPUBuffer;
  qOffset?: number;
  /** Default heads·headDim. */
  qStride?: number;
  /** f32 [capacity][kvHeads·headDim] caches written by kv_store (possibly another layer's). */
  kCache: GPUBuffer;
  vCache: GPUBuffer;
  /** f32 outputs laid out like q (a distinct buffer; offset and stride multiples of 4). */
  out: GPUBuffer;
  outOffset?: number;
  /** Default heads·headDim. */
  outStride?: number;
  heads: number;
  kvHeads: number;
  /** A multiple of 32, at most {@link ATTENTION_MAX_HEAD_DIM}. */
  headDim: number;
  /**
   * Cache slots. Sliding: at least window + maxTokens − 1 (a ring), unless maxPosition < capacity
   * (the cache never wraps). Global: more than every position used.
   */
  capacity: number;
  /** The largest position any query will have (context − 1), when known: lets a small cache skip the ring rule, and is checked against a global cache. */
  maxPosition?: number;
  /** Sliding window (key visible iff 0 ≤ q_pos − k_pos < window); 0 or omitted: global (causal only). */
  window?: number;
  /** Score multiplier; Gemma 4 uses 1 (the default). */
  scale?: number;
  position: GPUBuffer;
  /** Caps the key splits (default {@link ATTENTION_MAX_SPLITS}); 1 disables them. */
  maxSplits?: number;
  /**
   * The kernel of a one-token call:
   * - 'head-groups': `decode_split` + `decode_combine`, each workgroup a key split of all the heads
   *   of one kv head (for groups of heads that divide 32);
   * - 'one-pass': `decode`, no combine, when every query sees at most
   *   {@link ATTENTION_DECODE_MAX_KEYS} keys (a sliding window, or a cache that small);
   * - 'tiled': the block kernel with key splits and `combine`.
   * A choice that does not apply falls back to the next. Default: 'head-groups' on a GPU, 'tiled'
   * on a software device (where long per-workgroup loops between barriers cost most).
   */
  decodeKernel?: 'head-groups' | 'one-pass' | 'tiled';
}

/** Token rows of one operand: element (t, i) at buffer[offset + t·stride + i]. */
interface Operand {
  buffer: GPUBuffer;
  offset?: number;
  stride?: number;
}

export interface ElementwiseBinding extends BlockBinding {
  /** Values per token. */
  width: number;
  out: GPUBuffer;
  outOffset?: number;
  /** Default width. */
  outStride?: number;
}

export interface BinaryBinding extends ElementwiseBinding {
  /** f32 [T][aStride]; may be `out` itself (same offset and stride). */
  a: GPUBuffer;
  aOffset?: number;
  aStride?: number;
  /** f32 [T][bStride]; may be `out` itself (same offset and stride). */
  b: GPUBuffer;
  bOffset?: number;
  bStride?: number;
}

export interface GeluMulBinding extends ElementwiseBinding {
  /** The gate: out = gelu_tanh(gate)·up. May be `out` itself (same offset and stride). */
  gate: GPUBuffer;
  gateOffset?: number;
  gateStride?: number;
  /** May be `out` itself (same offset and stride), or a slice of a wider row (offset, stride). */
  up: GPUBuffer;
  upOffset?: number;
  upStride?: number;
}

export interface ScaleBinding extends ElementwiseBinding {
  /** May be `out` itself (same offset and stride). */
  x: GPUBuffer;
  xOffset?: number;
  xStride?: number;
  /** F32 buffer holding the factor at factor[factorIndex] (layer_output_scale.weight). */
  factor: GPUBuffer;
  factorIndex?: number;
}

export interface SoftcapBinding extends ElementwiseBinding {
  /** May be `out` itself (same offset and stride). */
  x: GPUBuffer;
  xOffset?: number;
  xStride?: number;
  /** out = cap·tanh(x/cap); 30 for Gemma 4 logits. */
  cap: number;
}

type EntryKind = 'read' | 'write' | 'uniform' | 'count';

interface Layout {
  group: GPUBindGroupLayout;
  pipeline: GPUPipelineLayout;
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

/** The largest 12-significant-bit part of v (rounded to nearest). */
function top12Bits(v: number): number {
  if (v === 0 || !Number.isFinite(v)) return 0;
  let e = Math.floor(Math.log2(Math.abs(v)));
  while (2 ** e > Math.abs(v)) e--;
  while (2 ** (e + 1) <= Math.abs(v)) e++;
  const unit = 2 ** (e - 11);
  return Math.round(v / unit) * unit;
}

/**
 * The per-pair frequency table rope reads: for pair j, ω_j/(2π) = base^(-2j/dims)/factor[j]/(2π)
 * as (a, b, c, 0) with a + b + c = ω_j/(2π) to ~2^-48 and a, b of at most 12 significant bits.
 */
export function ropeFrequencyTable(dims: number, base: number, factors: Float32Array | null): Float32Array<ArrayBuffer> {
  const half = dims / 2;
  const table = new Float32Array(4 * half);
  for (let j = 0; j < half; j++) {
    const turns = Math.pow(base, (-2 * j) / dims) / (factors ? factors[j]! : 1) / (2 * Math.PI);
    const a = top12Bits(turns);
    const b = top12Bits(turns - a);
    table.set([a, b, turns - a - b, 0], 4 * j);
  }
  return table;
}

/** Pipelines, layouts and shared buffers of the non-matmul ops on one device. */
export class OpKernels {
  readonly pipelines: PipelineCache;
  private readonly counts: CountTable;
  private readonly layouts = new Map<string, Layout>();
  /** Bound in place of an operand a variant does not read (a binding must hold some buffer). */
  private readonly placeholder: GPUBuffer;
  /** Bound in place of an output a variant does not write (apart from the read placeholder). */
  private readonly placeholderOut: GPUBuffer;
  /** A second unused output (a bind group may not bind one buffer to two writable bindings). */
  private readonly placeholderOut2: GPUBuffer;
  private readonly ropeTables = new Map<string, GPUBuffer>();
  private scratch: GPUBuffer | null = null;
  private readonly retired: GPUBuffer[] = [];
  private readonly maxGroups: number;
  /** A software device (SwiftShader): barrier-light kernel variants (see {@link isSoftwareDevice}). */
  private readonly software: boolean;
  /** Threads of the norm kernels: 256 on a GPU (fewer dependent loads a thread), 128 on a software device. */
  private readonly normThreads: number;

  constructor(
    readonly device: GPUDevice,
    pipelines: PipelineCache = new PipelineCache(device),
  ) {
    this.pipelines = pipelines;
    this.counts = new CountTable(device, 'op token counts');
    this.placeholder = device.createBuffer({ label: 'op placeholder', size: 16, usage: GPUBufferUsage.STORAGE });
    this.placeholderOut = device.createBuffer({ label: 'op output placeholder', size: 16, usage: GPUBufferUsage.STORAGE });
    this.placeholderOut2 = device.createBuffer({ label: 'op output placeholder 2', size: 16, usage: GPUBufferUsage.STORAGE });
    this.maxGroups = device.limits.maxComputeWorkgroupsPerDimension;
    this.software = isSoftwareDevice(device);
    this.normThreads = this.software ? 128 : 256;
  }

  /** GPU bytes of the buffers these kernels own: the attention split scratch (every size still bound) and the rope tables. */
  get bytes(): number {
    const owned = [...(this.scratch ? [this.scratch] : []), ...this.retired, ...this.ropeTables.values()];
    return owned.reduce((n, b) => n + b.size, 0);
  }

  /** Frees the count tables, rope tables, attention scratch and placeholder. Bindings stop working. */
  destroy(): void {
    this.counts.destroy();
    this.placeholder.destroy();
    this.placeholderOut.destroy();
    this.placeholderOut2.destroy();
    for (const b of this.ropeTables.values()) b.destroy();
    this.ropeTables.clear();
    this.scratch?.destroy();
    for (const b of this.retired) b.destroy();
    this.scratch = null;
    this.retired.length = 0;
  }

  // ---------------------------------------------------------------------------------------------
  // embed

  /**
   * Binds out[t] = scale · table[ids[t]] for t < T: one dispatch per tile, each writing the tokens
   * whose id falls in it. Ids outside every tile leave their rows unwritten (validate ids on the CPU).
   */
  async bindEmbed(b: EmbedBinding): Promise<Dispatch> {
    const label = b.label ?? `embed/${typeName(b.type)} ${b.cols}`;
    const snippet = WEIGHT_SNIPPETS.get(b.type);
    const info = GGML_TYPES.get(b.type);
    if (!snippet || !info) throw new RullamaError('unsupported', `${label}: embeddings of ${typeName(b.type)} are not supported`);
    const maxTokens = this.checkTokens(label, b.maxTokens);
    if (maxTokens > this.maxGroups) bad(label, `maxTokens ${maxTokens} exceeds ${this.maxGroups} (one workgroup row per token)`);
    const multiple = Math.max(8, info.blockSize);
    if (!isCount(b.cols) || b.cols % multiple !== 0) bad(label, `cols must be a positive multiple of ${multiple} for ${info.name}, not ${b.cols}`);
    if (b.tiles.length === 0) bad(label, 'no tiles');
    const idsOffset = b.idsOffset ?? 0;
    if (!isIndex(idsOffset)) bad(label, `idsOffset must be a non-negative integer, not ${idsOffset}`);
    this.checkStorage(label, 'ids', b.ids);
    if (b.ids.size < 4 * (idsOffset + maxTokens)) bad(label, `ids has ${b.ids.size} bytes, ${4 * (idsOffset + maxTokens)} are needed`);
    const out = this.operand(label, 'out', b.out, b.outOffset, b.outStride, b.cols, maxTokens);
    if (b.out === b.ids) bad(label, 'out and ids must be different buffers');
    const scale = b.scale ?? 1;
    if (!Number.isFinite(scale)) bad(label, `scale must be finite, not ${scale}`);
    const rowBytes = (b.cols / info.blockSize) * info.typeSize;

    const layout = this.layout('embed', ['read', 'read', 'write', 'uniform', 'count']);
    const pipeline = await this.pipelines.get({ name: 'embed', dtype: typeName(b.type), parts: [EMBED, WEIGHTS_COMMON, snippet], layout: layout.pipeline });
    const params: GPUBuffer[] = [];
    const groups: GPUBindGroup[] = [];
    for (const [i, tile] of b.tiles.entries()) {
      if (!isIndex(tile.firstRow) || !isCount(tile.rows)) bad(label, `tile ${i}: firstRow ${tile.firstRow} / rows ${tile.rows} are not a row range`);
      this.checkStorage(label, `tile ${i}`, tile.weight);
      const need = tile.rows * rowBytes;
      if (tile.weight.size < need) bad(label, `tile ${i} has ${tile.weight.size} bytes, ${tile.rows} rows of ${info.name} need ${need}`);
      if (need > 2 ** 32 - 4) bad(label, `tile ${i} spans ${need} bytes, past 32-bit addressing; use smaller tiles`);
      if (tile.firstRow + tile.rows > 2 ** 32 - 1) bad(label, `tile ${i} ends past row 2^32`);
      const p = this.params(`${label} tile ${i}`, [b.cols, tile.firstRow, tile.rows, idsOffset, out.offset, out.stride], [scale]);
      params.push(p);
      groups.push(this.bindGroup(label, layout, [b.ids, tile.weight, b.out, p], maxTokens));
    }
    const gx = Math.ceil(b.cols / 8 / EMBED_WG);
    return this.dispatch(
      label,
      maxTokens,
      1,
      (pass, tokens, offsets) => {
        pass.setPipeline(pipeline);
        for (const group of groups) {
          pass.setBindGroup(0, group, offsets);
          pass.dispatchWorkgroups(gx, tokens);
        }
      },
      () => params.forEach((p) => p.destroy()),
    );
  }

  // ---------------------------------------------------------------------------------------------
  // rms_norm, ple_combine

  /**
   * Binds out = (RMS(x·xScale, w) + residual·residualScale)·outScale over slices of `size` values
   * (`count` per token). x or residual may be `out` itself with the same offset and stride (in place).
   */
  async bindRmsNorm(b: RmsNormBinding): Promise<Dispatch> {
    const count = b.count ?? 1;
    const label = b.label ?? `rms_norm ${count}x${b.size}`;
    const maxTokens = this.checkTokens(label, b.maxTokens);
    if (!isCount(b.size) || !isCount(count)) bad(label, `size ${b.size} and count ${count} must be positive integers`);
    const width = b.size * count;
    const x = this.operand(label, 'x', b.x, b.xOffset, b.xStride, width, maxTokens);
    const out = this.operand(label, 'out', b.out, b.outOffset, b.outStride, width, maxTokens);
    const res = b.residual ? this.operand(label, 'residual', b.residual, b.residualOffset, b.residualStride, width, maxTokens) : { offset: 0, stride: 0 };
    const xIsOut = this.aliased(label, 'x', b.x, x, b.out, out);
    const residualIsOut = b.residual ? this.aliased(label, 'residual', b.residual, res, b.out, out) : false;
    const weightOffset = b.weightOffset ?? 0;
    if (b.weight) {
      if (!isIndex(weightOffset)) bad(label, `weightOffset must be a non-negative integer, not ${weightOffset}`);
      this.checkStorage(label, 'weight', b.weight);
      if (b.weight.size < 4 * (weightOffset + b.size)) bad(label, `weight has ${b.weight.size} bytes, ${4 * (weightOffset + b.size)} are needed`);
      if (b.weight === b.out) bad(label, 'weight and out must be different buffers');
    }
    const floats = [b.eps, b.xScale ?? 1, b.residualScale ?? 1, b.outScale ?? 1];
    if (!floats.every(Number.isFinite) || b.eps < 0) bad(label, 'eps and the scales must be finite (eps ≥ 0)');
    if (maxTokens * count > this.maxGroups ** 2) bad(label, `${maxTokens * count} slices need more workgroups than one dispatch allows`);
    const next = b.next;
    let out2 = { offset: 0, stride: 0 };
    const w2Offset = next?.weightOffset ?? 0;
    if (next) {
      out2 = this.operand(label, 'next.out', next.out, next.outOffset, next.outStride, width, maxTokens);
      if (next.out === b.out || next.out === b.x || next.out === b.residual || next.out === next.weight) bad(label, 'next.out must differ from x, residual, out and the weights');
      if (!isIndex(w2Offset)) bad(label, `next.weightOffset must be a non-negative integer, not ${w2Offset}`);
      this.checkStorage(label, 'next.weight', next.weight);
      if (next.weight.size < 4 * (w2Offset + b.size)) bad(label, `next.weight has ${next.weight.size} bytes, ${4 * (w2Offset + b.size)} are needed`);
      if (next.weight === b.out) bad(label, 'next.weight and out must be different buffers');
    }

    const layout = this.layout('rms_norm', ['read', 'read', 'read', 'write', 'uniform', 'count', 'read', 'write']);
    const pipeline = await this.pipelines.get({
      name: 'rms_norm',
      constants: { WG_SIZE: this.normThreads, HAS_WEIGHT: b.weight ? 1 : 0, HAS_RESIDUAL: b.residual ? 1 : 0, X_IS_OUT: xIsOut ? 1 : 0, RESIDUAL_IS_OUT: residualIsOut ? 1 : 0, HAS_NEXT: next ? 1 : 0 },
      parts: [RMS_NORM],
      layout: layout.pipeline,
    });
    const params = this.params(
      label,
      [b.size, count, x.offset, x.stride, weightOffset, res.offset, res.stride, out.offset, out.stride, w2Offset, out2.offset, out2.stride],
      floats,
    );
    const ph = this.placeholder;
    const group = this.bindGroup(
      label, layout,
      [xIsOut ? ph : b.x, b.weight ?? ph, b.residual && !residualIsOut ? b.residual : ph, b.out, params],
      maxTokens, undefined, 1, next ? [next.weight, next.out] : [ph, this.placeholderOut],
    );
    return this.flatDispatch(label, maxTokens, pipeline, group, params, count, 1);
  }

  /**
   * Binds the per-layer inputs of Gemma 4 (spec §3.1 steps 3–4), for each layer slice l:
   * out_l = (RMS(proj_l · projScale, weight) + tokenRows_l · sqrt(size)) · 2^(-1/2).
   */
  bindPleCombine(b: PleCombineBinding): Promise<Dispatch> {
    return this.bindRmsNorm({
      label: b.label ?? `ple_combine ${b.layers}x${b.size}`,
      maxTokens: b.maxTokens,
      size: b.size,
      count: b.layers,
      x: b.proj,
      xOffset: b.projOffset,
      xStride: b.projStride,
      xScale: b.projScale,
      weight: b.weight,
      residual: b.tokenRows,
      residualOffset: b.tokenRowsOffset,
      residualStride: b.tokenRowsStride,
      residualScale: Math.sqrt(b.size),
      outScale: Math.SQRT1_2,
      out: b.out,
      outOffset: b.outOffset,
      outStride: b.outStride,
      eps: b.eps,
    });
  }

  // ---------------------------------------------------------------------------------------------
  // rope

  /** Binds NeoX RoPE in place on `heads` heads per token at positions start + t. */
  async bindRope(b: RopeBinding): Promise<Dispatch> {
    const dims = b.dims ?? b.headDim;
    const label = b.label ?? `rope ${b.heads}x${b.headDim}/${dims}`;
    const maxTokens = this.checkTokens(label, b.maxTokens);
    if (!isCount(b.heads) || !isCount(b.headDim)) bad(label, `heads ${b.heads} and headDim ${b.headDim} must be positive integers`);
    if (!isCount(dims) || dims % 2 !== 0 || dims > b.headDim) bad(label, `dims must be even and at most headDim (${b.headDim}), not ${dims}`);
    if (!(b.base > 0) || !Number.isFinite(b.base)) bad(label, `base must be positive, not ${b.base}`);
    if (b.factors) {
      if (b.factors.length < dims / 2) bad(label, `factors has ${b.factors.length} values, ${dims / 2} are needed`);
      for (let j = 0; j < dims / 2; j++) if (!(b.factors[j]! > 0) || !Number.isFinite(b.factors[j]!)) bad(label, `factor ${j} (${b.factors[j]}) must be positive and finite`);
    }
    const x = this.operand(label, 'x', b.x, b.xOffset, b.xStride, b.heads * b.headDim, maxTokens);
    this.checkPosition(label, b.position);
    const half = dims / 2;

    const layout = this.layout('rope', ['read', 'write', 'uniform', 'count', 'uniform']);
    const pipeline = await this.pipelines.get({ name: 'rope', parts: [ROPE_ANGLE, ROPE], layout: layout.pipeline });
    const table = this.ropeTable(dims, b.base, b.factors ? b.factors.subarray(0, half) : null);
    const params = this.params(label, [b.heads, b.headDim, half, x.offset, x.stride], []);
    const group = this.bindGroup(label, layout, [table, b.x, params], maxTokens, b.position);
    return this.flatDispatch(label, maxTokens, pipeline, group, params, half, ROPE_WG);
  }

  // ---------------------------------------------------------------------------------------------
  // q/k norm + rope + kv store, fused

  /** Binds {@link QkNormRopeBinding}: one workgroup per (token, head) of q, then k, then v. */
  async bindQkNormRope(b: QkNormRopeBinding): Promise<Dispatch> {
    const dims = b.dims ?? b.headDim;
    const label = b.label ?? `qk_norm_rope ${b.heads}x${b.headDim}/${dims}`;
    const maxTokens = this.checkTokens(label, b.maxTokens);
    const { heads, headDim } = b;
    if (!isCount(heads) || !isCount(headDim) || headDim > QK_NORM_ROPE_MAX_HEAD_DIM) bad(label, `heads ${heads} and headDim ${headDim} must be positive integers, headDim at most ${QK_NORM_ROPE_MAX_HEAD_DIM}`);
    if (!isCount(dims) || dims % 2 !== 0 || dims > headDim) bad(label, `dims must be even and at most headDim (${headDim}), not ${dims}`);
    if (!(b.base > 0) || !Number.isFinite(b.base)) bad(label, `base must be positive, not ${b.base}`);
    if (b.factors) {
      if (b.factors.length < dims / 2) bad(label, `factors has ${b.factors.length} values, ${dims / 2} are needed`);
      for (let j = 0; j < dims / 2; j++) if (!(b.factors[j]! > 0) || !Number.isFinite(b.factors[j]!)) bad(label, `factor ${j} (${b.factors[j]}) must be positive and finite`);
    }
    if (!Number.isFinite(b.eps) || b.eps < 0) bad(label, `eps must be finite and non-negative, not ${b.eps}`);
    const q = this.operand(label, 'q', b.q, b.qOffset, b.qStride, heads * headDim, maxTokens);
    const qwOffset = b.qNormOffset ?? 0;
    this.checkStorage(label, 'qNorm', b.qNorm);
    if (!isIndex(qwOffset) || b.qNorm.size < 4 * (qwOffset + headDim)) bad(label, `qNorm has ${b.qNorm.size} bytes, ${4 * (qwOffset + headDim)} are needed`);
    if (b.qNorm === b.q) bad(label, 'qNorm and q must be different buffers');
    this.checkPosition(label, b.position);
    const kv = b.kv;
    let kOp = { offset: 0, stride: 0 };
    let vOp = { offset: 0, stride: 0 };
    let kwOffset = 0;
    const kvHeads = kv?.kvHeads ?? 0;
    const capacity = kv?.capacity ?? 0;
    if (kv) {
      if (!isCount(kvHeads)) bad(label, `kvHeads must be a positive integer, not ${kvHeads}`);
      const width = kvHeads * headDim;
      kOp = this.operand(label, 'k', kv.k, kv.kOffset, kv.kStride, width, maxTokens);
      vOp = this.operand(label, 'v', kv.v, kv.vOffset, kv.vStride, width, maxTokens);
      kwOffset = kv.kNormOffset ?? 0;
      this.checkStorage(label, 'kNorm', kv.kNorm);
      if (!isIndex(kwOffset) || kv.kNorm.size < 4 * (kwOffset + headDim)) bad(label, `kNorm has ${kv.kNorm.size} bytes, ${4 * (kwOffset + headDim)} are needed`);
      if (!isCount(capacity) || capacity < maxTokens) bad(label, `capacity ${capacity} must be at least maxTokens (${maxTokens}): a block must not wrap onto itself`);
      for (const [name, cache] of [['kCache', kv.kCache], ['vCache', kv.vCache]] as const) {
        this.checkStorage(label, name, cache);
        if (cache.size < 4 * capacity * width) bad(label, `${name} has ${cache.size} bytes, ${capacity} slots of ${width} need ${4 * capacity * width}`);
        if (cache === kv.k || cache === kv.v || cache === b.q) bad(label, `${name} must differ from q, k and v`);
      }
      if (kv.kCache === kv.vCache) bad(label, 'kCache and vCache must be different buffers');
      if (kv.k === b.q || kv.v === b.q) bad(label, 'k and v must differ from q');
      if (capacity * width > 2 ** 32 - 1) bad(label, 'the cache holds more than 2^32 values');
    }
    const perToken = heads + 2 * kvHeads;
    if (maxTokens * perToken > this.maxGroups ** 2) bad(label, `${maxTokens * perToken} heads need more workgroups than one dispatch allows`);
    const half = dims / 2;

    const layout = this.layout('qk_norm_rope', ['read', 'read', 'read', 'read', 'read', 'write', 'write', 'write', 'uniform', 'count', 'uniform']);
    const pipeline = await this.pipelines.get({ name: 'qk_norm_rope', constants: { WG_SIZE: this.normThreads, HAS_KV: kv ? 1 : 0 }, parts: [ROPE_ANGLE, QK_NORM_ROPE], layout: layout.pipeline });
    const table = this.ropeTable(dims, b.base, b.factors ? b.factors.subarray(0, half) : null);
    const params = this.params(label, [heads, kvHeads, headDim, half, q.offset, q.stride, kOp.offset, kOp.stride, vOp.offset, vOp.stride, capacity, qwOffset, kwOffset], [b.eps]);
    const ph = this.placeholder;
    const group = this.bindGroup(
      label, layout,
      kv ? [table, b.qNorm, kv.kNorm, kv.k, kv.v, b.q, kv.kCache, kv.vCache, params] : [table, b.qNorm, ph, ph, ph, b.q, this.placeholderOut, this.placeholderOut2, params],
      maxTokens, b.position,
    );
    return this.flatDispatch(label, maxTokens, pipeline, group, params, perToken, 1);
  }

  // ---------------------------------------------------------------------------------------------
  // kv_store

  /** Binds cache[(start + t) % capacity] = (k[t], v[t]) for t < T. */
  async bindKvStore(b: KvStoreBinding): Promise<Dispatch> {
    const label = b.label ?? `kv_store ${b.width}`;
    const maxTokens = this.checkTokens(label, b.maxTokens);
    if (!isCount(b.width)) bad(label, `width must be a positive integer, not ${b.width}`);
    if (!isCount(b.capacity) || b.capacity < maxTokens) bad(label, `capacity ${b.capacity} must be at least maxTokens (${maxTokens}): a block must not wrap onto itself`);
    const k = this.operand(label, 'k', b.k, b.kOffset, b.kStride, b.width, maxTokens);
    const v = this.operand(label, 'v', b.v, b.vOffset, b.vStride, b.width, maxTokens);
    for (const [name, cache] of [['kCache', b.kCache], ['vCache', b.vCache]] as const) {
      this.checkStorage(label, name, cache);
      if (cache.size < 4 * b.capacity * b.width) bad(label, `${name} has ${cache.size} bytes, ${b.capacity} slots of ${b.width} need ${4 * b.capacity * b.width}`);
      if (cache === b.k || cache === b.v) bad(label, `${name} must differ from k and v`);
    }
    if (b.kCache === b.vCache) bad(label, 'kCache and vCache must be different buffers');
    if (b.capacity * b.width > 2 ** 32 - 1) bad(label, 'the cache holds more than 2^32 values');
    this.checkPosition(label, b.position);

    const layout = this.layout('kv_store', ['read', 'read', 'write', 'write', 'uniform', 'count', 'uniform']);
    const pipeline = await this.pipelines.get({ name: 'kv_store', parts: [KV_STORE], layout: layout.pipeline });
    const params = this.params(label, [b.width, b.capacity, k.offset, k.stride, v.offset, v.stride], []);
    const group = this.bindGroup(label, layout, [b.k, b.v, b.kCache, b.vCache, params], maxTokens, b.position);
    return this.flatDispatch(label, maxTokens, pipeline, group, params, b.width, KV_STORE_WG);
  }

  // ---------------------------------------------------------------------------------------------
  // attention

  /**
   * Binds o[t, h] = Σ_j softmax_j(scale·q[t, h]·k_j)·v_j over the visible cached keys of the query
   * at position start + t (see {@link AttentionBinding}). Records one dispatch, plus a combine
   * dispatch when the call's token count is small enough for the keys to be split.
   */
  async bindAttention(b: AttentionBinding): Promise<Dispatch> {
    const window = b.window ?? 0;
    const label = b.label ?? `attention ${b.heads}/${b.kvHeads}x${b.headDim}${window ? ` window ${window}` : ''}`;
    const maxTokens = this.checkTokens(label, b.maxTokens);
    const { heads, kvHeads, headDim, capacity } = b;
    if (!isCount(heads) || !isCount(kvHeads) || heads % kvHeads !== 0) bad(label, `heads ${heads} must be a positive multiple of kvHeads ${kvHeads}`);
    if (!isCount(headDim) || headDim % 32 !== 0 || headDim > ATTENTION_MAX_HEAD_DIM) bad(label, `headDim must be a multiple of 32 up to ${ATTENTION_MAX_HEAD_DIM}, not ${headDim}`);
    if (!isIndex(window)) bad(label, `window must be a non-negative integer, not ${window}`);
    if (!isCount(capacity) || capacity < maxTokens) bad(label, `capacity ${capacity} must be at least maxTokens (${maxTokens})`);
    const maxPosition = b.maxPosition;
    if (maxPosition !== undefined && !isIndex(maxPosition)) bad(label, `maxPosition must be a non-negative integer, not ${maxPosition}`);
    const neverWraps = maxPosition !== undefined && maxPosition < capacity;
    if (window > 0 && capacity < window + maxTokens - 1 && !neverWraps) {
      bad(label, `a sliding window of ${window} over blocks of up to ${maxTokens} tokens needs a ring of at least ${window + maxTokens - 1} slots, not ${capacity} (or a maxPosition below ${capacity})`);
    }
    if (window === 0 && maxPosition !== undefined && !neverWraps) bad(label, `a global cache of ${capacity} slots cannot hold position ${maxPosition}`);
    const scale = b.scale ?? 1;
    if (!Number.isFinite(scale)) bad(label, `scale must be finite, not ${scale}`);
    const group = heads / kvHeads;
    const kvStride = kvHeads * headDim;
    const q = this.operand(label, 'q', b.q, b.qOffset, b.qStride, heads * headDim, maxTokens);
    const out = this.operand(label, 'out', b.out, b.outOffset, b.outStride, heads * headDim, maxTokens);
    for (const [name, v] of [['qOffset', q.offset], ['qStride', q.stride], ['outOffset', out.offset], ['outStride', out.stride]] as const) {
      if (v % 4 !== 0) bad(label, `${name} must be a multiple of 4 (the kernel reads vec4), not ${v}`);
    }
    for (const [name, cache] of [['kCache', b.kCache], ['vCache', b.vCache]] as const) {
      this.checkStorage(label, name, cache);
      if (cache.size < 4 * capacity * kvStride) bad(label, `${name} has ${cache.size} bytes, ${capacity} slots of ${kvStride} need ${4 * capacity * kvStride}`);
    }
    if (b.out === b.q || b.out === b.kCache || b.out === b.vCache) bad(label, 'out must differ from q and the caches');
    if (Math.ceil((maxTokens * group) / ATTENTION_ROWS) > this.maxGroups || kvHeads > this.maxGroups) {
      bad(label, `${maxTokens} tokens × ${group} heads per kv head need more workgroups than one dispatch allows`);
    }
    this.checkPosition(label, b.position);

    // Key splits per token count: enough workgroups to fill the GPU, each with at least one tile.
    const splitCap = b.maxSplits ?? ATTENTION_MAX_SPLITS;
    if (!isCount(splitCap)) bad(label, `maxSplits must be a positive integer, not ${splitCap}`);
    const maxKeys = window > 0 ? Math.min(capacity, window + maxTokens - 1) : capacity;
    const limit = Math.min(ATTENTION_MAX_SPLITS, splitCap, Math.ceil(maxKeys / ATTENTION_KEYS));
    const splitsFor = new Uint32Array(maxTokens + 1);
    let partRows = 0; // max over T of splits·T: the scratch rows (per head) a call may need
    for (let t = 1; t <= maxTokens; t++) {
      const blocks = kvHeads * Math.ceil((t * group) / ATTENTION_ROWS);
      const s = Math.max(1, Math.min(limit, Math.floor(ATTENTION_TARGET_WORKGROUPS / blocks)));
      splitsFor[t] = s;
      if (s > 1) partRows = Math.max(partRows, s * t);
    }
    // Scratch, in vec4: the partial outputs [splits][T·heads][headDim/4], then one (m, l, 0, 0) per part.
    const mlBase = (partRows * heads * headDim) / 4;
    const scratchVec4 = mlBase + partRows * heads;
    // The head-group decode's parts: [DS_SPLITS][heads][headDim/4] outputs, then (m, l) per split and head.
    const headGroupVec4 = ATTENTION_DECODE_SPLITS * heads * (headDim / 4 + 1);
    const scratchBytes = 16 * Math.max(partRows > 0 ? scratchVec4 : 0, headGroupVec4);
    const scratch = this.scratchBuffer(scratchBytes);
    if (4 * scratchVec4 > 2 ** 32 - 1) bad(label, 'the split scratch holds more than 2^32 values; lower maxSplits');

    const layout = this.layout('attention', ['read', 'read', 'read', 'write', 'write', 'uniform', 'count', 'count', 'uniform']);
    const constants: ShaderPart = { name: 'attention constants', source: `const HEAD_DIM: u32 = ${headDim}u;` };
    // One-token calls: the one-pass kernel when every query sees at most DEC_MAX_KEYS keys.
    const rowKeys = window > 0 ? Math.min(window, capacity) : neverWraps ? maxPosition! + 1 : capacity;
    // Workgroups of the decode kernel: (query head, slice of DEC_SLICE_MAX vec4s of the head).
    const decodeCount = heads * (headDim / 4 / Math.min(headDim / 4, ATTENTION_DECODE_SLICE));
    const decodeGroups = [Math.min(decodeCount, this.maxGroups), Math.ceil(decodeCount / Math.min(decodeCount, this.maxGroups))] as const;
    const wanted = b.decodeKernel ?? (this.software ? 'tiled' : 'head-groups');
    const useHeadGroups = wanted === 'head-groups' && 32 % group === 0 && kvHeads <= this.maxGroups && heads <= this.maxGroups;
    const useDecode = !useHeadGroups && wanted !== 'tiled' && rowKeys <= ATTENTION_DECODE_MAX_KEYS && decodeCount <= this.maxGroups ** 2;
    const entry = (name: string, entryPoint?: string) =>
      this.pipelines.get({ name, dtype: `hd${headDim}`, parts: [constants, ATTENTION], layout: layout.pipeline, entryPoint });
    const [main, combine, decode, headSplit, headCombine] = await Promise.all([
      entry('attention'),
      entry('attention_combine', 'combine'),
      useDecode ? entry('attention_decode', 'decode') : null,
      useHeadGroups ? entry('attention_decode_split', 'decode_split') : null,
      useHeadGroups ? entry('attention_decode_combine', 'decode_combine') : null,
    ]);
    const params = this.params(label, [heads, kvHeads, group, capacity, window, q.offset, q.stride, out.offset, out.stride, kvStride, mlBase], [scale]);
    // Two counts: the call's token count (binding 6) and its key splits (binding 7).
    const countMax = Math.max(maxTokens, ATTENTION_MAX_SPLITS);
    const bindGroup = this.bindGroup(label, layout, [b.q, b.kCache, b.vCache, b.out, scratch, params], countMax, b.position, 2);
    return this.dispatch(
      label,
      maxTokens,
      2,
      (pass, tokens, offsets) => {
        if (tokens === 1 && headSplit && headCombine) {
          offsets[1] = this.counts.offset(1);
          pass.setPipeline(headSplit);
          pass.setBindGroup(0, bindGroup, offsets);
          pass.dispatchWorkgroups(ATTENTION_DECODE_SPLITS, kvHeads);
          pass.setPipeline(headCombine);
          pass.dispatchWorkgroups(heads);
          return;
        }
        if (tokens === 1 && decode) {
          offsets[1] = this.counts.offset(1);
          pass.setPipeline(decode);
          pass.setBindGroup(0, bindGroup, offsets);
          pass.dispatchWorkgroups(decodeGroups[0], decodeGroups[1]);
          return;
        }
        const splits = splitsFor[tokens]!;
        offsets[1] = this.counts.offset(splits);
        pass.setPipeline(main);
        pass.setBindGroup(0, bindGroup, offsets);
        pass.dispatchWorkgroups(Math.ceil((tokens * group) / ATTENTION_ROWS), kvHeads, splits);
        if (splits > 1) {
          const rows = tokens * heads;
          const gx = Math.min(rows, this.maxGroups);
          pass.setPipeline(combine);
          pass.dispatchWorkgroups(gx, Math.ceil(rows / gx));
        }
      },
      () => params.destroy(),
    );
  }

  // ---------------------------------------------------------------------------------------------
  // elementwise

  /** out = a + b. */
  bindAdd(b: BinaryBinding): Promise<Dispatch> {
    return this.elementwise('add', b, { buffer: b.a, offset: b.aOffset, stride: b.aStride }, { buffer: b.b, offset: b.bOffset, stride: b.bStride });
  }

  /** out = a · b. */
  bindMul(b: BinaryBinding): Promise<Dispatch> {
    return this.elementwise('mul', b, { buffer: b.a, offset: b.aOffset, stride: b.aStride }, { buffer: b.b, offset: b.bOffset, stride: b.bStride });
  }

  /** out = gelu_tanh(gate) · up. */
  bindGeluMul(b: GeluMulBinding): Promise<Dispatch> {
    return this.elementwise('gelu_mul', b, { buffer: b.gate, offset: b.gateOffset, stride: b.gateStride }, { buffer: b.up, offset: b.upOffset, stride: b.upStride });
  }

  /** out = x · factor[factorIndex], the factor read on the GPU at run time. */
  bindScale(b: ScaleBinding): Promise<Dispatch> {
    return this.elementwise('scale', b, { buffer: b.x, offset: b.xOffset, stride: b.xStride }, null, b.factor, b.factorIndex ?? 0);
  }

  /** out = cap · tanh(x / cap). */
  bindSoftcap(b: SoftcapBinding): Promise<Dispatch> {
    if (!(b.cap > 0) || !Number.isFinite(b.cap)) bad(b.label ?? 'softcap', `cap must be positive, not ${b.cap}`);
    return this.elementwise('softcap', b, { buffer: b.x, offset: b.xOffset, stride: b.xStride }, null, null, 0, b.cap);
  }

  private async elementwise(op: ElementwiseOp, b: ElementwiseBinding, a: Operand, second: Operand | null, factor: GPUBuffer | null = null, factorIndex = 0, cap = 1): Promise<Dispatch> {
    const label = b.label ?? `${op} ${b.width}`;
    const maxTokens = this.checkTokens(label, b.maxTokens);
    if (!isCount(b.width)) bad(label, `width must be a positive integer, not ${b.width}`);
    const out = this.operand(label, 'out', b.out, b.outOffset, b.outStride, b.width, maxTokens);
    const ga = this.operand(label, 'a', a.buffer, a.offset, a.stride, b.width, maxTokens);
    const gb = second ? this.operand(label, 'b', second.buffer, second.offset, second.stride, b.width, maxTokens) : { offset: 0, stride: 0 };
    const aIsOut = this.aliased(label, 'a', a.buffer, ga, b.out, out);
    const bIsOut = second ? this.aliased(label, 'b', second.buffer, gb, b.out, out) : false;
    if (factor) {
      this.checkStorage(label, 'factor', factor);
      if (!isIndex(factorIndex) || factor.size < 4 * (factorIndex + 1)) bad(label, `factor index ${factorIndex} is outside the factor buffer`);
      if (factor === b.out) bad(label, 'factor and out must be different buffers');
    }
    if ((maxTokens * b.width) / ELEMENTWISE_WG > this.maxGroups ** 2) bad(label, 'too many elements for one dispatch');

    const layout = this.layout('elementwise', ['read', 'read', 'read', 'write', 'uniform', 'count']);
    const pipeline = await this.pipelines.get({
      name: 'elementwise',
      dtype: op,
      constants: { OP: ELEMENTWISE_OPS[op], A_IS_OUT: aIsOut ? 1 : 0, B_IS_OUT: bIsOut ? 1 : 0 },
      parts: [ELEMENTWISE],
      layout: layout.pipeline,
    });
    const params = this.params(label, [b.width, ga.offset, ga.stride, gb.offset, gb.stride, out.offset, out.stride, factorIndex], [cap]);
    const ph = this.placeholder;
    const group = this.bindGroup(label, layout, [aIsOut ? ph : a.buffer, second && !bIsOut ? second.buffer : ph, factor ?? ph, b.out, params], maxTokens);
    return this.flatDispatch(label, maxTokens, pipeline, group, params, b.width, ELEMENTWISE_WG);
  }

  // ---------------------------------------------------------------------------------------------
  // helpers

  /** A Dispatch of ceil(tokens·perToken / perGroup) workgroups, x-fastest over a 2-D grid. */
  private flatDispatch(label: string, maxTokens: number, pipeline: GPUComputePipeline, group: GPUBindGroup, params: GPUBuffer, perToken: number, perGroup: number): Dispatch {
    if (maxTokens * perToken > 2 ** 32 - 1) bad(label, 'more than 2^32 elements per call');
    return this.dispatch(
      label,
      maxTokens,
      1,
      (pass, tokens, offsets) => {
        const n = Math.ceil((tokens * perToken) / perGroup);
        const gx = Math.min(n, this.maxGroups);
        pass.setPipeline(pipeline);
        pass.setBindGroup(0, group, offsets);
        pass.dispatchWorkgroups(gx, Math.ceil(n / gx));
      },
      () => params.destroy(),
    );
  }

  /**
   * A Dispatch whose encode refuses token counts outside 0..maxTokens, records nothing for 0, and
   * otherwise calls `record` with the count and the bind group's `countBindings` dynamic offsets,
   * the first already selecting the token count (record sets any others). The offsets array is
   * reused: encode allocates nothing.
   */
  private dispatch(
    label: string,
    maxTokens: number,
    countBindings: number,
    record: (pass: GPUComputePassEncoder, tokens: number, offsets: number[]) => void,
    destroy: () => void,
  ): Dispatch {
    // A plain array: Dawn's Node bindings take one faster than a typed array with a start and
    // length (bench/micro.ts --record: 420 setBindGroup calls, 2.3 against 2.9 ms on the H100 host).
    const offsets: number[] = new Array<number>(countBindings).fill(0);
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

  /**
   * Entries 0..n-1 from `buffers`, then `countBindings` entries of the count table (each covering
   * counts up to `maxCount`), then the position uniform if any.
   */
  private bindGroup(label: string, layout: Layout, buffers: readonly GPUBuffer[], maxCount: number, position?: GPUBuffer, countBindings = 1, more: readonly GPUBuffer[] = []): GPUBindGroup {
    const entries: GPUBindGroupEntry[] = buffers.map((buffer, binding) => ({ binding, resource: { buffer } }));
    for (let i = 0; i < countBindings; i++) entries.push(this.counts.entry(entries.length, maxCount));
    if (position) entries.push({ binding: entries.length, resource: { buffer: position, offset: 0, size: 16 } });
    for (const buffer of more) entries.push({ binding: entries.length, resource: { buffer } });
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

  /** The shared attention scratch, grown by replacement (older ones stay alive for their bindings). */
  private scratchBuffer(bytes: number): GPUBuffer {
    if (this.scratch && this.scratch.size >= bytes) return this.scratch;
    if (this.scratch) this.retired.push(this.scratch);
    this.scratch = this.device.createBuffer({ label: 'attention split scratch', size: Math.ceil(bytes / 16) * 16, usage: GPUBufferUsage.STORAGE });
    return this.scratch;
  }

  private checkTokens(label: string, maxTokens: number): number {
    if (!isCount(maxTokens)) bad(label, `maxTokens must be a positive integer, not ${maxTokens}`);
    return maxTokens;
  }

  private checkStorage(label: string, name: string, buffer: GPUBuffer): void {
    if ((buffer.usage & GPUBufferUsage.STORAGE) === 0) bad(label, `the ${name} buffer lacks STORAGE usage`);
  }

  private checkPosition(label: string, position: GPUBuffer): void {
    if ((position.usage & GPUBufferUsage.UNIFORM) === 0 || position.size < 16) bad(label, 'position must be a UNIFORM buffer of at least 16 bytes (PositionUniform)');
  }

  /** Validates an f32 operand of `maxTokens` rows of `width` values; returns its offset and stride. */
  private operand(label: string, name: string, buffer: GPUBuffer, offsetArg: number | undefined, strideArg: number | undefined, width: number, maxTokens: number): { offset: number; stride: number } {
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

  /** Whether an input is `out` itself; then it must be the very same rows (same offset and stride). */
  private aliased(label: string, name: string, buffer: GPUBuffer, g: { offset: number; stride: number }, out: GPUBuffer, o: { offset: number; stride: number }): boolean {
    if (buffer !== out) return false;
    if (g.offset !== o.offset || g.stride !== o.stride) bad(label, `${name} is the out buffer at other rows; in place needs the same offset and stride`);
    return true;
  }
}

