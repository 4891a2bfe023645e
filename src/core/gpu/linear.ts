/**
 * Linear layers over weights kept on the GPU in their GGUF byte layout: y = W·x for one token
 * (matvec, decode) and for a block of tokens (matmul, prefill), for F32, F16, BF16, Q8_0, Q4_0,
 * Q4_1, Q5_0, Q5_1, Q4_K, Q5_K and Q6_K weights, with f32 activations and f32 accumulation.
 *
 * Usage: upload each weight (or each row tile of a big one) once with {@link uploadWeight}, bind
 * it once per usage with {@link LinearKernels.bindMatVec} / {@link LinearKernels.bindMatMul} (this
 * builds its uniform and bind group and fetches the shared pipeline), then every token call
 * {@link Dispatch.encode} inside the caller's compute pass: no allocation, no buffer writes, no CPU
 * round trip. For matmul the token count may change per call; it is selected with a dynamic offset
 * into a table of counts shared by all bindings ({@link CountTable}), so encoding the same binding
 * several times in one command buffer with different counts is fine.
 *
 * Shaders: src/wgsl/{matvec,matvec_rows,matmul,matmul_wide}.forward.wgsl + src/wgsl/weights/common.wgsl + one
 * src/wgsl/weights/<dtype>.wgsl, concatenated per (op, dtype) and compiled once (PipelineCache);
 * matvec.forward.wgsl and matvec_q6k.forward.wgsl take their Params and bindings from matvec_bindings.wgsl;
 * the matvecs take their lane sum from matvec_reduce.forward.wgsl, or matvec_reduce_sg.forward.wgsl
 * where the device has subgroups. {@link LinearKernels.bindMatVecMulti} puts several weights over
 * one x in one dispatch (matvec_multi.forward.wgsl with per-weight decoders generated here).
 * Q4_K matvecs (single or multi) take matvec_q4k.forward.wgsl, 32 values a step; these can also
 * form their input from a residual stream through RMS norms ({@link MatVecResidualInput}), which
 * folds a decode step's norm dispatches into the matvec that reads them. Single Q6_K matvecs with
 * lanes per row take matvec_q6k.forward.wgsl, 32 values a step. Q4_K and Q6_K matmuls asked for
 * `int8` take round_q8.forward.wgsl (x rounded to 8 bits) and matmul_int8.forward.wgsl with
 * weights/<dtype>_int8.wgsl (integer products).
 */
import matmulSource from '../../wgsl/matmul.forward.wgsl';
import matmulWideSource from '../../wgsl/matmul_wide.forward.wgsl';
import matmulSplitSumSource from '../../wgsl/matmul_split_sum.forward.wgsl';
import matmulInt8Source from '../../wgsl/matmul_int8.forward.wgsl';
import roundQ8Source from '../../wgsl/round_q8.forward.wgsl';
import q4kInt8Source from '../../wgsl/weights/q4_k_int8.wgsl';
import q6kInt8Source from '../../wgsl/weights/q6_k_int8.wgsl';
import matvecSource from '../../wgsl/matvec.forward.wgsl';
import matvecBindingsSource from '../../wgsl/matvec_bindings.wgsl';
import matvecRowsSource from '../../wgsl/matvec_rows.forward.wgsl';
import matvecMultiSource from '../../wgsl/matvec_multi.forward.wgsl';
import matvecQ4kSource from '../../wgsl/matvec_q4k.forward.wgsl';
import matvecQ6kSource from '../../wgsl/matvec_q6k.forward.wgsl';
import matvecInputSource from '../../wgsl/matvec_input.forward.wgsl';
import matvecInputNormSource from '../../wgsl/matvec_input_norm.forward.wgsl';
import matvecReduceSource from '../../wgsl/matvec_reduce.forward.wgsl';
import matvecReduceSgSource from '../../wgsl/matvec_reduce_sg.forward.wgsl';
import geluSource from '../../wgsl/gelu.wgsl';
import { RullamaError } from '../errors.js';
import { GGML_TYPES, GGMLType, typeName } from '../gguf/types.js';
import { uploadStorage, uploadUniform } from './buffers.js';
import { isSoftwareDevice } from './device.js';
import { PipelineCache, type ShaderPart } from './pipelines.js';
import { CountTable, countLayoutEntry } from './token-counts.js';
import { WEIGHT_SNIPPETS, WEIGHTS_COMMON, wgslConst } from './weight-snippets.js';

/** Weight dtypes the linear kernels handle. */
export const LINEAR_TYPES: readonly GGMLType[] = [...WEIGHT_SNIPPETS.keys()];

/** Rows per matvec workgroup. */
export const MATVEC_ROWS_PER_WORKGROUP = wgslConst(matvecSource, 'ROWS_PER_WG');
/** Rows per workgroup of the one-thread-per-row matvec used for short rows. */
export const MATVEC_ROWS_WG_SIZE = wgslConst(matvecRowsSource, 'WG_SIZE');
/** Rows of at most this many values go to the one-thread-per-row matvec (when there are many rows). */
export const MATVEC_SHORT_ROW = 256;
/**
 * The one-thread-per-row matvec needs at least this many rows to fill a GPU (one thread walks a
 * whole row, a chain of dependent loads); fewer short rows (Gemma 4's per-layer proj, 1,536 rows
 * of 256) take the lanes-per-row kernel. Not on a software device ({@link isSoftwareDevice}):
 * there, where a workgroup's threads are emulated and its barriers cost far more than they do on
 * a GPU, every row of any length takes the thread-per-row kernel (with lanes per row, the demo
 * model decoded 8x slower on SwiftShader).
 */
export const MATVEC_SHORT_MIN_ROWS = 16384;
/** Rows of at least this many values get 128 threads each instead of 32 (and 2 rows per workgroup). */
export const MATVEC_LONG_ROW = 4096;
const MATVEC_WG = 256;
/**
 * Lanes a row of the Q4_K matvec (matvec_q4k.forward.wgsl) gets: about two 32-value chunks each,
 * 8 to 64 lanes (measured on an H100 at E2B's shapes: 1,536 columns best with 16 lanes, 2,048
 * with 32, 6,144 with 64; bench/micro.ts); {@link q4kFillLanes} starts from this.
 */
export function q4kLanes(cols: number): number {
  const half = cols / 32 / 2;
  return Math.min(64, Math.max(8, 2 ** Math.floor(Math.log2(Math.max(1, half)))));
}
/**
 * Workgroups a Q4_K matvec should launch at least: two for each of an H200's 132 SMs. Below that,
 * SMs sit idle or wait on their loads alone, and more lanes a row (so more workgroups, each row's
 * loads spread wider) win. Measured on an H200 (decode, 35 layers): the 256 × 1,536 inp_gate at
 * 16 lanes (16 workgroups) 0.229 ms, at 64 lanes 0.195 ms; the 1,536 × 2,048 attn_output at 32
 * lanes (192 workgroups) 0.217 ms, at 64 lanes 0.189 ms.
 */
export const Q4K_FILL_WORKGROUPS = 2 * 132;
/**
 * Workgroups a Q4_K matvec that forms its input ({@link MatVecResidualInput}) should launch at
 * most: each workgroup forms the input again, so past this, more rows a workgroup (fewer lanes a
 * row) pay off. Measured on an H200: E2B's gate+up over 12,288 rows (768 workgroups at 16 lanes)
 * 0.021 ms a layer at 16 lanes, 0.018 at 8; over 6,144 rows (384 workgroups) 16 lanes stay best
 * (0.013 against 0.014).
 */
export const Q4K_FORMED_INPUT_MAX_WORKGROUPS = 512;
/**
 * Lanes a row of a Q4_K matvec gets: {@link q4kLanes}, doubled (up to 64) while the dispatch has
 * fewer than {@link Q4K_FILL_WORKGROUPS} workgroups, or, for one that forms its input
 * (`formsInput`), halved (down to 8) while it has more than {@link Q4K_FORMED_INPUT_MAX_WORKGROUPS}.
 * `rows` are the parts' row counts; with `gelu` the two parts share their workgroups (the dispatch
 * is part 0's), otherwise they add up.
 */
export function q4kFillLanes(cols: number, rows: readonly number[], gelu = false, formsInput = false): number {
  const groups = (lanes: number) => {
    const wgs = rows.map((r) => Math.ceil(r / (MATVEC_WG / lanes)));
    return gelu ? wgs[0]! : wgs.reduce((a, v) => a + v, 0);
  };
  let lanes = q4kLanes(cols);
  while (lanes < 64 && groups(lanes) < Q4K_FILL_WORKGROUPS) lanes *= 2;
  while (formsInput && lanes > 8 && groups(lanes) > Q4K_FORMED_INPUT_MAX_WORKGROUPS) lanes /= 2;
  return lanes;
}
/**
 * Lanes a row of the Q6_K matvec (matvec_q6k.forward.wgsl) gets (measured on an H200 at E2B's
 * shapes, bench/micro.ts --q6k): a tall matrix (the 262,144-row output) has threads enough with 8
 * lanes a row, six 32-value units each; shorter ones (ffn_down, attn_v) want more workgroups in
 * flight, so 64 lanes a row.
 */
