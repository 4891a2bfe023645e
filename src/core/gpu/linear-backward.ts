/**
 * Backward kernels of the linear layers for LoRA training on the GPU, each the adjoint of a
 * forward kernel of linear.ts:
 *
 *   matmul_backward  dx (+)= Wᵀ·dy for a block of tokens through a frozen weight kept in its GGUF
 *                    bytes (every dtype of {@link LINEAR_TYPES}, dequantised on the fly with the
 *                    same weights/<dtype>.wgsl snippets as the forward), per row tile
 *   gemm_f32         C (+)= α·A·B over strided f32 matrices: every product of LoRA training (A·x,
 *                    s·dy·B, the outer products dyᵀ·t and dtᵀ·x summed over tokens, dt·A)
 *
 * and {@link LinearBackwardKernels.bindLoraBackward}, which chains gemm_f32 dispatches into the
 * whole backward of y = W·x + s·B·(A·x) with respect to A, B and x.
 *
 * Usage is that of {@link LinearKernels}: bind once (uniforms, bind groups and the shared pipeline
 * are made then), then {@link Dispatch.encode} each step inside the caller's compute pass with the
 * step's token count, selected by a dynamic offset into a table of counts: nothing is allocated or
 * written per call. Dispatches recorded in order in one pass see each other's writes, so the
 * gradients of several branches accumulate into one dx by encoding them one after another.
 *
 * Shaders: src/wgsl/matmul.backward.wgsl (+ weights/common.wgsl + weights/<dtype>.wgsl) and
 * src/wgsl/gemm_f32.wgsl, compiled once per device (PipelineCache).
 */
import gemmSource from '../../wgsl/gemm_f32.wgsl';
import matmulBackwardSource from '../../wgsl/matmul.backward.wgsl';
import { RullamaError } from '../errors.js';
import { GGML_TYPES, type GGMLType, typeName } from '../gguf/types.js';
import { uploadUniform } from './buffers.js';
import { isLinearType, LINEAR_TYPES, weightRowBytes, type Dispatch } from './linear.js';
import { PipelineCache, type ShaderPart } from './pipelines.js';
import { CountTable, countLayoutEntry } from './token-counts.js';
import { WEIGHT_SNIPPETS, WEIGHTS_COMMON, wgslConst } from './weight-snippets.js';

export type { Dispatch } from './linear.js';

/** Columns of dx per matmul_backward workgroup: the dispatch grid follows from it (read from the WGSL). */
export const MATMUL_BACKWARD_TILE_COLS = wgslConst(matmulBackwardSource, 'TILE_COLS');
/** Tokens of dx per matmul_backward workgroup. */
export const MATMUL_BACKWARD_TILE_TOKENS = wgslConst(matmulBackwardSource, 'TILE_TOKENS');
/** Rows of C per gemm_f32 workgroup: the dispatch grid follows from it (read from the WGSL). */
export const GEMM_TILE_M = wgslConst(gemmSource, 'TILE_M');
/** Columns of C per gemm_f32 workgroup. */
export const GEMM_TILE_N = wgslConst(gemmSource, 'TILE_N');

const MATMUL_BACKWARD: ShaderPart = { name: 'matmul.backward.wgsl', source: matmulBackwardSource };
const GEMM: ShaderPart = { name: 'gemm_f32.wgsl', source: gemmSource };
const COL_MULTIPLE = 32;

/** The input gradient through one frozen weight (or one row tile of it), for a block of tokens. */
export interface MatMulBackwardBinding {
  /** The weight bytes (from uploadWeight), or one row tile of them. */
  weight: GPUBuffer;
  type: GGMLType;
  /** Rows of W (forward outputs) this binding sums over. */
  rows: number;
  /** Values per row (forward inputs, dx's width); a multiple of 32 and of the dtype's block size. */
  cols: number;
  /** Row of `weight` that dy's row 0 belongs to (default 0). */
  firstRow?: number;
  /** f32 [T][dyStride]: the gradient of the forward output; token t's row 0 at dy[dyOffset + t·dyStride]. */
  dy: GPUBuffer;
  dyOffset?: number;
  /** Default rows. */
  dyStride?: number;
  /** f32 [T][dxStride]: the gradient of the forward input. */
  dx: GPUBuffer;
  dxOffset?: number;
  /** Default cols. */
  dxStride?: number;
  /** The most tokens any encode passes. */
  tokens: number;
  /** dx += Wᵀ·dy instead of dx = Wᵀ·dy (residual streams, every row tile after the first). */
  accumulate?: boolean;
  label?: string;
}

