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
 * Shaders: src/wgsl/{matvec,matmul}.forward.wgsl + src/wgsl/weights/common.wgsl + one
 * src/wgsl/weights/<dtype>.wgsl, concatenated per (op, dtype) and compiled once (PipelineCache).
 */
import matmulSource from '../../wgsl/matmul.forward.wgsl';
import matvecSource from '../../wgsl/matvec.forward.wgsl';
import matvecRowsSource from '../../wgsl/matvec_rows.forward.wgsl';
import geluSource from '../../wgsl/gelu.wgsl';
import { RullamaError } from '../errors.js';
import { GGML_TYPES, type GGMLType, typeName } from '../gguf/types.js';
import { uploadStorage, uploadUniform } from './buffers.js';
import { PipelineCache, type ShaderPart } from './pipelines.js';
import { CountTable, countLayoutEntry } from './token-counts.js';
import { WEIGHT_SNIPPETS, WEIGHTS_COMMON, wgslConst } from './weight-snippets.js';

/** Weight dtypes the linear kernels handle. */
export const LINEAR_TYPES: readonly GGMLType[] = [...WEIGHT_SNIPPETS.keys()];

/** Rows per matvec workgroup. */
export const MATVEC_ROWS_PER_WORKGROUP = wgslConst(matvecSource, 'ROWS_PER_WG');
/** Rows per workgroup of the one-thread-per-row matvec used for short rows. */
export const MATVEC_ROWS_WG_SIZE = wgslConst(matvecRowsSource, 'WG_SIZE');
/** Rows of at most this many values go to the one-thread-per-row matvec. */
export const MATVEC_SHORT_ROW = 256;
/** Rows of at least this many values get 128 threads each instead of 32 (and 2 rows per workgroup). */
export const MATVEC_LONG_ROW = 4096;
const MATVEC_WG = 256;
const GELU: ShaderPart = { name: 'gelu.wgsl', source: geluSource };

/** What a matvec does with each output: nothing, or a GELU product with a second vector (`aux`). */
export type MatVecEpilogue = 'none' | 'gelu-aux-times' | 'gelu-times-aux';
const EPILOGUES: Record<MatVecEpilogue, number> = { none: 0, 'gelu-aux-times': 1, 'gelu-times-aux': 2 };
/** Rows × tokens of y per matmul workgroup. */
export const MATMUL_TILE_ROWS = wgslConst(matmulSource, 'TILE_ROWS');
export const MATMUL_TILE_TOKENS = wgslConst(matmulSource, 'TILE_TOKENS');

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
}

export interface MatMulBinding extends MatVecBinding {
  /** The most tokens any call will multiply; x holds [tokens, xStride], y [tokens, yStride]. */
  tokens: number;
  /** Elements between consecutive tokens of x; a multiple of 4, at least cols (default cols). */
  xStride?: number;
  /** Elements between consecutive tokens of y; at least rows (default rows). */
  yStride?: number;
}

export interface LinearKernelsOptions {
  /** A pipeline cache to share with other ops on the same device (default: a private one). */
  pipelines?: PipelineCache;
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

  constructor(readonly device: GPUDevice, options: LinearKernelsOptions = {}) {
    this.pipelines = options.pipelines ?? new PipelineCache(device);
    const storage = (binding: number, type: GPUBufferBindingType): GPUBindGroupLayoutEntry => ({
      binding,
      visibility: GPUShaderStage.COMPUTE,
      buffer: { type },
    });
    const common = [storage(0, 'read-only-storage'), storage(1, 'read-only-storage'), storage(2, 'storage'), storage(3, 'uniform')];
    this.matvecLayout = device.createBindGroupLayout({ label: 'matvec', entries: [...common, storage(4, 'read-only-storage')] });
    this.placeholder = device.createBuffer({ label: 'matvec aux placeholder', size: 16, usage: GPUBufferUsage.STORAGE });
    this.matmulLayout = device.createBindGroupLayout({
      label: 'matmul',
      entries: [...common, countLayoutEntry(4)],
    });
    this.matvecPipelineLayout = device.createPipelineLayout({ label: 'matvec', bindGroupLayouts: [this.matvecLayout] });
    this.matmulPipelineLayout = device.createPipelineLayout({ label: 'matmul', bindGroupLayouts: [this.matmulLayout] });
    this.counts = new CountTable(device, 'linear token counts');
  }

  /** Compiles the pipelines for these dtypes ahead of binding (binding compiles on demand otherwise). */
  async prepare(types: readonly GGMLType[], ops: readonly ('matvec' | 'matmul')[] = ['matvec', 'matmul']): Promise<void> {
    await Promise.all(types.flatMap((type) => ops.map((op) => this.pipeline(op, type))));
  }