export function q6kLanes(rows: number): number {
  return rows >= MATVEC_SHORT_MIN_ROWS ? 8 : 64;
}
const GELU: ShaderPart = { name: 'gelu.wgsl', source: geluSource };
/** Params and bindings of matvec.forward.wgsl and matvec_q6k.forward.wgsl, put in front of either body. */
const MATVEC_BINDINGS: ShaderPart = { name: 'matvec_bindings.wgsl', source: matvecBindingsSource };
const INPUT: ShaderPart = { name: 'matvec_input.forward.wgsl', source: matvecInputSource };
const INPUT_NORM: ShaderPart = { name: 'matvec_input_norm.forward.wgsl', source: matvecInputNormSource };
/** Storage buffers of a Q4_K matvec that forms its input ({@link MatVecResidualInput}): x, 2 outputs, aux, 2 weights, 2 terms, norms. */
export const RESIDUAL_INPUT_STORAGE_BUFFERS = 9;

/**
 * Whether a Q4_K matvec of `cols` columns can form its input on this device
 * ({@link MatVecResidualInput}): enough storage buffers per stage, and the input (padded by a
 * sixteenth) in shared memory.
 */
export function supportsResidualInput(device: GPUDevice, cols: number): boolean {
  return device.limits.maxStorageBuffersPerShaderStage >= RESIDUAL_INPUT_STORAGE_BUFFERS
    && cols % 256 === 0 && residualInputSharedBytes(cols) <= device.limits.maxComputeWorkgroupStorageSize;
}

/** Shared memory of a Q4_K matvec forming a `cols`-value input: the padded input and two reduction arrays. */
function residualInputSharedBytes(cols: number): number {
  return 4 * cols + cols / 4 + 8 * MATVEC_WG + 8 * MATVEC_WG;
}

/**
 * The bindings of matvec_q4k.forward.wgsl: 0 x, 1 params, 2–4 y0–y2, 5 aux, 6–8 w0–w2, 9–10 the
 * residual terms, 11 their norms. The input-forming variant leaves out the third weight (4, 8).
 */
const Q4K_BINDINGS = { plain: [0, 1, 2, 3, 4, 5, 6, 7, 8], residual: [0, 1, 2, 3, 5, 6, 7, 9, 10, 11] } as const;
/** A Q4_K matvec's bind group layout, its pipeline layout and the binding numbers it has. */
interface Q4kLayout {
  bindings: readonly number[];
  group: GPUBindGroupLayout;
  pipeline: GPUPipelineLayout;
}
const q4kBindingType = (binding: number): GPUBufferBindingType => (binding === 1 ? 'uniform' : binding >= 2 && binding <= 4 ? 'storage' : 'read-only-storage');
const REDUCE: ShaderPart = { name: 'matvec_reduce.forward.wgsl', source: matvecReduceSource };
const REDUCE_SG: ShaderPart = { name: 'matvec_reduce_sg.forward.wgsl', source: matvecReduceSgSource };

/**
 * Whether the device's subgroups suit matvec_reduce_sg.forward.wgsl: a probe kernel of MATVEC_WG
 * threads checks that every thread's subgroup_invocation_id is local_invocation_index % size and
 * that the size is a power of two of at most 32.
 */
async function probeSubgroups(device: GPUDevice): Promise<boolean> {
  const code = `enable subgroups;
@group(0) @binding(0) var<storage, read_write> bad: atomic<u32>;
@compute @workgroup_size(${MATVEC_WG})
fn main(@builtin(local_invocation_index) li: u32, @builtin(subgroup_invocation_id) lane: u32, @builtin(subgroup_size) size: u32) {
  let lanes = subgroupAdd(1u);
  let ok = lane == li % size && size <= 32u && (size & (size - 1u)) == 0u && lanes == size;
  if (!ok) {
    atomicAdd(&bad, 1u);
  }
}`;
  const buffer = device.createBuffer({ label: 'subgroup probe', size: 16, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
  const read = device.createBuffer({ label: 'subgroup probe read', size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  try {
    device.pushErrorScope('validation');
    const module = device.createShaderModule({ label: 'subgroup probe', code });
    if (await device.popErrorScope()) return false;
    const pipeline = await device.createComputePipelineAsync({ label: 'subgroup probe', layout: 'auto', compute: { module, entryPoint: 'main' } });
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer } }] }));
    pass.dispatchWorkgroups(4);
    pass.end();
    encoder.copyBufferToBuffer(buffer, 0, read, 0, 16);
    device.queue.submit([encoder.finish()]);
    await read.mapAsync(GPUMapMode.READ);
    const bad = new Uint32Array(read.getMappedRange())[0]!;
    read.unmap();
    return bad === 0;
  } catch {
    return false;
  } finally {
    buffer.destroy();
    read.destroy();
  }
}

/** What a matvec does with each output: nothing, or a GELU product with a second vector (`aux`). */
export type MatVecEpilogue = 'none' | 'gelu-aux-times' | 'gelu-times-aux';
const EPILOGUES: Record<MatVecEpilogue, number> = { none: 0, 'gelu-aux-times': 1, 'gelu-times-aux': 2 };
/** Rows × tokens of y per matmul workgroup of the wide tile (see {@link MatMulTile}). */
export const MATMUL_TILE_ROWS = wgslConst(matmulWideSource, 'TILE_ROWS');
export const MATMUL_TILE_TOKENS = wgslConst(matmulWideSource, 'TILE_TOKENS');
/** Rows × tokens of the narrow tile (matmul.forward.wgsl). */
const MATMUL_NARROW_ROWS = wgslConst(matmulSource, 'TILE_ROWS');
const MATMUL_NARROW_TOKENS = wgslConst(matmulSource, 'TILE_TOKENS');

/**
 * The matmul's tile: 'wide' (matmul_wide.forward.wgsl: 128 rows × 64 tokens, 8 × 8 a thread, 128
 * threads) does the most arithmetic per shared-memory load; 'narrow' (matmul.forward.wgsl: 64 rows
 * × 32 tokens, 4 × 2 a thread, 256 threads, K steps of 32) makes 4 times the workgroups, which
 * matrices of few rows need to fill the GPU; 'split' is the wide tile over K splits
 * ({@link matmulSplits}) whose parts a second dispatch adds up (matmul_split_sum.forward.wgsl):
 * as many workgroups as the wide tile of a matrix with that many times the rows. Default: wide
 * from {@link MATMUL_WIDE_ROWS} rows on; below that, split for rows of at least
 * {@link MATMUL_SPLIT_COLS} values on a GPU, else narrow.
 */
export type MatMulTile = 'wide' | 'narrow' | 'split';
/** Matmuls of at least this many rows use the wide tile by default. */
export const MATMUL_WIDE_ROWS = 4096;
/** Matmuls of fewer rows, but rows of at least this many values, split K by default (not on a software device). */
export const MATMUL_SPLIT_COLS = 4096;
/** About this many columns a K split (E2B's ffn_down: 6,144 in 4 splits, 12,288 in 8). */
const MATMUL_SPLIT_TARGET = 1536;
const MATMUL_MAX_SPLITS = 8;
/**
 * An int8 matmul whose unsplit grid has fewer workgroups than this splits K (measured on an H200,
 * 132 SMs, 512 tokens: E2B's 2,048-row attn_q, 128 workgroups, is fastest unsplit; its 1,536-row
 * ffn_down and attn_output, 96, fastest in 4 parts).
 */
export const MATMUL_INT8_SPLIT_BELOW = 128;
/** A split int8 matmul takes the power of two of parts that launches at least this many workgroups (at most {@link MATMUL_MAX_SPLITS}). */
export const MATMUL_INT8_FILL_WORKGROUPS = 264;
/** The int8 kernel's K step: splits are multiples of it. */
const MATMUL_INT8_K_CHUNK = wgslConst(matmulInt8Source, 'K_CHUNK');
if (wgslConst(matmulInt8Source, 'TILE_ROWS') !== MATMUL_TILE_ROWS) {
  throw new Error('matmul_int8.forward.wgsl must keep the wide tile\'s rows (linear.ts dispatches both alike)');
}
/** The int8 matmul's tokens a workgroup: 64, or 128 (each weight decoded once per 128 tokens). */
export type Int8TileTokens = 64 | 128;
/** Workgroup memory the 128-token int8 tile needs (bytes; the 64-token one fits WebGPU's default 16 KiB). */
const INT8_WIDE_TILE_BYTES = 21 * 1024;
/**
 * An int8 matmul takes 128 tokens a workgroup when that still launches this many workgroups
 * (H200, 512 tokens: E2B's 12,288-row gate and up, 430 -> 397 µs; the 6,144-row ones, 192
 * workgroups at 128 tokens, 213 -> 261 µs), or when it splits K anyway and has at least
 * {@link MATMUL_INT8_WIDE_SPLIT} rows and columns (E2B's ffn_down, Q6_K 578 -> 435 µs; attn_output
 * 87 -> 76; not its 1,536 x 256 proj, 25 -> 32).
 */
export const MATMUL_INT8_WIDE_GROUPS = 384;
export const MATMUL_INT8_WIDE_SPLIT = 1024;