/**
 * An f32 product C(i,j) (+)= α·Σ_k A(i,k)·B(k,j) with each operand addressed by an element offset
 * and one stride per index, so that transposes cost nothing. One of M or K may be the token count
 * of each encode (`countDim`), the other sizes are fixed.
 */
export interface GemmBinding {
  m: number;
  n: number;
  k: number;
  /** 'm': M is the encode's token count (m is its maximum); 'k': K is; 'none': neither (default). */
  countDim?: 'm' | 'k' | 'none';
  a: GPUBuffer;
  aOffset?: number;
  /** Element strides of A along i and along k. */
  aStrides: readonly [number, number];
  b: GPUBuffer;
  bOffset?: number;
  /** Element strides of B along k and along j. */
  bStrides: readonly [number, number];
  c: GPUBuffer;
  cOffset?: number;
  /** Element strides of C along i and along j. */
  cStrides: readonly [number, number];
  /** Default 1. */
  alpha?: number;
  /** C += … instead of C = … */
  accumulate?: boolean;
  label?: string;
}

/** One f32 token-major activation: token t's values at buffer[offset + t·stride]. */
export interface TokenRows {
  buffer: GPUBuffer;
  offset?: number;
  /** Default: the width of the operand. */
  stride?: number;
}

/**
 * The backward of one LoRA-adapted linear layer y = W·x + s·B·(A·x), A [rank][inFeatures],
 * B [outFeatures][rank], f32 row-major. The frozen W's own dx (matmul_backward) is bound
 * separately (it depends on the weight's dtype and row tiles).
 */
export interface LoraBackwardBinding {
  rank: number;
  inFeatures: number;
  outFeatures: number;
  /** s (alpha / rank). */
  scale: number;
  /** The most tokens any encode passes. */
  tokens: number;
  /** A and B (read), at element offsets into their buffers (a flat parameter buffer may hold many). */
  a: GPUBuffer;
  aOffset?: number;
  b: GPUBuffer;
  bOffset?: number;
  /** dA and dB (accumulated: += over tokens and over calls; zero them before a batch). */
  da: GPUBuffer;
  daOffset?: number;
  db: GPUBuffer;
  dbOffset?: number;
  /** The layer's input [T][inFeatures] and output gradient [T][outFeatures]. */
  x: TokenRows;
  dy: TokenRows;
  /** Scratch f32 [T][rank] for t = A·x and dt = s·Bᵀ·dy (two distinct buffers, or offsets into one). */
  t: TokenRows;
  dt: TokenRows;
  /** The input gradient: dx += Aᵀ·dt (omit to skip, e.g. for a layer whose input needs none). */
  dx?: TokenRows;
  /** Recompute t = A·x in the backward (default true); false when the forward left it in `t`. */
  recomputeT?: boolean;
  label?: string;
}

/** Shares compiled pipelines with the forward kernels of the same device. */
export interface LinearBackwardKernelsOptions {
  /** A pipeline cache to share with other ops on the same device (default: a private one). */
  pipelines?: PipelineCache;
}

/**
 * Pipelines, layouts and the token-count table of the linear backward kernels on one device; the
 * Dispatch objects bound from it stay valid until it is destroyed.
 */
export class LinearBackwardKernels {
  readonly pipelines: PipelineCache;
  private readonly layout: GPUBindGroupLayout;
  private readonly pipelineLayout: GPUPipelineLayout;
  private readonly counts: CountTable;