  /** The (cached) pipeline of an op for a dtype; rejects with ShaderCompileError if it does not compile. */
  pipeline(op: 'matvec' | 'matvec_rows' | 'matmul', type: GGMLType, constants?: Record<string, number>): Promise<GPUComputePipeline> {
    const snippet = WEIGHT_SNIPPETS.get(type);
    if (!snippet) return Promise.reject(new RullamaError('unsupported', `linear layers over ${typeName(type)} weights are not supported`));
    const body: ShaderPart =
      op === 'matvec' ? { name: 'matvec.forward.wgsl', source: matvecSource }
      : op === 'matvec_rows' ? { name: 'matvec_rows.forward.wgsl', source: matvecRowsSource }
      : { name: 'matmul.forward.wgsl', source: matmulSource };
    return this.pipelines.get({
      name: op,
      dtype: typeName(type),
      constants,
      parts: op === 'matmul' ? [body, WEIGHTS_COMMON, snippet] : [body, GELU, WEIGHTS_COMMON, snippet],
      layout: op === 'matmul' ? this.matmulPipelineLayout : this.matvecPipelineLayout,
    });
  }

  /** Binds y[yOffset + r] = Σ_c W[firstRow + r, c] · x[xOffset + c] for r < rows. */
  async bindMatVec(b: MatVecBinding): Promise<Dispatch> {
    const label = b.label ?? `matvec/${typeName(b.type)} ${b.rows}x${b.cols}`;
    const g = this.check(b, 1, b.cols, b.rows, label);
    const short = b.cols <= MATVEC_SHORT_ROW;
    const lanes = b.cols >= MATVEC_LONG_ROW ? 128 : 32;
    const epilogue = b.epilogue ?? 'none';
    const auxOffset = b.auxOffset ?? 0;
    if (epilogue !== 'none') {
      if (!b.aux) throw new RullamaError('bad-argument', `${label}: the ${epilogue} epilogue needs an aux buffer`);
      if (b.aux === b.y) throw new RullamaError('bad-argument', `${label}: aux must not be y`);
      if (!Number.isSafeInteger(auxOffset) || auxOffset < 0 || b.aux.size < 4 * (auxOffset + b.rows)) {
        throw new RullamaError('bad-argument', `${label}: aux has ${b.aux.size} bytes, ${4 * (auxOffset + b.rows)} are needed`);
      }
    }
    const constants: Record<string, number> = {};
    if (!short && lanes !== 32) constants.LANES_PER_ROW = lanes;
    const pipeline = await this.pipeline(short ? 'matvec_rows' : 'matvec', b.type, constants);
    const params = uploadUniform(this.device, new Uint32Array([b.rows, b.cols, g.firstRow, g.xOffset, g.yOffset, auxOffset, EPILOGUES[epilogue]]), `${label} params`);
    const aux = epilogue === 'none' ? this.placeholder : b.aux!;
    const bindGroup = this.device.createBindGroup({
      label,
      layout: this.matvecLayout,
      entries: [b.weight, b.x, b.y, params, aux].map((buffer, binding) => ({ binding, resource: { buffer } })),
    });
    // Workgroups are numbered x-fastest over a 2-D grid, so more than maxComputeWorkgroupsPerDimension fit.
    const groups = Math.ceil(b.rows / (short ? MATVEC_ROWS_WG_SIZE : MATVEC_WG / lanes));
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
    const rowTiles = Math.ceil(b.rows / MATMUL_TILE_ROWS);
    const maxGroups = this.device.limits.maxComputeWorkgroupsPerDimension;
    if (rowTiles > maxGroups || Math.ceil(maxTokens / MATMUL_TILE_TOKENS) > maxGroups) {
      throw new RullamaError('bad-argument', `${label}: ${b.rows} rows × ${maxTokens} tokens need more workgroups than one dispatch allows; split the rows`);
    }
    const pipeline = await this.pipeline('matmul', b.type);
    const params = uploadUniform(this.device, new Uint32Array([b.rows, b.cols, g.firstRow, g.xOffset, xStride, g.yOffset, yStride]), `${label} params`);
    const bindGroup = this.device.createBindGroup({
      label,
      layout: this.matmulLayout,
      entries: [
        ...[b.weight, b.x, b.y, params].map((buffer, binding) => ({ binding, resource: { buffer } })),
        this.counts.entry(4, maxTokens),
      ],
    });
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
        pass.setPipeline(pipeline);
        pass.setBindGroup(0, bindGroup, dynamicOffset, 0, 1);
        pass.dispatchWorkgroups(rowTiles, Math.ceil(tokens / MATMUL_TILE_TOKENS));
      },
      destroy(): void {
        params.destroy();
      },
    };
  }

  /** Frees the token-count tables. Bindings made from this object stop working. */
  destroy(): void {
    this.counts.destroy();
    this.placeholder.destroy();
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