/** The int8 tile for a matrix and up to `tokens` tokens (see {@link MATMUL_INT8_WIDE_GROUPS}), 64 where the device's workgroup memory is short. */
export function matmulInt8TileTokens(rows: number, cols: number, tokens: number, maxWorkgroupBytes: number): Int8TileTokens {
  if (maxWorkgroupBytes < INT8_WIDE_TILE_BYTES) return 64;
  const rowTiles = Math.ceil(rows / MATMUL_TILE_ROWS);
  const fills = rowTiles * Math.ceil(tokens / 128) >= MATMUL_INT8_WIDE_GROUPS;
  const splits = rowTiles * Math.ceil(tokens / 64) < MATMUL_INT8_SPLIT_BELOW && Math.min(rows, cols) >= MATMUL_INT8_WIDE_SPLIT;
  return fills || splits ? 128 : 64;
}
/** Bytes of one rounded 32-column block of x (round_q8.forward.wgsl): 32 of bytes, 16 of scales. */
const ROUNDED_BLOCK_BYTES = 48;
/** Blocks a workgroup of round_q8.forward.wgsl rounds. */
const ROUND_WG = wgslConst(roundQ8Source, 'WG_SIZE');
/** The weight parts of the int8 matmul, by dtype (Q4_K reads whole vec4s, so without common.wgsl). */
const INT8_SNIPPETS: ReadonlyMap<GGMLType, readonly ShaderPart[]> = new Map([
  [GGMLType.Q4_K, [{ name: 'weights/q4_k_int8.wgsl', source: q4kInt8Source }]],
  [GGMLType.Q6_K, [WEIGHTS_COMMON, { name: 'weights/q6_k_int8.wgsl', source: q6kInt8Source }]],
]);

/**
 * K splits of an int8 matmul of `cols` columns whose unsplit grid is `groups` workgroups (see
 * {@link MATMUL_INT8_SPLIT_BELOW}), or about `want` of them; in whole K steps.
 */
export function matmulInt8Splits(cols: number, groups: number, want?: number): { splits: number; kSplit: number } {
  want ??= groups >= MATMUL_INT8_SPLIT_BELOW ? 1 : 2 ** Math.ceil(Math.log2(MATMUL_INT8_FILL_WORKGROUPS / groups));
  want = Math.max(1, Math.min(MATMUL_MAX_SPLITS, want, cols / MATMUL_INT8_K_CHUNK));
  const kSplit = Math.ceil(cols / want / MATMUL_INT8_K_CHUNK) * MATMUL_INT8_K_CHUNK;
  return { splits: Math.ceil(cols / kSplit), kSplit };
}

/** Whether this GPU's WGSL has dot4I8Packed, which int8 matmuls need. */
export function supportsInt8MatMul(gpu: Pick<GPU, 'wgslLanguageFeatures'> | undefined): boolean {
  return gpu?.wgslLanguageFeatures?.has('packed_4x8_integer_dot_product') ?? false;
}

/** Outputs a workgroup of matmul_split_sum.forward.wgsl adds up. */
const SPLIT_SUM_WG = wgslConst(matmulSplitSumSource, 'WG_SIZE');

/** K splits of a split matmul of `cols` columns: 2 to 8 splits of `kSplit` columns (a multiple of 16), the last maybe shorter. */
export function matmulSplits(cols: number): { splits: number; kSplit: number } {
  const want = Math.min(MATMUL_MAX_SPLITS, Math.max(2, Math.round(cols / MATMUL_SPLIT_TARGET)));
  const kSplit = Math.ceil(cols / want / 16) * 16;
  return { splits: Math.ceil(cols / kSplit), kSplit };
}
/** Row length (values) must be a multiple of this for every dtype: the kernels step in 32-value chunks. */
const COL_MULTIPLE = 32;

/** Whether the linear kernels handle weights of this dtype. */
export function isLinearType(type: GGMLType): boolean {
  return WEIGHT_SNIPPETS.has(type);
}

/** Bytes of one row of `cols` values of `type` (GGUF layout). */
export function weightRowBytes(type: GGMLType, cols: number): number {
  const info = GGML_TYPES.get(type);
  if (!info) throw new RullamaError('bad-argument', `unknown ggml type ${String(type)}`);
  if (!Number.isSafeInteger(cols) || cols <= 0 || cols % info.blockSize !== 0) {
    throw new RullamaError('bad-argument', `a row of ${info.name} holds a positive multiple of ${info.blockSize} values, not ${cols}`);
  }
  return (cols / info.blockSize) * info.typeSize;
}

/**
 * A storage buffer holding the raw GGUF bytes of a weight tensor (or of a range of its rows), padded
 * with zeros to a multiple of 4 bytes. `bytes` must be whole blocks of `type`.
 */
export function uploadWeight(device: GPUDevice, type: GGMLType, bytes: Uint8Array, label: string): GPUBuffer {
  const info = GGML_TYPES.get(type);
  if (!info || !isLinearType(type)) throw new RullamaError('unsupported', `linear layers over ${typeName(type)} weights are not supported`);
  if (bytes.byteLength % info.typeSize !== 0) {
    throw new RullamaError('bad-argument', `${label}: ${bytes.byteLength} bytes are not whole ${info.name} blocks of ${info.typeSize} bytes`);
  }
  return uploadStorage(device, bytes, label);
}

/** One bound use of a weight, recorded into a compute pass each time it runs. */
export interface Dispatch {
  readonly label: string;
  /** The largest token count `encode` accepts (1 for a matvec). */
  readonly maxTokens: number;
  /**
   * Records the work into `pass` (sets the pipeline and bind group, dispatches). For a matmul,
   * `tokens` (default maxTokens) is how many tokens of x to multiply; 0 records nothing.
   */
  encode(pass: GPUComputePassEncoder, tokens?: number): void;
  /** Frees the binding's uniform buffer (not the weight, x or y buffers). */
  destroy(): void;
}

export interface MatVecBinding {
  /** The weight bytes, from {@link uploadWeight}. */
  weight: GPUBuffer;
  type: GGMLType;
  /** Output rows to compute. */
  rows: number;
  /** Values per row; a multiple of 32 and of the dtype's block size. */
  cols: number;
  /** Row of `weight` that gives output row 0 (default 0). */
  firstRow?: number;
  /** f32 input. */
  x: GPUBuffer;
  /** Elements into x where the input starts; a multiple of 4 (default 0). */
  xOffset?: number;
  /** f32 output. */
  y: GPUBuffer;
  /** Elements into y where output row 0 goes (default 0); a row tile of a bigger matrix uses its first row. */
  yOffset?: number;
  label?: string;
  /**
   * Matvec only: 'gelu-aux-times' writes y[r] = gelu_tanh(aux[auxOffset + r])·(W·x)[r] (up times the
   * activated gate), 'gelu-times-aux' y[r] = gelu_tanh((W·x)[r])·aux[auxOffset + r]; the same bits
   * as a separate gelu_mul. aux must not be y.
   */
  epilogue?: MatVecEpilogue;
  aux?: GPUBuffer;
  auxOffset?: number;
  /**
   * Matvec only: one thread per row (true) or a group of lanes per row (false). Default: one
   * thread per row for rows of at most {@link MATVEC_SHORT_ROW} values when there are at least
   * {@link MATVEC_SHORT_MIN_ROWS} rows; every row on a software device.
   */
  threadPerRow?: boolean;
  /** Q4_K weights only: form the input from a residual stream (x at xOffset) in the kernel. */
  residual?: MatVecResidualInput;
}

/**
 * A one-token input formed inside a Q4_K matvec (matvec_input_norm.forward.wgsl) instead of read
 * ready-made: with h the binding's x (from xOffset, `cols` values) and RMS(v) = v·(mean(v²) + eps)^(−1/2),
 *   s = (h + Σ_j RMS(terms[j])·n_j)·scale,   input = RMS(s)·n (with `norm`) or s,
 * where each n is `cols` f32 values of `norms` from an element offset (a multiple of 4). The
 * products equal those of the rms_norm dispatches it replaces (ops.ts), up to the order in which
 * the squares are summed. Needs {@link supportsResidualInput}.
 */
export interface MatVecResidualInput {
  /** One or two f32 block outputs of `cols` values (from offset 0), each with its norm's offset into `norms`. */
  terms: readonly { a: GPUBuffer; norm: number }[];
  /** Offset into `norms` of the final norm's weights, if any. */
  norm?: number;
  norms: GPUBuffer;
  eps: number;
  /** The factor of the residual sum (default 1): Gemma 4's layer scale. */
  scale?: number;
  /** A single weight only: also write s (before the final norm) to this buffer from `offset`. */
  out?: { buffer: GPUBuffer; offset?: number };
}

export interface MatMulBinding extends MatVecBinding {
  /** The tile (default: see {@link MatMulTile}); an int8 matmul has its own (see `int8`). */
  tile?: MatMulTile;
  /**
   * Q4_K and Q6_K weights (other dtypes ignore it): round x to 8 bits in blocks of 32 columns and
   * multiply in integers (round_q8 then matmul_int8.forward.wgsl), as llama.cpp's quantised matmuls do: y
   * then differs from the f32 product by that rounding, about 0.5% of its scale. Its tile is 128
   * rows by 64 or 128 tokens ({@link matmulInt8TileTokens}), split over K ({@link matmulInt8Splits})
   * when the matrix alone would launch few workgroups. Needs WGSL's
   * `packed_4x8_integer_dot_product` ({@link supportsInt8MatMul}).
   * Default: {@link LinearKernelsOptions.int8MatMul}.
   */
  int8?: boolean;
  /** Int8 matmuls only: the parts K is split into (default: {@link matmulInt8Splits}'s). */
  kSplits?: number;
  /** Int8 matmuls only: tokens a workgroup (default: {@link matmulInt8TileTokens}'s; 128 needs 21 KiB of workgroup memory). */
  int8Tokens?: Int8TileTokens;
  /** The most tokens any call will multiply; x holds [tokens, xStride], y [tokens, yStride]. */
  tokens: number;
  /** Elements between consecutive tokens of x; a multiple of 4, at least cols (default cols). */
  xStride?: number;
  /** Elements between consecutive tokens of y; at least rows (default rows). */
  yStride?: number;
}