  constructor(readonly device: GPUDevice, options: LinearBackwardKernelsOptions = {}) {
    this.pipelines = options.pipelines ?? new PipelineCache(device);
    const storage = (binding: number, type: GPUBufferBindingType): GPUBindGroupLayoutEntry => ({ binding, visibility: GPUShaderStage.COMPUTE, buffer: { type } });
    // Both kernels take (read, read, read_write, params, count): one layout serves them.
    this.layout = device.createBindGroupLayout({
      label: 'linear backward',
      entries: [storage(0, 'read-only-storage'), storage(1, 'read-only-storage'), storage(2, 'storage'), storage(3, 'uniform'), countLayoutEntry(4)],
    });
    this.pipelineLayout = device.createPipelineLayout({ label: 'linear backward', bindGroupLayouts: [this.layout] });
    this.counts = new CountTable(device, 'linear backward token counts');
  }

  /** Compiles pipelines ahead of binding, so the first training step does not wait for them. */
  async prepare(types: readonly GGMLType[] = LINEAR_TYPES): Promise<void> {
    await Promise.all([...types.map((t) => this.pipeline(t)), this.gemmPipeline()]);
  }

  /** The matmul_backward pipeline for a dtype (cached); rejects with ShaderCompileError if it does not compile. */
  pipeline(type: GGMLType): Promise<GPUComputePipeline> {
    const snippet = WEIGHT_SNIPPETS.get(type);
    if (!snippet) return Promise.reject(new RullamaError('unsupported', `linear backward over ${typeName(type)} weights is not supported`));
    return this.pipelines.get({ name: 'matmul_backward', dtype: typeName(type), parts: [MATMUL_BACKWARD, WEIGHTS_COMMON, snippet], layout: this.pipelineLayout });
  }

  /** The gemm_f32 pipeline (cached). */
  gemmPipeline(): Promise<GPUComputePipeline> {
    return this.pipelines.get({ name: 'gemm_f32', parts: [GEMM], layout: this.pipelineLayout });
  }

