// GPU checks of the int8 matmul (matmul_int8.forward.wgsl with weights/q4_k_int8.wgsl and
// q6_k_int8.wgsl, through LinearKernels.bindMatMul with `int8`), shared by the Node (Dawn) and
// browser (Chromium WebGPU) suites.
//
// The kernel rounds x to 8 bits in blocks of 32 columns, so its reference is the float64 product of
// the dequantised weights with x rounded the same way here (f32 arithmetic, ties to even).
// Error: |gpu − reference| over Σ|w·x̂| must stay within INT8_MATMUL_TOLERANCE, plus one rounding
// step of one x value (|w|·dx): WGSL's division may differ from JavaScript's by an ulp, which can
// move a value sitting on a rounding tie. The rounding of x itself is not allowed for: it is
// about 100 times that bound, so a kernel that multiplied unrounded x (or rounded it differently)
// fails, as does one that lost a block's scale or min.
import { readBack, uploadStorage } from '../../src/core/gpu/buffers.js';
import { LinearKernels, matmulInt8Splits, matmulInt8TileTokens, uploadWeight, type Dispatch, type Int8TileTokens } from '../../src/core/gpu/linear.js';
import { GGMLType, typeName } from '../../src/core/gguf/types.js';
import { dequantize } from '../../src/core/quant/dequant.js';
import { quantize } from '../../src/core/quant/quantize.js';

/** f32 accumulation error allowed, relative to Σ|w·x̂| (as the f32 linear checks). */
export const INT8_MATMUL_TOLERANCE = 1e-5;

const SENTINEL = -12345.5;

export interface Int8Check {
  readonly name: string;
  /** max over outputs of (|gpu − reference| − one rounding step) / Σ|w·x̂|, at least 0; NaN counts as Infinity. */
  readonly excess: number;
  /** max |gpu − float64 product with unrounded x| / Σ|w·x|: the 8-bit rounding's size. */
  readonly vsUnrounded: number;
  /** Whether every output the call must not write still holds its sentinel. */
  readonly untouched: boolean;
  /** K splits the binding used. */
  readonly splits: number;
  /** Tokens a workgroup the binding used. */
  readonly tileTokens: number;
}

function seededNormals(n: number, seed: number, std = 1): Float32Array<ArrayBuffer> {
  let s = seed >>> 0;
  const uniform = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 0.5) / 2 ** 32;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = std * Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
  return out;
}