/** One weight of a {@link LinearKernels.bindMatVecMulti} binding. */
export interface MatVecPart {
  weight: GPUBuffer;
  type: GGMLType;
  rows: number;
  /** Split mode: where this product goes (distinct buffers, or non-overlapping ranges of one). */
  y?: GPUBuffer;
  yOffset?: number;
}

export interface MatVecMultiBinding {
  /**
   * 1 to 3 weights of `cols` columns, each in its own dtype, over the same x. Without `gelu`, each
   * part's y gets its own product (a layer's q, k, v in one dispatch); with `gelu`, exactly two parts
   * of equal rows (gate, up) and gelu.y[r] = gelu_tanh(gate·x)[r]·(up·x)[r] (the bits of a gate
   * matvec followed by an up matvec with the 'gelu-aux-times' epilogue).
   */
  parts: readonly MatVecPart[];
  cols: number;
  x: GPUBuffer;
  xOffset?: number;
  gelu?: { y: GPUBuffer; yOffset?: number };
  label?: string;
  /** Q4_K weights only: form the input from a residual stream (x at xOffset) in the kernel. */
  residual?: MatVecResidualInput;
}

/** The most weights one {@link LinearKernels.bindMatVecMulti} dispatch takes. */
export const MATVEC_MULTI_MAX = 3;

/** weights/common.wgsl + a dtype snippet with every name suffixed by `i` (weight → weight{i}, w_x → w{i}_x, W_X → W{i}_X, W8 → W8_{i}). */
function suffixedDecoders(i: number, snippet: ShaderPart): ShaderPart {
  const rename = (src: string) =>
    src.replace(/\bweight\b/g, `weight${i}`).replace(/\bw_(\w+)/g, `w${i}_$1`).replace(/\bW_(\w+)/g, `W${i}_$1`).replace(/\bW8\b/g, `W8_${i}`);
  return { name: `weights #${i} (${snippet.name})`, source: `${rename(WEIGHTS_COMMON.source)}\n${rename(snippet.source)}` };
}

/** The generated part of matvec_multi.forward.wgsl for weights of these dtypes (see the shader). */
function matvecMultiParts(types: readonly GGMLType[]): ShaderPart[] {
  const parts: ShaderPart[] = [];
  const lines: string[] = [];
  types.forEach((type, i) => {
    parts.push(suffixedDecoders(i, WEIGHT_SNIPPETS.get(type)!));
    lines.push(
      `@group(0) @binding(${5 + i}) var<storage, read> weight${i}: array<u32>;`,
      // Group k of row `row` of weight i, times x.
      `fn group_dot_${i}(row: u32, k: u32) -> f32 {`,
      `  let gpb = W${i}_BLOCK_VALUES / 8u;`,
      `  let row_byte = row * (params.cols / W${i}_BLOCK_VALUES) * W${i}_BLOCK_BYTES;`,
      `  let w = w${i}_decode8(row_byte + (k / gpb) * W${i}_BLOCK_BYTES, k % gpb);`,
      `  let xp = x_pair(k);`,
      `  return w.scale * (dot(w.q0, xp[0]) + dot(w.q1, xp[1])) + w.bias * dot(xp[0] + xp[1], vec4<f32>(1.0));`,
      `}`,
      // Two groups per step, so that their loads are in flight together.
      `fn row_dot_${i}(row: u32, lane: u32) -> f32 {`,
      `  let groups = params.cols / 8u;`,
      `  var a = 0.0;`,
      `  var b = 0.0;`,
      `  var k = lane;`,
      `  for (; k + LANES_PER_ROW < groups; k += 2u * LANES_PER_ROW) {`,
      `    a += group_dot_${i}(row, k);`,
      `    b += group_dot_${i}(row, k + LANES_PER_ROW);`,
      `  }`,
      `  if (k < groups) {`,
      `    a += group_dot_${i}(row, k);`,
      `  }`,
      `  return a + b;`,
      `}`,
    );
  });
  lines.push('fn row_dot(s: u32, row: u32, lane: u32) -> f32 {', '  switch (s) {');
  types.forEach((_, i) => lines.push(i === types.length - 1 ? `    default: { return row_dot_${i}(row, lane); }` : `    case ${i}u: { return row_dot_${i}(row, lane); }`));
  lines.push('  }', '}');
  // The GELU mode's two products of one row in one loop (weights 0 and 1), loads in flight together.
  if (types.length === 2) {
    lines.push(
      'fn row_dot_pair(row: u32, lane: u32) -> vec2<f32> {',
      '  let groups = params.cols / 8u;',
      '  var acc = vec2<f32>(0.0);',
      '  for (var k = lane; k < groups; k += LANES_PER_ROW) {',
      '    acc += vec2<f32>(group_dot_0(row, k), group_dot_1(row, k));',
      '  }',
      '  return acc;',
      '}',
    );
  } else {
    lines.push('fn row_dot_pair(row: u32, lane: u32) -> vec2<f32> {', '  return vec2<f32>(row_dot(0u, row, lane), 0.0);', '}');
  }
  parts.push({ name: 'matvec_multi generated', source: lines.join('\n') });
  return parts;
}

export interface LinearKernelsOptions {
  /** A pipeline cache to share with other ops on the same device (default: a private one). */
  pipelines?: PipelineCache;
  /**
   * Whether the matvecs may sum their lanes with subgroup operations (default: when the device was
   * opened with the 'subgroups' feature and a probe finds the layout they assume); false keeps the
   * shared-memory tree.
   */
  subgroups?: boolean;
  /** The default of {@link MatMulBinding.int8} (default false: f32 products). */
  int8MatMul?: boolean;
}

/**
 * Pipelines, bind group layouts and the token-count table for the linear kernels on one device.
 * Bindings (Dispatch objects) made from it stay valid until it is destroyed.
 */
export class LinearKernels {
  readonly pipelines: PipelineCache;
  private readonly matvecLayout: GPUBindGroupLayout;
  private readonly matmulLayout: GPUBindGroupLayout;
  private readonly matvecPipelineLayout: GPUPipelineLayout;
  private readonly matmulPipelineLayout: GPUPipelineLayout;
  /** The token counts a matmul binding selects with its dynamic offset. */
  private readonly counts: CountTable;
  /** Bound as `aux` by a matvec without an epilogue. */
  private readonly placeholder: GPUBuffer;
  /** Bound as the unused outputs of a multi matvec (writable bindings may not share a buffer). */
  private readonly placeholderOut: GPUBuffer[];
  private readonly multiLayouts = new Map<number, { group: GPUBindGroupLayout; pipeline: GPUPipelineLayout }>();
  private readonly q4kLayouts = new Map<number, Q4kLayout>();
  /** The split matmul's sum: its bind group layout and pipeline layout (made on first use). */
  private splitSumLayout: { group: GPUBindGroupLayout; pipeline: GPUPipelineLayout } | null = null;
  /** The split matmuls' partial products, shared by every binding (grown when one needs more). */
  private splitParts: GPUBuffer[] = [];
  /** The int8 matmuls' rounded x, shared likewise (each rounds its x just before it reads it). */
  private roundedX: GPUBuffer[] = [];
  /** round_q8's bind group layout and pipeline layout (made on first use). */
  private roundLayout: { group: GPUBindGroupLayout; pipeline: GPUPipelineLayout } | null = null;
  /** Whether the matvecs use subgroup sums (settled on first use). */
  private subgroupsReady: Promise<boolean> | null = null;
  private readonly wantSubgroups: boolean;
  /** A software device: every matvec row takes one thread (see {@link MATVEC_SHORT_MIN_ROWS}). */
  private readonly software: boolean;
  private readonly int8MatMul: boolean;

  constructor(readonly device: GPUDevice, options: LinearKernelsOptions = {}) {
    this.pipelines = options.pipelines ?? new PipelineCache(device);
    this.int8MatMul = options.int8MatMul ?? false;
    this.wantSubgroups = (options.subgroups ?? true) && device.features.has('subgroups' as GPUFeatureName);
    this.software = isSoftwareDevice(device);
    const storage = (binding: number, type: GPUBufferBindingType): GPUBindGroupLayoutEntry => ({
      binding,
      visibility: GPUShaderStage.COMPUTE,
      buffer: { type },
    });
    const common = [storage(0, 'read-only-storage'), storage(1, 'read-only-storage'), storage(2, 'storage'), storage(3, 'uniform')];
    this.matvecLayout = device.createBindGroupLayout({ label: 'matvec', entries: [...common, storage(4, 'read-only-storage')] });
    this.placeholder = device.createBuffer({ label: 'matvec aux placeholder', size: 16, usage: GPUBufferUsage.STORAGE });
    this.placeholderOut = [0, 1].map((i) => device.createBuffer({ label: `matvec output placeholder ${i}`, size: 16, usage: GPUBufferUsage.STORAGE }));
    this.matmulLayout = device.createBindGroupLayout({
      label: 'matmul',
      entries: [...common, countLayoutEntry(4)],
    });
    this.matvecPipelineLayout = device.createPipelineLayout({ label: 'matvec', bindGroupLayouts: [this.matvecLayout] });
    this.matmulPipelineLayout = device.createPipelineLayout({ label: 'matmul', bindGroupLayouts: [this.matmulLayout] });
    this.counts = new CountTable(device, 'linear token counts');
  }