  /**
   * Binds dx[dxOffset + t·dxStride + c] (+)= Σ_r W[firstRow + r, c]·dy[dyOffset + t·dyStride + r]
   * for c < cols and t < each encode's token count. The gradient flows back through a frozen
   * weight without ever materialising it in f32; a weight split into row tiles gets one binding per
   * tile, all but the first (or all, into a dx that already holds other branches) accumulating.
   */
  async bindMatMulBackward(b: MatMulBackwardBinding): Promise<Dispatch> {
    const label = b.label ?? `matmul_backward/${typeName(b.type)} ${b.rows}x${b.cols}`;
    const bad = (message: string): never => {
      throw new RullamaError('bad-argument', `${label}: ${message}`);
    };
    const info = GGML_TYPES.get(b.type);
    if (!info || !isLinearType(b.type)) throw new RullamaError('unsupported', `${label}: linear backward over ${typeName(b.type)} weights is not supported`);
    const maxTokens = b.tokens;
    if (!Number.isSafeInteger(maxTokens) || maxTokens < 1) bad(`tokens must be a positive integer, not ${maxTokens}`);
    if (!Number.isSafeInteger(b.rows) || b.rows < 1) bad(`rows must be a positive integer, not ${b.rows}`);
    const multiple = Math.max(COL_MULTIPLE, info.blockSize);
    if (!Number.isSafeInteger(b.cols) || b.cols < 1 || b.cols % multiple !== 0) bad(`cols must be a positive multiple of ${multiple} for ${info.name}, not ${b.cols}`);
    const firstRow = b.firstRow ?? 0;
    const dyOffset = b.dyOffset ?? 0;
    const dyStride = b.dyStride ?? b.rows;
    const dxOffset = b.dxOffset ?? 0;
    const dxStride = b.dxStride ?? b.cols;
    for (const [name, v] of [['firstRow', firstRow], ['dyOffset', dyOffset], ['dxOffset', dxOffset]] as const) {
      if (!Number.isSafeInteger(v) || v < 0) bad(`${name} must be a non-negative integer, not ${v}`);
    }
    if (!Number.isSafeInteger(dyStride) || dyStride < b.rows) bad(`dyStride ${dyStride} must be at least rows (${b.rows})`);
    if (!Number.isSafeInteger(dxStride) || dxStride < b.cols) bad(`dxStride ${dxStride} must be at least cols (${b.cols})`);
    const weightBytes = (firstRow + b.rows) * weightRowBytes(b.type, b.cols);
    if (b.weight.size < weightBytes) bad(`the weight buffer has ${b.weight.size} bytes, rows ${firstRow}..${firstRow + b.rows} of ${info.name} need ${weightBytes}`);
    if (weightBytes > 2 ** 32 - 4) bad(`rows up to ${firstRow + b.rows} span ${weightBytes} bytes, past 32-bit addressing; split the weight into row tiles`);
    checkSpan(label, 'dy', b.dy, dyOffset + (maxTokens - 1) * dyStride + b.rows);
    checkSpan(label, 'dx', b.dx, dxOffset + (maxTokens - 1) * dxStride + b.cols);
    if ((b.weight.usage & GPUBufferUsage.STORAGE) === 0) bad('the weight buffer lacks STORAGE usage');
    if (b.dx === b.dy) bad('dx must not be dy');
    const colTiles = Math.ceil(b.cols / MATMUL_BACKWARD_TILE_COLS);
    const maxGroups = this.device.limits.maxComputeWorkgroupsPerDimension;
    if (colTiles > maxGroups || Math.ceil(maxTokens / MATMUL_BACKWARD_TILE_TOKENS) > maxGroups) bad('too many workgroups for one dispatch; use fewer tokens per call');
    const pipeline = await this.pipeline(b.type);
    const params = uploadUniform(this.device, new Uint32Array([b.rows, b.cols, firstRow, dyOffset, dyStride, dxOffset, dxStride, b.accumulate ? 1 : 0]), `${label} params`);
    return this.dispatch(label, pipeline, [b.weight, b.dy, b.dx, params], maxTokens, (tokens) => [colTiles, Math.ceil(tokens / MATMUL_BACKWARD_TILE_TOKENS)], [params]);
  }

  /** Binds a {@link GemmBinding}: one dispatch of gemm_f32. */
  async bindGemm(g: GemmBinding): Promise<Dispatch> {
    const label = g.label ?? `gemm_f32 ${g.m}x${g.k}·${g.k}x${g.n}`;
    const bad = (message: string): never => {
      throw new RullamaError('bad-argument', `${label}: ${message}`);
    };
    const countDim = g.countDim ?? 'none';
    for (const [name, v] of [['m', g.m], ['n', g.n], ['k', g.k]] as const) {
      if (!Number.isSafeInteger(v) || v < 1) bad(`${name} must be a positive integer, not ${v}`);
    }
    const aOffset = g.aOffset ?? 0;
    const bOffset = g.bOffset ?? 0;
    const cOffset = g.cOffset ?? 0;
    for (const [name, v] of [['aOffset', aOffset], ['bOffset', bOffset], ['cOffset', cOffset], ...g.aStrides.map((s) => ['aStrides', s] as const), ...g.bStrides.map((s) => ['bStrides', s] as const), ...g.cStrides.map((s) => ['cStrides', s] as const)] as const) {
      if (!Number.isSafeInteger(v) || v < 0 || v >= 2 ** 32) bad(`${name} must be non-negative 32-bit integers, not ${v}`);
    }
    if (g.aStrides.length !== 2 || g.bStrides.length !== 2 || g.cStrides.length !== 2) bad('each operand takes two strides');
    if (g.c === g.a || g.c === g.b) bad('C must be a buffer other than A and B');
    checkSpan(label, 'A', g.a, aOffset + (g.m - 1) * g.aStrides[0] + (g.k - 1) * g.aStrides[1] + 1);
    checkSpan(label, 'B', g.b, bOffset + (g.k - 1) * g.bStrides[0] + (g.n - 1) * g.bStrides[1] + 1);
    checkSpan(label, 'C', g.c, cOffset + (g.m - 1) * g.cStrides[0] + (g.n - 1) * g.cStrides[1] + 1);
    const maxGroups = this.device.limits.maxComputeWorkgroupsPerDimension;
    const nTiles = Math.ceil(g.n / GEMM_TILE_N);
    if (nTiles > maxGroups || Math.ceil(g.m / GEMM_TILE_M) > maxGroups) bad('too many workgroups for one dispatch');
    const pipeline = await this.gemmPipeline();
    const words = new Uint32Array(15);
    words.set([g.m, g.n, g.k, countDim === 'm' ? 0 : countDim === 'k' ? 1 : 2, aOffset, g.aStrides[0], g.aStrides[1], bOffset, g.bStrides[0], g.bStrides[1], cOffset, g.cStrides[0], g.cStrides[1], g.accumulate ? 1 : 0]);
    new Float32Array(words.buffer)[14] = g.alpha ?? 1;
    const params = uploadUniform(this.device, words, `${label} params`);
    const maxTokens = countDim === 'm' ? g.m : countDim === 'k' ? g.k : 1;
    const mTiles = Math.ceil(g.m / GEMM_TILE_M);
    const grid = (tokens: number): [number, number] => [nTiles, countDim === 'm' ? Math.ceil(tokens / GEMM_TILE_M) : mTiles];
    return this.dispatch(label, pipeline, [g.a, g.b, g.c, params], maxTokens, grid, [params]);
  }