/** Nearest integer, ties to even (WGSL's round). */
function roundEven(v: number): number {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * x (cols values) rounded as the kernel does, block by block of 32: dx = max|x| / 127, q =
 * round(x · (127 / max|x|)); returns dx·q and dx per value.
 */
export function roundActivations(x: Float32Array, cols: number): { xq: Float64Array; step: Float64Array } {
  const f = Math.fround;
  const xq = new Float64Array(cols);
  const step = new Float64Array(cols);
  for (let b = 0; b < cols; b += 32) {
    let amax = 0;
    for (let i = b; i < b + 32; i++) amax = Math.max(amax, Math.abs(x[i]!));
    const inv = amax > 0 ? f(127 / amax) : 0;
    const dx = f(amax / 127);
    for (let i = b; i < b + 32; i++) {
      xq[i] = dx * roundEven(f(x[i]! * inv));
      step[i] = dx;
    }
  }
  return { xq, step };
}

/** The dtypes an int8 matmul takes. */
export const INT8_TYPES: readonly GGMLType[] = [GGMLType.Q4_K, GGMLType.Q6_K];

interface Case {
  name: string;
  rows: number;
  cols: number;
  firstRow: number;
  tokens: number[];
  maxTokens: number;
  xStride: number;
  yOffset: number;
  yStride: number;
  kSplits?: number;
  int8Tokens?: Int8TileTokens;
}

/**
 * Shapes: two row tiles (the second partial) and two token tiles (the second partial), unsplit, at
 * 64 tokens a workgroup and at 128; a matrix of few rows split over K by the default rule (8 parts
 * of 128 columns: parts that start inside a block), with a first row, x and y strides and a y
 * offset; and one of 1,100 rows of 1,024, split, that the default rule gives 128 tokens a workgroup
 * (where the device has the workgroup memory).
 */
export async function checkInt8MatMul(kernels: LinearKernels, type: GGMLType): Promise<Int8Check[]> {
  const { device } = kernels;
  const cases: Case[] = [
    { name: '200x512', rows: 200, cols: 512, firstRow: 0, tokens: [1, 70], maxTokens: 70, xStride: 512, yOffset: 0, yStride: 200, kSplits: 1 },
    { name: '200x512 at 128 tokens', rows: 200, cols: 512, firstRow: 0, tokens: [1, 150], maxTokens: 150, xStride: 512, yOffset: 0, yStride: 200, kSplits: 1, int8Tokens: 128 },
    { name: '30x1024 from row 40 (K split)', rows: 30, cols: 1024, firstRow: 40, tokens: [5, 33], maxTokens: 33, xStride: 1028, yOffset: 3, yStride: 33 },
    { name: '1100x1024 (K split)', rows: 1100, cols: 1024, firstRow: 0, tokens: [130], maxTokens: 130, xStride: 1024, yOffset: 0, yStride: 1100 },
  ];
  const checks: Int8Check[] = [];
  const owned: GPUBuffer[] = [];
  const dispatches: Dispatch[] = [];
  try {
    for (const c of cases) {
      const allRows = c.firstRow + c.rows;
      const bytes = quantize(type, seededNormals(allRows * c.cols, 7 + c.cols + type, 1 / Math.sqrt(c.cols)));
      const w = dequantize(type, bytes, allRows * c.cols);
      const weight = uploadWeight(device, type, bytes, `int8 check ${typeName(type)} ${c.name}`);
      owned.push(weight);
      // Activations of a transformer's scale with a few large ones, as rounding meets them.
      const x = seededNormals(c.maxTokens * c.xStride, 99 + c.cols);
      for (let i = 0; i < x.length; i += 37) x[i] = x[i]! * 8;
      const xBuf = uploadStorage(device, x, 'int8 check x');
      const yLen = c.yOffset + c.maxTokens * c.yStride;
      const yBuf = uploadStorage(device, new Float32Array(yLen).fill(SENTINEL), 'int8 check y');
      owned.push(xBuf, yBuf);
      const mm = await kernels.bindMatMul({ weight, type, rows: c.rows, cols: c.cols, firstRow: c.firstRow, tokens: c.maxTokens, x: xBuf, xStride: c.xStride, y: yBuf, yOffset: c.yOffset, yStride: c.yStride, int8: true, kSplits: c.kSplits, int8Tokens: c.int8Tokens });
      dispatches.push(mm);
      const tileTokens = c.int8Tokens ?? matmulInt8TileTokens(c.rows, c.cols, c.maxTokens, device.limits.maxComputeWorkgroupStorageSize);
      const groups = Math.ceil(c.rows / 128) * Math.ceil(c.maxTokens / tileTokens);
      const { splits } = matmulInt8Splits(c.cols, groups, c.kSplits);
      for (const T of c.tokens) {
        device.queue.writeBuffer(yBuf, 0, new Float32Array(yLen).fill(SENTINEL));
        const encoder = device.createCommandEncoder();
        const pass = encoder.beginComputePass();
        mm.encode(pass, T);
        pass.end();
        device.queue.submit([encoder.finish()]);
        const got = new Float32Array(await readBack(device, yBuf, yLen * 4));
        let excess = 0;
        let vsUnrounded = 0;
        for (let t = 0; t < T; t++) {
          const xt = x.subarray(t * c.xStride, t * c.xStride + c.cols);
          const { xq, step } = roundActivations(xt, c.cols);
          for (let r = 0; r < c.rows; r++) {
            const row = (c.firstRow + r) * c.cols;
            let want = 0;
            let scale = 0;
            let exact = 0;
            let exactScale = 0;
            let oneStep = 0;
            for (let k = 0; k < c.cols; k++) {
              const wv = w[row + k]!;
              want += wv * xq[k]!;
              scale += Math.abs(wv * xq[k]!);
              exact += wv * xt[k]!;
              exactScale += Math.abs(wv * xt[k]!);
              oneStep = Math.max(oneStep, Math.abs(wv) * step[k]!);
            }
            const g = got[c.yOffset + t * c.yStride + r]!;
            const e = (Math.abs(g - want) - oneStep) / scale;
            excess = Math.max(excess, Number.isNaN(e) ? Infinity : e, 0);
            vsUnrounded = Math.max(vsUnrounded, Math.abs(g - exact) / exactScale);
          }
        }
        let untouched = true;
        for (let i = 0; i < yLen; i++) {
          const j = i - c.yOffset;
          const written = j >= 0 && j < T * c.yStride && j % c.yStride < c.rows;
          if (!written && got[i] !== SENTINEL) untouched = false;
        }
        checks.push({ name: `int8 matmul ${typeName(type)} ${c.name} T=${T}`, excess, vsUnrounded, untouched, splits, tileTokens });
      }
    }
    return checks;
  } finally {
    for (const d of dispatches) d.destroy();
    for (const b of owned) b.destroy();
  }
}