  /** Compiles the pipelines for these dtypes ahead of binding (binding compiles on demand otherwise). */
  async prepare(types: readonly GGMLType[], ops: readonly ('matvec' | 'matmul' | 'matmul_narrow')[] = ['matvec', 'matmul', 'matmul_narrow']): Promise<void> {
    await Promise.all(types.flatMap((type) => ops.map((op) => this.pipeline(op, type))));
  }

  /** Whether this object's matvecs sum lanes with subgroups (probes the device once). */
  useSubgroups(): Promise<boolean> {
    this.subgroupsReady ??= this.wantSubgroups ? probeSubgroups(this.device) : Promise.resolve(false);
    return this.subgroupsReady;
  }

  /** The (cached) pipeline of an op for a dtype; rejects with ShaderCompileError if it does not compile. */
  async pipeline(op: 'matvec' | 'matvec_rows' | 'matmul' | 'matmul_narrow' | 'matmul_int8', type: GGMLType, constants?: Record<string, number>, int8Tokens: Int8TileTokens = 64): Promise<GPUComputePipeline> {
    const snippet = WEIGHT_SNIPPETS.get(type);
    if (!snippet) throw new RullamaError('unsupported', `linear layers over ${typeName(type)} weights are not supported`);
    if (op === 'matmul_int8') {
      const int8Snippet = INT8_SNIPPETS.get(type);
      if (!int8Snippet) throw new RullamaError('unsupported', `int8 matmuls over ${typeName(type)} weights are not supported`);
      try {
        return await this.pipelines.get({
          name: `${op}_t${int8Tokens}`, dtype: typeName(type), layout: this.matmulPipelineLayout,
          parts: [{ name: 'tile.wgsl', source: `const TILE_TOKENS: u32 = ${int8Tokens}u;` }, { name: 'matmul_int8.forward.wgsl', source: matmulInt8Source }, ...int8Snippet],
        });
      } catch (e) {
        // A WGSL without dot4I8Packed (packed_4x8_integer_dot_product) is the likely cause.
        throw new RullamaError('unsupported', `int8 matmuls do not compile on this GPU (they need WGSL's packed_4x8_integer_dot_product): ${(e as Error).message}`, { cause: e });
      }
    }
    const body: ShaderPart =
      op === 'matvec' ? { name: 'matvec.forward.wgsl', source: matvecSource }
      : op === 'matvec_rows' ? { name: 'matvec_rows.forward.wgsl', source: matvecRowsSource }
      : op === 'matmul_narrow' ? { name: 'matmul.forward.wgsl', source: matmulSource }
      : { name: 'matmul_wide.forward.wgsl', source: matmulWideSource };
    const sg = op === 'matvec' && (await this.useSubgroups());
    const isMatmul = op === 'matmul' || op === 'matmul_narrow';
    return this.pipelines.get({
      name: sg ? 'matvec_sg' : op,
      dtype: typeName(type),
      constants,
      parts: isMatmul ? [body, WEIGHTS_COMMON, snippet] : op === 'matvec' ? (sg ? [REDUCE_SG, MATVEC_BINDINGS, body, GELU, WEIGHTS_COMMON, snippet] : [MATVEC_BINDINGS, body, REDUCE, GELU, WEIGHTS_COMMON, snippet]) : [body, GELU, WEIGHTS_COMMON, snippet],
      layout: isMatmul ? this.matmulPipelineLayout : this.matvecPipelineLayout,
    });
  }

  /** The Q6_K matvec (matvec_q6k.forward.wgsl): the generic matvec's bindings and params, its own decoder. */
  private async q6kPipeline(lanes: number): Promise<GPUComputePipeline> {
    const sg = await this.useSubgroups();
    const body: ShaderPart = { name: 'matvec_q6k.forward.wgsl', source: matvecQ6kSource };
    return this.pipelines.get({
      name: sg ? 'matvec_q6k_sg' : 'matvec_q6k',
      dtype: 'Q6_K',
      constants: { LANES_PER_ROW: lanes },
      parts: [...(sg ? [REDUCE_SG, MATVEC_BINDINGS, body] : [MATVEC_BINDINGS, body, REDUCE]), GELU, WEIGHTS_COMMON],
      layout: this.matvecPipelineLayout,
    });
  }

  /** Binds y[yOffset + r] = Σ_c W[firstRow + r, c] · x[xOffset + c] for r < rows. */
  async bindMatVec(b: MatVecBinding): Promise<Dispatch> {
    const label = b.label ?? `matvec/${typeName(b.type)} ${b.rows}x${b.cols}`;
    const g = this.check(b, 1, b.cols, b.rows, label);
    const short = b.threadPerRow ?? (this.software || (b.cols <= MATVEC_SHORT_ROW && b.rows >= MATVEC_SHORT_MIN_ROWS));
    const epilogue = b.epilogue ?? 'none';
    const auxOffset = b.auxOffset ?? 0;
    if (epilogue !== 'none') {
      if (!b.aux) throw new RullamaError('bad-argument', `${label}: the ${epilogue} epilogue needs an aux buffer`);
      if (b.aux === b.y) throw new RullamaError('bad-argument', `${label}: aux must not be y`);
      if (!Number.isSafeInteger(auxOffset) || auxOffset < 0 || b.aux.size < 4 * (auxOffset + b.rows)) {
        throw new RullamaError('bad-argument', `${label}: aux has ${b.aux.size} bytes, ${4 * (auxOffset + b.rows)} are needed`);
      }
    }
    if (b.residual && b.type !== GGMLType.Q4_K) throw new RullamaError('unsupported', `${label}: only Q4_K matvecs form their input in the kernel, not ${typeName(b.type)}`);
    if ((!short || b.residual) && b.type === GGMLType.Q4_K) {
      return this.bindQ4k({
        label, cols: b.cols, x: b.x, xOffset: g.xOffset, firstRow: g.firstRow, parts: [{ weight: b.weight, rows: b.rows, y: b.y, yOffset: g.yOffset }],
        epilogue: EPILOGUES[epilogue], aux: epilogue === 'none' ? undefined : b.aux, auxOffset, residual: b.residual,
      });
    }
    const q6k = !short && b.type === GGMLType.Q6_K;
    const lanes = q6k ? q6kLanes(b.rows) : b.cols >= MATVEC_LONG_ROW ? 128 : 32;
    const constants: Record<string, number> = {};
    if (!short && lanes !== 32) constants.LANES_PER_ROW = lanes;
    const pipeline = q6k ? await this.q6kPipeline(lanes) : await this.pipeline(short ? 'matvec_rows' : 'matvec', b.type, constants);
    const params = uploadUniform(this.device, new Uint32Array([b.rows, b.cols, g.firstRow, g.xOffset, g.yOffset, auxOffset, EPILOGUES[epilogue]]), `${label} params`);
    const aux = epilogue === 'none' ? this.placeholder : b.aux!;
    const bindGroup = this.device.createBindGroup({
      label,
      layout: this.matvecLayout,
      entries: [b.weight, b.x, b.y, params, aux].map((buffer, binding) => ({ binding, resource: { buffer } })),
    });
    return this.oneTokenDispatch(label, pipeline, bindGroup, Math.ceil(b.rows / (short ? MATVEC_ROWS_WG_SIZE : MATVEC_WG / lanes)), params);
  }