  /**
   * Binds the LoRA part of a layer's backward as one Dispatch of four or five gemm_f32 steps:
   * t = A·x (unless `recomputeT` is false), dB += s·dyᵀ·t, dt = s·dy·B, dA += dtᵀ·x and, with dx,
   * dx += dt·A. Encoding it once per step keeps the order (and so the data flow) right.
   */
  async bindLoraBackward(l: LoraBackwardBinding): Promise<Dispatch> {
    const label = l.label ?? `lora_backward r=${l.rank} ${l.outFeatures}x${l.inFeatures}`;
    const { rank: r, inFeatures: nIn, outFeatures: nOut, tokens: T } = l;
    for (const [name, v] of [['rank', r], ['inFeatures', nIn], ['outFeatures', nOut], ['tokens', T]] as const) {
      if (!Number.isSafeInteger(v) || v < 1) throw new RullamaError('bad-argument', `${label}: ${name} must be a positive integer, not ${v}`);
    }
    if (!Number.isFinite(l.scale)) throw new RullamaError('bad-argument', `${label}: scale must be finite, not ${l.scale}`);
    const rows = (o: TokenRows, width: number): { buffer: GPUBuffer; offset: number; stride: number } => ({ buffer: o.buffer, offset: o.offset ?? 0, stride: o.stride ?? width });
    const x = rows(l.x, nIn);
    const dy = rows(l.dy, nOut);
    const t = rows(l.t, r);
    const dt = rows(l.dt, r);
    const aOffset = l.aOffset ?? 0;
    const bOffset = l.bOffset ?? 0;
    const steps: Dispatch[] = [];
    try {
      if (l.recomputeT ?? true) {
        // t[t][q] = Σ_c x[t][c]·A[q][c]
        steps.push(await this.bindGemm({ label: `${label} t=A·x`, m: T, n: r, k: nIn, countDim: 'm', a: x.buffer, aOffset: x.offset, aStrides: [x.stride, 1], b: l.a, bOffset: aOffset, bStrides: [1, nIn], c: t.buffer, cOffset: t.offset, cStrides: [t.stride, 1] }));
      }
      // dB[o][q] += s·Σ_t dy[t][o]·t[t][q]
      steps.push(await this.bindGemm({ label: `${label} dB`, m: nOut, n: r, k: T, countDim: 'k', a: dy.buffer, aOffset: dy.offset, aStrides: [1, dy.stride], b: t.buffer, bOffset: t.offset, bStrides: [t.stride, 1], c: l.db, cOffset: l.dbOffset ?? 0, cStrides: [r, 1], alpha: l.scale, accumulate: true }));
      // dt[t][q] = s·Σ_o dy[t][o]·B[o][q]
      steps.push(await this.bindGemm({ label: `${label} dt`, m: T, n: r, k: nOut, countDim: 'm', a: dy.buffer, aOffset: dy.offset, aStrides: [dy.stride, 1], b: l.b, bOffset, bStrides: [r, 1], c: dt.buffer, cOffset: dt.offset, cStrides: [dt.stride, 1], alpha: l.scale }));
      // dA[q][c] += Σ_t dt[t][q]·x[t][c]
      steps.push(await this.bindGemm({ label: `${label} dA`, m: r, n: nIn, k: T, countDim: 'k', a: dt.buffer, aOffset: dt.offset, aStrides: [1, dt.stride], b: x.buffer, bOffset: x.offset, bStrides: [x.stride, 1], c: l.da, cOffset: l.daOffset ?? 0, cStrides: [nIn, 1], accumulate: true }));
      if (l.dx) {
        const dx = rows(l.dx, nIn);
        // dx[t][c] += Σ_q dt[t][q]·A[q][c]
        steps.push(await this.bindGemm({ label: `${label} dx`, m: T, n: nIn, k: r, countDim: 'm', a: dt.buffer, aOffset: dt.offset, aStrides: [dt.stride, 1], b: l.a, bOffset: aOffset, bStrides: [nIn, 1], c: dx.buffer, cOffset: dx.offset, cStrides: [dx.stride, 1], accumulate: true }));
      }
    } catch (e) {
      for (const s of steps) s.destroy();
      throw e;
    }
    return {
      label,
      maxTokens: T,
      encode(pass: GPUComputePassEncoder, tokens = T): void {
        if (tokens === 0) return;
        if (!Number.isSafeInteger(tokens) || tokens < 0 || tokens > T) throw new RullamaError('bad-argument', `${label}: token count ${tokens} is outside 0..${T}`);
        for (const s of steps) s.encode(pass, tokens);
      },
      destroy(): void {
        for (const s of steps) s.destroy();
      },
    };
  }