  /**
   * Binds several matvecs over one x as one dispatch ({@link MatVecMultiBinding}): a layer's q/k/v,
   * or an MLP's gate/up with their GELU product.
   */
  async bindMatVecMulti(b: MatVecMultiBinding): Promise<Dispatch> {
    const n = b.parts.length;
    const label = b.label ?? `matvec_multi ${b.parts.map((p) => `${typeName(p.type)} ${p.rows}`).join(' + ')} x ${b.cols}`;
    const bad = (message: string): never => {
      throw new RullamaError('bad-argument', `${label}: ${message}`);
    };
    if (n < 1 || n > MATVEC_MULTI_MAX) bad(`takes 1 to ${MATVEC_MULTI_MAX} weights, not ${n}`);
    const gelu = b.gelu;
    if (gelu && (n !== 2 || b.parts[0]!.rows !== b.parts[1]!.rows)) bad('the gelu mode takes two weights (gate, up) of equal rows');
    const xOffset = b.xOffset ?? 0;
    const outs: { y: GPUBuffer; yOffset: number }[] = [];
    for (const [i, p] of b.parts.entries()) {
      const y = gelu ? gelu.y : p.y;
      if (!y) bad(`weight ${i} has no y`);
      const g = this.check({ weight: p.weight, type: p.type, rows: p.rows, cols: b.cols, x: b.x, xOffset, y: y!, yOffset: gelu ? gelu.yOffset : p.yOffset, label }, 1, b.cols, p.rows, label);
      if (y === b.x) bad('y must not be x');
      outs.push({ y: y!, yOffset: g.yOffset });
    }
    if (!gelu) {
      for (let i = 0; i < n; i++) {
        for (let j = i + 1; j < n; j++) {
          const [a, c] = [outs[i]!, outs[j]!];
          if (a.y === c.y) bad(`weights ${i} and ${j} write the same buffer; give each its own output buffer`);
        }
      }
    }
    const allQ4k = b.parts.every((p) => p.type === GGMLType.Q4_K);
    if (b.residual && !allQ4k) throw new RullamaError('unsupported', `${label}: only Q4_K matvecs form their input in the kernel`);
    if (allQ4k) {
      return this.bindQ4k({
        label, cols: b.cols, x: b.x, xOffset, firstRow: 0, gelu: gelu !== undefined, residual: b.residual,
        parts: b.parts.map((p, i) => ({ weight: p.weight, rows: p.rows, y: outs[i]!.y, yOffset: outs[i]!.yOffset })),
      });
    }
    const lanes = b.cols >= MATVEC_LONG_ROW ? 128 : 32;
    const rowsPerGroup = MATVEC_WG / lanes;
    const wgs = b.parts.map((p) => Math.ceil(p.rows / rowsPerGroup));
    const firstWg1 = gelu ? 2 ** 32 - 1 : n > 1 ? wgs[0]! : 2 ** 32 - 1;
    const firstWg2 = gelu ? 2 ** 32 - 1 : n > 2 ? wgs[0]! + wgs[1]! : 2 ** 32 - 1;
    const groups = gelu ? wgs[0]! : wgs.reduce((a, v) => a + v, 0);

    let layout = this.multiLayouts.get(n);
    if (!layout) {
      const entry = (binding: number, type: GPUBufferBindingType): GPUBindGroupLayoutEntry => ({ binding, visibility: GPUShaderStage.COMPUTE, buffer: { type } });
      const entries = [entry(0, 'read-only-storage'), entry(1, 'uniform'), entry(2, 'storage'), entry(3, 'storage'), entry(4, 'storage')];
      for (let i = 0; i < n; i++) entries.push(entry(5 + i, 'read-only-storage'));
      const group = this.device.createBindGroupLayout({ label: `matvec_multi ${n}`, entries });
      layout = { group, pipeline: this.device.createPipelineLayout({ label: `matvec_multi ${n}`, bindGroupLayouts: [group] }) };
      this.multiLayouts.set(n, layout);
    }
    const types = b.parts.map((p) => p.type);
    const sg = await this.useSubgroups();
    const body: ShaderPart = { name: 'matvec_multi.forward.wgsl', source: matvecMultiSource };
    const pipeline = await this.pipelines.get({
      name: sg ? 'matvec_multi_sg' : 'matvec_multi',
      dtype: types.map(typeName).join('+'),
      constants: { LANES_PER_ROW: lanes, MODE: gelu ? 1 : 0 },
      parts: sg ? [REDUCE_SG, body, ...matvecMultiParts(types)] : [body, REDUCE, ...matvecMultiParts(types)],
      layout: layout.pipeline,
    });
    const rows = [0, 1, 2].map((i) => b.parts[i]?.rows ?? 0);
    const yOffsets = [0, 1, 2].map((i) => (gelu ? (i === 0 ? outs[0]!.yOffset : 0) : (outs[i]?.yOffset ?? 0)));
    const params = uploadUniform(this.device, new Uint32Array([b.cols, xOffset, ...rows, ...yOffsets, firstWg1, firstWg2]), `${label} params`);
    const ys = gelu ? [gelu.y, ...this.placeholderOut] : [0, 1, 2].map((i) => outs[i]?.y ?? this.placeholderOut[i - 1]!);
    const bindGroup = this.device.createBindGroup({
      label,
      layout: layout.group,
      entries: [b.x, params, ...ys, ...b.parts.map((p) => p.weight)].map((buffer, binding) => ({ binding, resource: { buffer } })),
    });
    return this.oneTokenDispatch(label, pipeline, bindGroup, groups, params);
  }

  /**
   * The Q4_K matvec (matvec_q4k.forward.wgsl) for {@link bindMatVec} and {@link bindMatVecMulti}
   * over Q4_K weights: 1 to 3 weights over one x (each part its own y range), or with `gelu` two
   * (gate, up) whose GELU product goes to part 0's y; with `residual`, the input formed in the
   * kernel. The callers check the other arguments.
   */
  private async bindQ4k(b: {
    label: string; cols: number; x: GPUBuffer; xOffset: number; firstRow: number; gelu?: boolean;
    parts: { weight: GPUBuffer; rows: number; y: GPUBuffer; yOffset: number }[];
    epilogue?: number; aux?: GPUBuffer; auxOffset?: number; residual?: MatVecResidualInput;
  }): Promise<Dispatch> {
    const { label, parts, residual } = b;
    if (residual) {
      this.checkResidual(label, b.cols, parts.length, b.gelu === true, residual);
      // A buffer written here may not be bound a second time (WebGPU's aliasing rule).
      const written = [...parts.map((p) => p.y), ...(residual.out ? [residual.out.buffer] : [])];
      const read = [b.x, ...residual.terms.map((t) => t.a), residual.norms, ...(b.aux ? [b.aux] : [])];
      if (written.some((w) => read.includes(w)) || (residual.out && parts.some((p) => p.y === residual.out!.buffer))) {
        throw new RullamaError('bad-argument', `${label}: the outputs (y and the formed input's buffer) must differ from x, the terms, the norms and aux, and from each other`);
      }
    }
    const lanes = q4kFillLanes(b.cols, parts.map((p) => p.rows), b.gelu === true, residual !== undefined);
    const rowsPerGroup = MATVEC_WG / lanes;
    const wgs = parts.map((p) => Math.ceil(p.rows / rowsPerGroup));
    const none = 2 ** 32 - 1;
    const firstWg1 = !b.gelu && parts.length > 1 ? wgs[0]! : none;
    const firstWg2 = !b.gelu && parts.length > 2 ? wgs[0]! + wgs[1]! : none;
    const groups = b.gelu ? wgs[0]! : wgs.reduce((a, v) => a + v, 0);
    const layout = this.q4kLayout(residual !== undefined);
    const sg = await this.useSubgroups();
    const body: ShaderPart = { name: 'matvec_q4k.forward.wgsl', source: matvecQ4kSource };
    const constants: Record<string, number> = { LANES_PER_ROW: lanes, MODE: b.gelu ? 1 : 0 };
    if (residual) {
      Object.assign(constants, { TERMS: residual.terms.length, NORM: residual.norm === undefined ? 0 : 1, WRITE_INPUT: residual.out ? 1 : 0, INPUT_VEC4: b.cols / 4 });
    }
    const pipeline = await this.pipelines.get({
      name: `${sg ? 'matvec_q4k_sg' : 'matvec_q4k'}${residual ? '+input_norm' : ''}`,
      dtype: 'Q4_K',
      constants,
      parts: [...(sg ? [REDUCE_SG, body] : [body, REDUCE]), GELU, residual ? INPUT_NORM : INPUT],
      layout: layout.pipeline,
    });
    const rows = [0, 1, 2].map((i) => parts[i]?.rows ?? 0);
    const yOffsets = [0, 1, 2].map((i) => (i === 1 && residual?.out ? residual.out.offset ?? 0 : parts[i]?.yOffset ?? 0));
    const terms = residual?.terms ?? [];
    const words = new Uint32Array([
      b.cols, b.xOffset, b.firstRow, b.epilogue ?? 0, ...rows, b.auxOffset ?? 0, ...yOffsets, firstWg1, firstWg2,
      0, (terms[0]?.norm ?? 0) / 4, (terms[1]?.norm ?? 0) / 4, (residual?.norm ?? 0) / 4, 0,
    ]);
    const floats = new Float32Array(words.buffer);
    floats[13] = residual?.eps ?? 0;
    floats[17] = residual?.scale ?? 1;
    const params = uploadUniform(this.device, words, `${label} params`);
    const ys = b.gelu ? [parts[0]!.y, ...this.placeholderOut] : [0, 1, 2].map((i) => parts[i]?.y ?? this.placeholderOut[i - 1]!);
    if (residual?.out) ys[1] = residual.out.buffer;
    const weights = [0, 1, 2].map((i) => parts[i]?.weight ?? parts[0]!.weight);
    const extra = residual ? [terms[0]!.a, terms[1]?.a ?? terms[0]!.a, residual.norms] : [];
    // By binding number (Q4K_BINDINGS); the layout takes those it has.
    const buffers = [b.x, params, ...ys, b.aux ?? this.placeholder, ...weights, ...extra];
    const bindGroup = this.device.createBindGroup({
      label,
      layout: layout.group,
      entries: layout.bindings.map((binding) => ({ binding, resource: { buffer: buffers[binding]! } })),
    });
    return this.oneTokenDispatch(label, pipeline, bindGroup, groups, params);
  }

  /** The bind group layout of the Q4_K matvec: bindings 0–8, or (`residual`) 0–3, 5–7 and the input-forming 9–11. */
  private q4kLayout(residual: boolean): Q4kLayout {
    const key = residual ? 1 : 0;
    let layout = this.q4kLayouts.get(key);
    if (!layout) {
      const name = residual ? 'matvec_q4k+input_norm' : 'matvec_q4k';
      const bindings = residual ? Q4K_BINDINGS.residual : Q4K_BINDINGS.plain;
      const group = this.device.createBindGroupLayout({
        label: name,
        entries: bindings.map((binding) => ({ binding, visibility: GPUShaderStage.COMPUTE, buffer: { type: q4kBindingType(binding) } })),
      });
      layout = { bindings, group, pipeline: this.device.createPipelineLayout({ label: name, bindGroupLayouts: [group] }) };
      this.q4kLayouts.set(key, layout);
    }
    return layout;
  }

  /** Checks a {@link MatVecResidualInput} of a Q4_K matvec of `cols` columns over `weights` weights (a GELU pair or not). */
  private checkResidual(label: string, cols: number, weights: number, gelu: boolean, r: MatVecResidualInput): void {
    const bad = (message: string): never => {
      throw new RullamaError('bad-argument', `${label}: ${message}`);
    };
    if (weights > 2) bad(`a matvec that forms its input takes 1 or 2 weights, not ${weights}`);
    if (!supportsResidualInput(this.device, cols)) {
      throw new RullamaError('unsupported', `${label}: this device cannot form a ${cols}-value input inside the matvec (it needs ${RESIDUAL_INPUT_STORAGE_BUFFERS} storage buffers per shader stage and ${residualInputSharedBytes(cols)} bytes of shared memory)`);
    }
    if (r.terms.length < 1 || r.terms.length > 2) bad(`the residual input takes 1 or 2 terms, not ${r.terms.length}`);
    if (!(Number.isFinite(r.eps) && r.eps >= 0)) bad(`eps must be finite and ≥ 0, not ${r.eps}`);
    if (r.scale !== undefined && !Number.isFinite(r.scale)) bad(`scale must be finite, not ${r.scale}`);
    const offsets = [...r.terms.map((t) => t.norm), ...(r.norm === undefined ? [] : [r.norm])];
    for (const o of offsets) {
      if (!Number.isSafeInteger(o) || o < 0 || o % 4 !== 0) bad(`norm offsets must be non-negative multiples of 4, not ${o}`);
      if (r.norms.size < 4 * (o + cols)) bad(`norms has ${r.norms.size} bytes, ${4 * (o + cols)} are needed`);
    }
    for (const t of r.terms) if (t.a.size < 4 * cols) bad(`a residual term has ${t.a.size} bytes, ${4 * cols} are needed`);
    if (r.out) {
      if (weights !== 1 || gelu) bad('only a single-weight matvec can write its formed input');
      const offset = r.out.offset ?? 0;
      if (!Number.isSafeInteger(offset) || offset < 0 || r.out.buffer.size < 4 * (offset + cols)) bad(`the formed input's buffer is too small for offset ${offset}`);
    }
  }

  /** The Dispatch of a one-token binding: `groups` workgroups numbered x-fastest over a 2-D grid. */
  private oneTokenDispatch(label: string, pipeline: GPUComputePipeline, bindGroup: GPUBindGroup, groups: number, params: GPUBuffer): Dispatch {
    // Numbered over two dimensions, more than maxComputeWorkgroupsPerDimension fit.
    const gx = Math.min(groups, this.device.limits.maxComputeWorkgroupsPerDimension);
    const gy = Math.ceil(groups / gx);
    return {
      label,
      maxTokens: 1,
      encode(pass: GPUComputePassEncoder, tokens = 1): void {
        if (tokens === 0) return;
        if (tokens !== 1) throw new RullamaError('bad-argument', `${label}: a matvec multiplies 1 token, not ${tokens}`);
        pass.setPipeline(pipeline);
        pass.setBindGroup(0, bindGroup);
        pass.dispatchWorkgroups(gx, gy);
      },
      destroy(): void {
        params.destroy();
      },
    };
  }

  /**
   * Binds y[yOffset + t·yStride + r] = Σ_c W[firstRow + r, c] · x[xOffset + t·xStride + c] for
   * r < rows and t < the token count given to each encode (at most `tokens`).
   */
  async bindMatMul(b: MatMulBinding): Promise<Dispatch> {
    const label = b.label ?? `matmul/${typeName(b.type)} ${b.rows}x${b.cols}`;
    const maxTokens = b.tokens;
    if (!Number.isSafeInteger(maxTokens) || maxTokens < 1) throw new RullamaError('bad-argument', `${label}: tokens must be a positive integer, not ${maxTokens}`);
    const xStride = b.xStride ?? b.cols;
    const yStride = b.yStride ?? b.rows;
    if (!Number.isSafeInteger(xStride) || xStride < b.cols || xStride % 4 !== 0) {
      throw new RullamaError('bad-argument', `${label}: xStride ${xStride} must be a multiple of 4 and at least cols (${b.cols})`);
    }
    if (!Number.isSafeInteger(yStride) || yStride < b.rows) {
      throw new RullamaError('bad-argument', `${label}: yStride ${yStride} must be at least rows (${b.rows})`);
    }
    const g = this.check(b, maxTokens, xStride, yStride, label);
    const int8 = (b.int8 ?? this.int8MatMul) && INT8_SNIPPETS.has(b.type);
    // A split's parts ([splits][tokens][rows] f32) must fit one storage binding; by default a
    // matrix whose parts would not takes the narrow tile (int8: no split) instead.
    const maxPartsBytes = Math.min(this.device.limits.maxStorageBufferBindingSize, this.device.limits.maxBufferSize);
    if (b.int8Tokens !== undefined && b.int8Tokens !== 64 && b.int8Tokens !== 128) throw new RullamaError('bad-argument', `${label}: int8Tokens must be 64 or 128, not ${String(b.int8Tokens)}`);
    const int8Tokens = b.int8Tokens ?? matmulInt8TileTokens(b.rows, b.cols, maxTokens, this.device.limits.maxComputeWorkgroupStorageSize);
    const tokenTiles = Math.ceil(maxTokens / (int8 ? int8Tokens : MATMUL_TILE_TOKENS));
    if (b.kSplits !== undefined && !(Number.isSafeInteger(b.kSplits) && b.kSplits >= 1)) throw new RullamaError('bad-argument', `${label}: kSplits must be a positive integer, not ${b.kSplits}`);
    let split = int8 ? matmulInt8Splits(b.cols, Math.ceil(b.rows / MATMUL_TILE_ROWS) * tokenTiles, b.kSplits) : matmulSplits(b.cols);
    const partsFit = 4 * split.splits * maxTokens * b.rows <= maxPartsBytes;
    if (int8 && !partsFit) split = { splits: 1, kSplit: b.cols };
    const tile = int8 ? (split.splits > 1 ? 'split' : 'wide') : b.tile ?? (b.rows >= MATMUL_WIDE_ROWS ? 'wide' : b.cols >= MATMUL_SPLIT_COLS && !this.software && partsFit ? 'split' : 'narrow');
    if (tile !== 'wide' && tile !== 'narrow' && tile !== 'split') throw new RullamaError('bad-argument', `${label}: tile must be 'wide', 'narrow' or 'split', not ${String(tile)}`);
    if (tile === 'split' && !partsFit) {
      throw new RullamaError('bad-argument', `${label}: the K split's parts of ${maxTokens} tokens need ${4 * split.splits * maxTokens * b.rows} bytes, more than one storage binding holds on this device; use fewer tokens or another tile`);
    }
    const wide = tile !== 'narrow';
    const tileTokens = int8 ? int8Tokens : wide ? MATMUL_TILE_TOKENS : MATMUL_NARROW_TOKENS;
    const rowTiles = Math.ceil(b.rows / (wide ? MATMUL_TILE_ROWS : MATMUL_NARROW_ROWS));
    const maxGroups = this.device.limits.maxComputeWorkgroupsPerDimension;
    if (rowTiles > maxGroups || Math.ceil(maxTokens / tileTokens) > maxGroups || (tile === 'split' && maxTokens > maxGroups)) {
      throw new RullamaError('bad-argument', `${label}: ${b.rows} rows × ${maxTokens} tokens need more workgroups than one dispatch allows; split the rows`);
    }
    const { splits, kSplit } = tile === 'split' ? split : { splits: 1, kSplit: b.cols };
    // Split: the wide kernel writes its parts [splits][tokens][rows] to the shared parts buffer, the sum writes y.
    const splitStride = maxTokens * b.rows;
    const parts = tile === 'split' ? this.splitPartsFor(splits * splitStride) : null;
    const pipeline = await this.pipeline(int8 ? 'matmul_int8' : wide ? 'matmul' : 'matmul_narrow', b.type, undefined, int8Tokens);
    // Int8: x is rounded into the shared buffer first, which the matmul then reads from its start.
    const round = int8 ? await this.roundQ8(label, b.x, g.xOffset, xStride, b.cols, maxTokens) : null;
    const [xOffset, xStrideRead] = round ? [0, b.cols] : [g.xOffset, xStride];
    const params = uploadUniform(
      this.device,
      new Uint32Array(parts ? [b.rows, b.cols, g.firstRow, xOffset, xStrideRead, 0, b.rows, kSplit, splitStride] : [b.rows, b.cols, g.firstRow, xOffset, xStrideRead, g.yOffset, yStride, kSplit, 0]),
      `${label} params`,
    );
    const bindGroup = this.device.createBindGroup({
      label,
      layout: this.matmulLayout,
      entries: [
        ...[b.weight, round?.out ?? b.x, parts ?? b.y, params].map((buffer, binding) => ({ binding, resource: { buffer } })),
        this.counts.entry(4, maxTokens),
      ],
    });
    const sum = parts ? await this.splitSum(label, parts, b.y, { rows: b.rows, yOffset: g.yOffset, yStride, splits, splitStride, maxTokens }) : null;
    const counts = this.counts;
    const dynamicOffset = new Uint32Array(1); // reused: encode allocates nothing
    return {
      label,
      maxTokens,
      encode(pass: GPUComputePassEncoder, tokens = maxTokens): void {
        if (tokens === 0) return;
        if (!Number.isSafeInteger(tokens) || tokens < 0 || tokens > maxTokens) {
          throw new RullamaError('bad-argument', `${label}: token count ${tokens} is outside 0..${maxTokens}`);
        }
        dynamicOffset[0] = counts.offset(tokens);
        if (round) {
          pass.setPipeline(round.pipeline);
          pass.setBindGroup(0, round.bindGroup, dynamicOffset, 0, 1);
          pass.dispatchWorkgroups(round.groups, tokens);
        }
        pass.setPipeline(pipeline);
        pass.setBindGroup(0, bindGroup, dynamicOffset, 0, 1);
        pass.dispatchWorkgroups(rowTiles, Math.ceil(tokens / tileTokens), splits);
        if (sum) {
          pass.setPipeline(sum.pipeline);
          pass.setBindGroup(0, sum.bindGroup, dynamicOffset, 0, 1);
          pass.dispatchWorkgroups(Math.ceil(b.rows / SPLIT_SUM_WG), tokens);
        }
      },
      destroy(): void {
        params.destroy();
        sum?.params.destroy();
        round?.params.destroy();
      },
    };
  }