  /** Frees the token-count tables. Bindings made from this object stop working. */
  destroy(): void {
    this.counts.destroy();
  }

  private dispatch(label: string, pipeline: GPUComputePipeline, buffers: readonly GPUBuffer[], maxTokens: number, grid: (tokens: number) => [number, number], owned: readonly GPUBuffer[]): Dispatch {
    const bindGroup = this.device.createBindGroup({
      label,
      layout: this.layout,
      entries: [...buffers.map((buffer, binding) => ({ binding, resource: { buffer } })), this.counts.entry(4, maxTokens)],
    });
    const counts = this.counts;
    const dynamicOffset = new Uint32Array(1);
    return {
      label,
      maxTokens,
      encode(pass: GPUComputePassEncoder, tokens = maxTokens): void {
        if (tokens === 0) return;
        if (!Number.isSafeInteger(tokens) || tokens < 0 || tokens > maxTokens) throw new RullamaError('bad-argument', `${label}: token count ${tokens} is outside 0..${maxTokens}`);
        const [gx, gy] = grid(tokens);
        dynamicOffset[0] = counts.offset(tokens);
        pass.setPipeline(pipeline);
        pass.setBindGroup(0, bindGroup, dynamicOffset, 0, 1);
        pass.dispatchWorkgroups(gx, gy);
      },
      destroy(): void {
        for (const b of owned) b.destroy();
      },
    };
  }
}

/** Refuses an f32 operand whose buffer is too small for `elements`, or that lacks STORAGE usage. */
function checkSpan(label: string, name: string, buffer: GPUBuffer, elements: number): void {
  if (4 * elements > buffer.size) throw new RullamaError('bad-argument', `${label}: ${name} has ${buffer.size} bytes, ${4 * elements} are needed`);
  if ((buffer.usage & GPUBufferUsage.STORAGE) === 0) throw new RullamaError('bad-argument', `${label}: the ${name} buffer lacks STORAGE usage`);
}