  /**
   * round_q8.forward.wgsl for an int8 matmul's x ([tokens][xStride] from xOffset, `cols` columns):
   * its pipeline, bind group and params, writing the shared rounded-x buffer (48 bytes a block).
   */
  private async roundQ8(
    label: string, x: GPUBuffer, xOffset: number, xStride: number, cols: number, maxTokens: number,
  ): Promise<{ pipeline: GPUComputePipeline; bindGroup: GPUBindGroup; params: GPUBuffer; out: GPUBuffer; groups: number }> {
    if (!this.roundLayout) {
      const entry = (binding: number, type: GPUBufferBindingType): GPUBindGroupLayoutEntry => ({ binding, visibility: GPUShaderStage.COMPUTE, buffer: { type } });
      const group = this.device.createBindGroupLayout({ label: 'round_q8', entries: [entry(0, 'read-only-storage'), entry(1, 'storage'), entry(2, 'uniform'), countLayoutEntry(3)] });
      this.roundLayout = { group, pipeline: this.device.createPipelineLayout({ label: 'round_q8', bindGroupLayouts: [group] }) };
    }
    let pipeline: GPUComputePipeline;
    try {
      pipeline = await this.pipelines.get({ name: 'round_q8', parts: [{ name: 'round_q8.forward.wgsl', source: roundQ8Source }], layout: this.roundLayout.pipeline });
    } catch (e) {
      throw new RullamaError('unsupported', `int8 matmuls do not compile on this GPU (they need WGSL's packed_4x8_integer_dot_product): ${(e as Error).message}`, { cause: e });
    }
    const bytes = maxTokens * (cols / 32) * ROUNDED_BLOCK_BYTES;
    let out = this.roundedX.at(-1);
    if (!out || out.size < bytes) {
      // Bindings made before keep the smaller buffer (they need no more); later ones share this one.
      out = this.device.createBuffer({ label: 'int8 matmul rounded x', size: bytes, usage: GPUBufferUsage.STORAGE });
      this.roundedX.push(out);
    }
    const params = uploadUniform(this.device, new Uint32Array([cols, xOffset, xStride]), `${label} round params`);
    const bindGroup = this.device.createBindGroup({
      label: `${label} round`,
      layout: this.roundLayout.group,
      entries: [...[x, out, params].map((buffer, binding) => ({ binding, resource: { buffer } })), this.counts.entry(3, maxTokens)],
    });
    return { pipeline, bindGroup, params, out, groups: Math.ceil(cols / 32 / ROUND_WG) };
  }

  /** A parts buffer of at least `floats` values for a split matmul: the shared one, grown if needed. */
  private splitPartsFor(floats: number): GPUBuffer {
    const last = this.splitParts.at(-1);
    if (last && last.size >= 4 * floats) return last;
    // Bindings made before keep the smaller buffer (they need no more); later ones share this one.
    const buffer = this.device.createBuffer({ label: 'matmul split parts', size: Math.ceil((4 * floats) / 16) * 16, usage: GPUBufferUsage.STORAGE });
    this.splitParts.push(buffer);
    return buffer;
  }

  /** The sum dispatch's pipeline, bind group and params for a split matmul writing y. */
  private async splitSum(
    label: string, parts: GPUBuffer, y: GPUBuffer,
    o: { rows: number; yOffset: number; yStride: number; splits: number; splitStride: number; maxTokens: number },
  ): Promise<{ pipeline: GPUComputePipeline; bindGroup: GPUBindGroup; params: GPUBuffer }> {
    if (!this.splitSumLayout) {
      const entry = (binding: number, type: GPUBufferBindingType): GPUBindGroupLayoutEntry => ({ binding, visibility: GPUShaderStage.COMPUTE, buffer: { type } });
      const group = this.device.createBindGroupLayout({ label: 'matmul_split_sum', entries: [entry(0, 'read-only-storage'), entry(1, 'storage'), entry(2, 'uniform'), countLayoutEntry(3)] });
      this.splitSumLayout = { group, pipeline: this.device.createPipelineLayout({ label: 'matmul_split_sum', bindGroupLayouts: [group] }) };
    }
    const pipeline = await this.pipelines.get({
      name: 'matmul_split_sum',
      parts: [{ name: 'matmul_split_sum.forward.wgsl', source: matmulSplitSumSource }],
      layout: this.splitSumLayout.pipeline,
    });
    const params = uploadUniform(this.device, new Uint32Array([o.rows, o.yOffset, o.yStride, o.splits, o.splitStride]), `${label} sum params`);
    const bindGroup = this.device.createBindGroup({
      label: `${label} sum`,
      layout: this.splitSumLayout.group,
      entries: [
        ...[parts, y, params].map((buffer, binding) => ({ binding, resource: { buffer } })),
        this.counts.entry(3, o.maxTokens),
      ],
    });
    return { pipeline, bindGroup, params };
  }

  /** GPU bytes of the buffers these kernels own: the split matmuls' parts (every size still bound). */
  get bytes(): number {
    return [...this.splitParts, ...this.roundedX].reduce((n, b) => n + b.size, 0);
  }

  /** Frees the token-count tables. Bindings made from this object stop working. */
  destroy(): void {
    this.counts.destroy();
    this.placeholder.destroy();
    for (const b of [...this.splitParts, ...this.roundedX]) b.destroy();
    for (const b of this.placeholderOut) b.destroy();
  }

  /** Validates a binding's shape, offsets and buffer sizes; returns the defaulted offsets. */
  private check(b: MatVecBinding, tokens: number, xStride: number, yStride: number, label: string): { firstRow: number; xOffset: number; yOffset: number } {
    const info = GGML_TYPES.get(b.type);
    if (!info || !isLinearType(b.type)) throw new RullamaError('unsupported', `${label}: linear layers over ${typeName(b.type)} weights are not supported`);
    const bad = (message: string): never => {
      throw new RullamaError('bad-argument', `${label}: ${message}`);
    };
    const firstRow = b.firstRow ?? 0;
    const xOffset = b.xOffset ?? 0;
    const yOffset = b.yOffset ?? 0;
    if (!Number.isSafeInteger(b.rows) || b.rows < 1) bad(`rows must be a positive integer, not ${b.rows}`);
    const multiple = Math.max(COL_MULTIPLE, info.blockSize);
    if (!Number.isSafeInteger(b.cols) || b.cols < 1 || b.cols % multiple !== 0) bad(`cols must be a positive multiple of ${multiple} for ${info.name}, not ${b.cols}`);
    for (const [name, v] of [['firstRow', firstRow], ['xOffset', xOffset], ['yOffset', yOffset]] as const) {
      if (!Number.isSafeInteger(v) || v < 0) bad(`${name} must be a non-negative integer, not ${v}`);
    }
    if (xOffset % 4 !== 0) bad(`xOffset must be a multiple of 4, not ${xOffset}`);
    const weightBytes = (firstRow + b.rows) * weightRowBytes(b.type, b.cols);
    if (b.weight.size < weightBytes) bad(`the weight buffer has ${b.weight.size} bytes, rows ${firstRow}..${firstRow + b.rows} of ${info.name} need ${weightBytes}`);
    if (weightBytes > 2 ** 32 - 4) bad(`rows up to ${firstRow + b.rows} span ${weightBytes} bytes, past 32-bit addressing; split the weight into row tiles`);
    const xNeed = 4 * (xOffset + (tokens - 1) * xStride + b.cols);
    if (b.x.size < xNeed) bad(`x has ${b.x.size} bytes, ${xNeed} are needed`);
    const yNeed = 4 * (yOffset + (tokens - 1) * yStride + b.rows);
    if (b.y.size < yNeed) bad(`y has ${b.y.size} bytes, ${yNeed} are needed`);
    for (const [name, buffer] of [['weight', b.weight], ['x', b.x], ['y', b.y]] as const) {
      if ((buffer.usage & GPUBufferUsage.STORAGE) === 0) bad(`the ${name} buffer lacks STORAGE usage`);
    }
    return { firstRow, xOffset, yOffset };
  }
}
