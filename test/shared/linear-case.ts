// GPU checks of the linear kernels (matvec and matmul over GGUF-layout weights), shared by the
// Node (Dawn) and browser (Chromium WebGPU) suites. For each dtype: Gaussian weights (std
// 1/sqrt(cols)) quantised with quantize(), uploaded raw; the GPU result is compared with a float64
// product over the dequantize()d weights, as max |gpu − exact| / Σ_c |w·x| over the row.
import { readBack, uploadStorage } from '../../src/core/gpu/buffers.js';
import { LinearKernels, MATVEC_SHORT_MIN_ROWS, q4kFillLanes, uploadWeight, weightRowBytes, type Dispatch } from '../../src/core/gpu/linear.js';
import { PipelineCache, ShaderCompileError } from '../../src/core/gpu/pipelines.js';
import { GGML_TYPES, GGMLType, typeName } from '../../src/core/gguf/types.js';
import { dequantize } from '../../src/core/quant/dequant.js';
import { quantize } from '../../src/core/quant/quantize.js';
import { errorCode } from './error-code.js';

/** The tolerance every check must meet (f32 accumulation). */
export const LINEAR_TOLERANCE = 1e-5;

export interface LinearCheck {
  /** What was checked, e.g. 'matmul T=33'. */
  readonly name: string;
  /** max |gpu − exact| / Σ|w·x| over all outputs checked (NaN counts as Infinity). */
  readonly maxRelErr: number;
  /** Whether every output the call must not write still holds its sentinel. */
  readonly untouched: boolean;
}

const SENTINEL = -12345.5;

function seededNormals(n: number, seed: number, std = 1): Float32Array<ArrayBuffer> {
  let s = seed >>> 0;
  const uniform = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 0.5) / 2 ** 32;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = std * Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
  return out;
}

/** A test matrix: its GGUF bytes and the exact values those bytes stand for. */
interface Matrix {
  type: GGMLType;
  rows: number;
  cols: number;
  bytes: Uint8Array;
  values: Float32Array;
}

function makeMatrix(type: GGMLType, rows: number, cols: number, seed: number): Matrix {
  const bytes = quantize(type, seededNormals(rows * cols, seed, 1 / Math.sqrt(cols)));
  return { type, rows, cols, bytes, values: dequantize(type, bytes, rows * cols) };
}

/** Rows [from, to) of m, sharing its bytes and values. */
function rowsOf(m: Matrix, from: number, to: number): Matrix {
  const rowBytes = weightRowBytes(m.type, m.cols);
  return { ...m, rows: to - from, bytes: m.bytes.subarray(from * rowBytes, to * rowBytes), values: m.values.subarray(from * m.cols, to * m.cols) };
}

/**
 * Throws unless a Q4_K matvec of these parts gets `want` lanes a row (linear.ts's fill rule), so
 * that a check meant for that lane count cannot drift to another.
 */
function expectQ4kLanes(cols: number, rows: readonly number[], gelu: boolean, want: number, formsInput = false): void {
  const got = q4kFillLanes(cols, rows, gelu, formsInput);
  if (got !== want) throw new Error(`a Q4_K matvec of rows ${rows.join(' + ')} x ${cols}${gelu ? ' (gelu)' : ''} takes ${got} lanes a row, the check wants ${want}`);
}

/** Row r of m times x in float64, with Σ|w·x| (the scale its f32 rounding error grows with). */
function dotRowF64(m: Matrix, r: number, x: ArrayLike<number>): { acc: number; scale: number } {
  let acc = 0;
  let scale = 0;
  for (let c = 0; c < m.cols; c++) {
    const p = m.values[r * m.cols + c]! * x[c]!;
    acc += p;
    scale += Math.abs(p);
  }
  return { acc, scale };
}

/**
 * Relative error of `got` (token t's output row r at got[yOffset + t*yStride + r]) against the
 * float64 product of rows [firstRow, firstRow + rows) with x (token t at x[t*cols]).
 */
function relErr(m: Matrix, x: Float32Array, tokens: number, got: Float32Array, o: { firstRow?: number; rows?: number; yOffset?: number; yStride?: number }): number {
  const firstRow = o.firstRow ?? 0;
  const rows = o.rows ?? m.rows;
  const yOffset = o.yOffset ?? 0;
  const yStride = o.yStride ?? rows;
  let worst = 0;
  for (let t = 0; t < tokens; t++) {
    for (let r = 0; r < rows; r++) {
      const { acc: exact, scale } = dotRowF64(m, firstRow + r, x.subarray(t * m.cols));
      const err = Math.abs(got[yOffset + t * yStride + r]! - exact) / scale;
      worst = Math.max(worst, Number.isNaN(err) ? Infinity : err);
    }
  }
  return worst;
}

/** Whether got[i] holds the sentinel for every i outside the written set. */
function sentinelsKept(got: Float32Array, written: (i: number) => boolean): boolean {
  for (let i = 0; i < got.length; i++) if (!written(i) && got[i] !== SENTINEL) return false;
  return true;
}

function submit(device: GPUDevice, record: (pass: GPUComputePassEncoder) => void): void {
  const encoder = device.createCommandEncoder();
  const pass = encoder.beginComputePass();
  record(pass);
  pass.end();
  device.queue.submit([encoder.finish()]);
}

function sentinelBuffer(device: GPUDevice, length: number, label: string): GPUBuffer {
  return uploadStorage(device, new Float32Array(length).fill(SENTINEL), label);
}

function resetSentinels(device: GPUDevice, buffer: GPUBuffer, length: number): void {
  device.queue.writeBuffer(buffer, 0, new Float32Array(length).fill(SENTINEL));
}

async function readF32(device: GPUDevice, buffer: GPUBuffer, length: number): Promise<Float32Array> {
  return new Float32Array(await readBack(device, buffer, length * 4));
}

/** Shapes: several blocks per row; row counts not multiples of the workgroup's rows. */
export function shapeFor(type: GGMLType): { cols: number } {
  return { cols: GGML_TYPES.get(type)!.blockSize === 256 ? 768 : 160 };
}

/** Runs every check for one dtype; returns their results (the caller asserts). */
export async function checkLinearType(kernels: LinearKernels, type: GGMLType): Promise<LinearCheck[]> {
  const { device } = kernels;
  const { cols } = shapeFor(type);
  const name = typeName(type);
  const checks: LinearCheck[] = [];
  const owned: GPUBuffer[] = [];
  const dispatches: Dispatch[] = [];
  const own = <T extends GPUBuffer>(b: T): T => (owned.push(b), b);
  const keep = (d: Dispatch): Dispatch => (dispatches.push(d), d);
  try {
    // --- matvec: 37 rows, then the same binding again with a different x ---------------------
    const small = makeMatrix(type, 37, cols, 11 + type);
    const wSmall = own(uploadWeight(device, type, small.bytes, `${name} small`));
    const x1 = seededNormals(cols, 21);
    const x2 = seededNormals(cols, 22);
    const xBuf = own(uploadStorage(device, x1, 'x'));
    const yLen = small.rows + 5;
    const yBuf = own(sentinelBuffer(device, yLen, 'y'));
    // Both kernels whatever the device's default: lanes per row (GPUs) and one thread per row.
    for (const threadPerRow of [false, true]) {
      const mv = keep(await kernels.bindMatVec({ weight: wSmall, type, rows: small.rows, cols, x: xBuf, y: yBuf, threadPerRow }));
      for (const [i, x] of [x1, x2].entries()) {
        device.queue.writeBuffer(xBuf, 0, x);
        resetSentinels(device, yBuf, yLen);
        submit(device, (pass) => mv.encode(pass));
        const got = await readF32(device, yBuf, yLen);
        const kind = threadPerRow ? 'thread per row' : 'lanes per row';
        checks.push({ name: `matvec 37x${cols}, ${kind} (call ${i + 1})`, maxRelErr: relErr(small, x, 1, got, {}), untouched: sentinelsKept(got, (j) => j < small.rows) });
      }
    }

    // --- row tiles: 70 rows as tiles [0,40) and [40,70), each its own buffer; and firstRow ----
    const big = makeMatrix(type, 70, cols, 31 + type);
    const rowBytes = weightRowBytes(type, cols);
    const tileA = own(uploadWeight(device, type, big.bytes.subarray(0, 40 * rowBytes), `${name} rows 0..40`));
    const tileB = own(uploadWeight(device, type, big.bytes.subarray(40 * rowBytes, 70 * rowBytes), `${name} rows 40..70`));
    const wBig = own(uploadWeight(device, type, big.bytes, `${name} 70 rows`));
    const yTiles = own(sentinelBuffer(device, 70, 'y tiles'));
    const yFirst = own(sentinelBuffer(device, 36, 'y firstRow'));
    const tA = keep(await kernels.bindMatVec({ weight: tileA, type, rows: 40, cols, x: xBuf, y: yTiles }));
    // The second tile and firstRow on the lanes-per-row kernels, whatever the device's default.
    const tB = keep(await kernels.bindMatVec({ weight: tileB, type, rows: 30, cols, x: xBuf, y: yTiles, yOffset: 40, threadPerRow: false }));
    const tF = keep(await kernels.bindMatVec({ weight: wBig, type, rows: 30, cols, firstRow: 40, x: xBuf, y: yFirst, yOffset: 3, threadPerRow: false }));
    submit(device, (pass) => {
      tA.encode(pass);
      tB.encode(pass);
      tF.encode(pass);
    });
    const gotTiles = await readF32(device, yTiles, 70);
    checks.push({ name: 'matvec row tiles (yOffset)', maxRelErr: relErr(big, x2, 1, gotTiles, {}), untouched: true });
    const gotFirst = await readF32(device, yFirst, 36);
    checks.push({
      name: 'matvec firstRow',
      maxRelErr: relErr(big, x2, 1, gotFirst, { firstRow: 40, rows: 30, yOffset: 3 }),
      untouched: sentinelsKept(gotFirst, (j) => j >= 3 && j < 33),
    });

    // --- matmul: one binding for up to 33 tokens, run with T = 1, 5, 33 ----------------------
    const maxT = 33;
    const xs = seededNormals(maxT * cols, 41);
    const xsBuf = own(uploadStorage(device, xs, 'xs'));
    const ysLen = maxT * big.rows;
    const ysBuf = own(sentinelBuffer(device, ysLen, 'ys'));
    const mm = keep(await kernels.bindMatMul({ weight: wBig, type, rows: big.rows, cols, tokens: maxT, x: xsBuf, y: ysBuf }));
    const matmulOut = new Map<number, Float32Array>();
    for (const T of [1, 5, 33]) {
      resetSentinels(device, ysBuf, ysLen);
      submit(device, (pass) => mm.encode(pass, T));
      const got = await readF32(device, ysBuf, ysLen);
      matmulOut.set(T, got);
      checks.push({ name: `matmul 70x${cols} T=${T}`, maxRelErr: relErr(big, xs, T, got, {}), untouched: sentinelsKept(got, (j) => j < T * big.rows) });
    }
    // The wide token tile (the default of matrices of 4,096 rows or more) on the same shapes.
    const mmWide = keep(await kernels.bindMatMul({ weight: wBig, type, rows: big.rows, cols, tokens: maxT, x: xsBuf, y: ysBuf, tile: 'wide' }));
    for (const T of [5, 33]) {
      resetSentinels(device, ysBuf, ysLen);
      submit(device, (pass) => mmWide.encode(pass, T));
      const got = await readF32(device, ysBuf, ysLen);
      checks.push({ name: `matmul 70x${cols} T=${T} (wide tile)`, maxRelErr: relErr(big, xs, T, got, {}), untouched: sentinelsKept(got, (j) => j < T * big.rows) });
    }
    // K split (the default of matrices of few rows and long ones): two parts, the second shorter,
    // added up by a second dispatch into y from an offset, with a stride, from a first row.
    const splitLen = 3 + maxT * 33;
    const ySplit = own(sentinelBuffer(device, splitLen, 'y split'));
    const mmSplit = keep(await kernels.bindMatMul({ weight: wBig, type, rows: 30, cols, firstRow: 40, tokens: maxT, x: xsBuf, y: ySplit, yOffset: 3, yStride: 33, tile: 'split' }));
    for (const T of [5, 33]) {
      resetSentinels(device, ySplit, splitLen);
      submit(device, (pass) => mmSplit.encode(pass, T));
      const got = await readF32(device, ySplit, splitLen);
      const written = (j: number) => j >= 3 && j < 3 + T * 33 && (j - 3) % 33 < 30;
      checks.push({ name: `matmul 30x${cols} T=${T} (K split, firstRow, yOffset, yStride)`, maxRelErr: relErr(big, xs, T, got, { firstRow: 40, rows: 30, yOffset: 3, yStride: 33 }), untouched: sentinelsKept(got, (j) => written(j)) });
    }

    // --- T separate matvecs (xOffset, yOffset per token) against the CPU and the matmul -------
    const perToken = own(sentinelBuffer(device, 5 * big.rows, 'y per token'));
    const mvs: Dispatch[] = [];
    for (let t = 0; t < 5; t++) {
      mvs.push(keep(await kernels.bindMatVec({ weight: wBig, type, rows: big.rows, cols, x: xsBuf, xOffset: t * cols, y: perToken, yOffset: t * big.rows })));
    }
    submit(device, (pass) => mvs.forEach((d) => d.encode(pass)));
    const gotPer = await readF32(device, perToken, 5 * big.rows);
    checks.push({ name: '5 matvecs (xOffset)', maxRelErr: relErr(big, xs, 5, gotPer, {}), untouched: true });
    const mm5 = matmulOut.get(5)!;
    let vsMatvec = 0;
    for (let t = 0; t < 5; t++) {
      for (let r = 0; r < big.rows; r++) {
        let scale = 0;
        for (let c = 0; c < cols; c++) scale += Math.abs(big.values[r * cols + c]! * xs[t * cols + c]!);
        vsMatvec = Math.max(vsMatvec, Math.abs(mm5[t * big.rows + r]! - gotPer[t * big.rows + r]!) / scale);
      }
    }
    checks.push({ name: 'matmul T=5 vs 5 matvecs', maxRelErr: vsMatvec, untouched: true });

    // --- matmul row tiles into one [T, 70] y (yStride), with two token counts in one pass ------
    const yTileLen = maxT * 70;
    const yTileMM = own(sentinelBuffer(device, yTileLen, 'ys tiles'));
    const mA = keep(await kernels.bindMatMul({ weight: tileA, type, rows: 40, cols, tokens: maxT, x: xsBuf, y: yTileMM, yStride: 70 }));
    const mB = keep(await kernels.bindMatMul({ weight: tileB, type, rows: 30, cols, tokens: maxT, x: xsBuf, y: yTileMM, yOffset: 40, yStride: 70 }));
    resetSentinels(device, ysBuf, ysLen);
    submit(device, (pass) => {
      mA.encode(pass, 33);
      mm.encode(pass, 5); // another binding with another token count in the same pass
      mB.encode(pass, 33);
    });
    const gotTileMM = await readF32(device, yTileMM, yTileLen);
    checks.push({ name: 'matmul row tiles T=33 (yOffset, yStride)', maxRelErr: relErr(big, xs, 33, gotTileMM, { yStride: 70 }), untouched: true });
    const got5 = await readF32(device, ysBuf, ysLen);
    checks.push({ name: 'matmul T=5 beside T=33 in one pass', maxRelErr: relErr(big, xs, 5, got5, {}), untouched: sentinelsKept(got5, (j) => j < 5 * big.rows) });

    // --- the same matmul binding with new x contents ------------------------------------------
    const xs2 = seededNormals(maxT * cols, 42);
    device.queue.writeBuffer(xsBuf, 0, xs2);
    resetSentinels(device, ysBuf, ysLen);
    submit(device, (pass) => mm.encode(pass, 33));
    const gotNew = await readF32(device, ysBuf, ysLen);
    checks.push({ name: 'matmul T=33 again with new x', maxRelErr: relErr(big, xs2, 33, gotNew, {}), untouched: true });
    return checks;
  } finally {
    for (const d of dispatches) d.destroy();
    for (const b of owned) b.destroy();
  }
}


function geluF64(x: number): number {
  const u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
  return x / (1 + Math.exp(-2 * u));
}

/**
 * Max over rows r of |got[yOffset + r] − gelu(gate_r·x)·(up_r·x)| (float64), each over the bound
 * |gelu(g)|·Σ|u| + 1.13·Σ|g|·|u| (NaN counts as Infinity).
 */
function geluProductErr(gate: Matrix, up: Matrix, x: ArrayLike<number>, got: Float32Array, yOffset: number): number {
  let worst = 0;
  for (let r = 0; r < gate.rows; r++) {
    const g = dotRowF64(gate, r, x);
    const u = dotRowF64(up, r, x);
    // Errors of both products, each scaled by the other factor's size (gelu' ≤ ~1.13).
    const bound = Math.abs(geluF64(g.acc)) * u.scale + 1.13 * g.scale * Math.abs(u.acc) + 1e-30;
    const err = Math.abs(got[yOffset + r]! - geluF64(g.acc) * u.acc) / bound;
    worst = Math.max(worst, Number.isNaN(err) ? Infinity : err);
  }
  return worst;
}

/** Dtypes {@link checkMatVecVariants} runs on (the E2B weights' and a 32-block one). */
export const MATVEC_VARIANT_TYPES: readonly GGMLType[] = [GGMLType.Q4_K, GGMLType.Q6_K, GGMLType.Q8_0];

/**
 * The matvec variants of the decode chain: long rows (128 threads a row), short rows (one thread a
 * row) and the GELU epilogues of both kernels (y = gelu(aux)·Wx, y = gelu(Wx)·aux) against float64.
 * Errors are relative to Σ|w·x| times the factor's size, as for the plain matvec. For Q4_K also
 * the matvec at 8, 16 and 32 lanes a row (checkQ4kLanes; the small shapes take 64).
 */
export async function checkMatVecVariants(kernels: LinearKernels, type: GGMLType): Promise<LinearCheck[]> {
  const { device } = kernels;
  const block = GGML_TYPES.get(type)!.blockSize;
  const checks: LinearCheck[] = [];
  const owned: GPUBuffer[] = [];
  const dispatches: Dispatch[] = [];
  const own = <T extends GPUBuffer>(b: T): T => (owned.push(b), b);
  const keep = (d: Dispatch): Dispatch => (dispatches.push(d), d);
  try {
    // Long rows: 4096 values (the 128-lane path), 5 rows.
    {
      const m = makeMatrix(type, 5, 4096, 51 + type);
      const x = seededNormals(4096, 52);
      const y = own(sentinelBuffer(device, 8, 'y long'));
      const d = keep(await kernels.bindMatVec({ weight: own(uploadWeight(device, type, m.bytes, 'long')), type, rows: 5, cols: 4096, x: own(uploadStorage(device, x, 'x long')), y, threadPerRow: false }));
      submit(device, (pass) => d.encode(pass));
      const got = await readF32(device, y, 8);
      checks.push({ name: 'matvec 5x4096 (long rows)', maxRelErr: relErr(m, x, 1, got, {}), untouched: sentinelsKept(got, (j) => j < 5) });
    }
    // A tall matrix on the lanes-per-row kernels (Q6_K's takes 8 lanes a row from MATVEC_SHORT_MIN_ROWS
    // rows on, as for the output matrix), reading x from an offset and writing y from another.
    {
      const rows = MATVEC_SHORT_MIN_ROWS + 6;
      const cols = 256;
      if (type === GGMLType.Q4_K) expectQ4kLanes(cols, [rows], false, 8); // the Q4_K matvec's 8-lane check
      const m = makeMatrix(type, rows, cols, 55 + type);
      const x = seededNormals(cols, 56);
      const xBuf = own(uploadStorage(device, new Float32Array([1, 2, 3, 4, 5, 6, 7, 8, ...x]), 'x tall'));
      const y = own(sentinelBuffer(device, rows + 5, 'y tall'));
      const d = keep(await kernels.bindMatVec({ weight: own(uploadWeight(device, type, m.bytes, 'tall')), type, rows, cols, x: xBuf, xOffset: 8, y, yOffset: 3, threadPerRow: false }));
      submit(device, (pass) => d.encode(pass));
      const got = await readF32(device, y, rows + 5);
      checks.push({ name: `matvec ${rows}x${cols} (tall, xOffset, yOffset)`, maxRelErr: relErr(m, x, 1, got, { yOffset: 3 }), untouched: sentinelsKept(got, (j) => j >= 3 && j < rows + 3) });
    }
    // Epilogues on the workgroup-per-rows kernel (cols 768 or 160) and the thread-per-row one (cols ≤ 256).
    for (const cols of [block === 256 ? 768 : 320, block === 256 ? 256 : 64]) {
      const rows = 37;
      const m = makeMatrix(type, rows, cols, 61 + type + cols);
      const x = seededNormals(cols, 62);
      const aux = seededNormals(rows + 3, 63, 1.5);
      const xBuf = own(uploadStorage(device, x, 'x'));
      const auxBuf = own(uploadStorage(device, aux, 'aux'));
      const weight = own(uploadWeight(device, type, m.bytes, 'w'));
      for (const epilogue of ['gelu-aux-times', 'gelu-times-aux'] as const) {
        const y = own(sentinelBuffer(device, rows + 2, 'y'));
        const d = keep(await kernels.bindMatVec({ weight, type, rows, cols, x: xBuf, y, epilogue, aux: auxBuf, auxOffset: 3, threadPerRow: cols <= 256 }));
        submit(device, (pass) => d.encode(pass));
        const got = await readF32(device, y, rows + 2);
        let worst = 0;
        for (let r = 0; r < rows; r++) {
          let acc = 0;
          let scale = 0;
          for (let c = 0; c < cols; c++) {
            const p = m.values[r * cols + c]! * x[c]!;
            acc += p;
            scale += Math.abs(p);
          }
          const a = aux[3 + r]!;
          const exact = epilogue === 'gelu-aux-times' ? geluF64(a) * acc : geluF64(acc) * a;
          // gelu' is at most ~1.13; the factor's size bounds how the product's error grows.
          const bound = (epilogue === 'gelu-aux-times' ? Math.abs(geluF64(a)) : 1.13 * Math.abs(a)) * scale + 1e-30;
          const err = Math.abs(got[r]! - exact) / bound;
          worst = Math.max(worst, Number.isNaN(err) ? Infinity : err);
        }
        checks.push({ name: `matvec ${rows}x${cols} epilogue ${epilogue}`, maxRelErr: worst, untouched: sentinelsKept(got, (j) => j < rows) });
      }
    }
    // Several weights in one dispatch (bindMatVecMulti): q/k/v-like outputs of mixed dtypes (this
    // one, Q4_K, this one) at offsets, in 32- and 128-lane rows; gate/up with their GELU product.
    for (const cols of [768, 4096]) {
      const shapes = [
        { type, rows: 37, seed: 71 },
        { type: GGMLType.Q4_K, rows: 16, seed: 72 },
        { type, rows: 9, seed: 73 },
      ];
      const x = seededNormals(cols + 4, 74);
      const xBuf = own(uploadStorage(device, x, 'x multi'));
      const xs = x.subarray(4);
      const ms = shapes.map((sh) => makeMatrix(sh.type, sh.rows, cols, sh.seed + type + cols));
      for (const n of [3, 1]) {
        const ys = ms.slice(0, n).map((m) => own(sentinelBuffer(device, m.rows + 5, 'y multi')));
        const d = keep(await kernels.bindMatVecMulti({
          cols, x: xBuf, xOffset: 4,
          parts: ms.slice(0, n).map((m, i) => ({ weight: own(uploadWeight(device, m.type, m.bytes, `w multi ${i}`)), type: m.type, rows: m.rows, y: ys[i], yOffset: 2 })),
        }));
        submit(device, (pass) => d.encode(pass));
        let worst = 0;
        let kept = true;
        for (let i = 0; i < n; i++) {
          const got = await readF32(device, ys[i]!, ms[i]!.rows + 5);
          worst = Math.max(worst, relErr(ms[i]!, xs, 1, got, { yOffset: 2 }));
          kept &&= sentinelsKept(got, (j) => j >= 2 && j < 2 + ms[i]!.rows);
        }
        checks.push({ name: `matvec_multi ${n} weights (${shapes.slice(0, n).map((sh) => `${typeName(sh.type)} ${sh.rows}`).join(', ')}) x ${cols}`, maxRelErr: worst, untouched: kept });
      }
      // gate/up: y = gelu(gate·x)·(up·x).
      const rows = 37;
      const gate = makeMatrix(type, rows, cols, 81 + type + cols);
      const up = makeMatrix(type, rows, cols, 82 + type + cols);
      const y = own(sentinelBuffer(device, rows + 3, 'y gelu'));
      const d = keep(await kernels.bindMatVecMulti({
        cols, x: xBuf, xOffset: 4, gelu: { y, yOffset: 1 },
        parts: [gate, up].map((m, i) => ({ weight: own(uploadWeight(device, m.type, m.bytes, `w gelu ${i}`)), type: m.type, rows })),
      }));
      submit(device, (pass) => d.encode(pass));
      const got = await readF32(device, y, rows + 3);
      let worst = 0;
      for (let r = 0; r < rows; r++) {
        const g = dotRowF64(gate, r, xs);
        const u = dotRowF64(up, r, xs);
        const exact = geluF64(g.acc) * u.acc;
        // Errors of both products, each scaled by the other factor's size (gelu' ≤ ~1.13).
        const bound = Math.abs(geluF64(g.acc)) * u.scale + 1.13 * g.scale * Math.abs(u.acc) + 1e-30;
        const err = Math.abs(got[1 + r]! - exact) / bound;
        worst = Math.max(worst, Number.isNaN(err) ? Infinity : err);
      }
      checks.push({ name: `matvec_multi gate/up + GELU ${rows}x${cols}`, maxRelErr: worst, untouched: sentinelsKept(got, (j) => j >= 1 && j < 1 + rows) });
    }
    if (type === GGMLType.Q4_K) checks.push(...(await checkQ4kLanes(kernels, own, keep)));
    return checks;
  } finally {
    for (const d of dispatches) d.destroy();
    for (const b of owned) b.destroy();
  }
}

/**
 * The Q4_K matvec at 16 and 32 lanes a row: the shapes above are small, so the fill rule
 * (q4kFillLanes) gives them 64 lanes; these have workgroups enough (at least 264) to keep fewer.
 * 16 lanes (E2B's 1,536 columns): one weight from a first row, three row tiles in one dispatch, and
 * gate/up with their GELU product; 32 lanes (2,048 columns): one weight. (8 lanes: the tall matrix.)
 */
async function checkQ4kLanes(kernels: LinearKernels, own: <T extends GPUBuffer>(b: T) => T, keep: (d: Dispatch) => Dispatch): Promise<LinearCheck[]> {
  const { device } = kernels;
  const type = GGMLType.Q4_K;
  const checks: LinearCheck[] = [];
  const upload = (m: Matrix, label: string) => own(uploadWeight(device, type, m.bytes, label));
  const half = 4400; // 275 workgroups of 16 rows
  const a = makeMatrix(type, 2 * half, 1536, 111);
  const x = seededNormals(1536, 112);
  const xBuf = own(uploadStorage(device, x, 'x lanes'));

  // One weight, rows [half, 2·half) by firstRow, y from an offset.
  expectQ4kLanes(1536, [half], false, 16);
  {
    const y = own(sentinelBuffer(device, half + 5, 'y 16 lanes'));
    const d = keep(await kernels.bindMatVec({ weight: upload(a, 'w 16 lanes'), type, rows: half, cols: 1536, firstRow: half, x: xBuf, y, yOffset: 3, threadPerRow: false }));
    submit(device, (pass) => d.encode(pass));
    const got = await readF32(device, y, half + 5);
    checks.push({ name: `Q4_K matvec ${half}x1536 at 16 lanes (firstRow, yOffset)`, maxRelErr: relErr(a, x, 1, got, { firstRow: half, rows: half, yOffset: 3 }), untouched: sentinelsKept(got, (j) => j >= 3 && j < 3 + half) });
  }

  // Three row tiles of the first half in one dispatch (each part's workgroups counted at 16 lanes).
  {
    const tiles = [rowsOf(a, 0, 2200), rowsOf(a, 2200, 3400), rowsOf(a, 3400, half)];
    expectQ4kLanes(1536, tiles.map((m) => m.rows), false, 16);
    const ys = tiles.map((m) => own(sentinelBuffer(device, m.rows + 2, 'y tile')));
    const d = keep(await kernels.bindMatVecMulti({
      cols: 1536, x: xBuf, parts: tiles.map((m, i) => ({ weight: upload(m, `w tile ${i}`), type, rows: m.rows, y: ys[i], yOffset: 2 })),
    }));
    submit(device, (pass) => d.encode(pass));
    let worst = 0;
    let kept = true;
    for (const [i, m] of tiles.entries()) {
      const got = await readF32(device, ys[i]!, m.rows + 2);
      worst = Math.max(worst, relErr(m, x, 1, got, { yOffset: 2 }));
      kept &&= sentinelsKept(got, (j) => j >= 2);
    }
    checks.push({ name: `Q4_K matvec_multi 3 weights (${tiles.map((m) => m.rows).join(', ')}) x 1536 at 16 lanes`, maxRelErr: worst, untouched: kept });
  }

  // gate (first half) / up (second half) with their GELU product.
  {
    const [gate, up] = [rowsOf(a, 0, half), rowsOf(a, half, 2 * half)];
    expectQ4kLanes(1536, [half, half], true, 16);
    const y = own(sentinelBuffer(device, half + 1, 'y gelu 16 lanes'));
    const d = keep(await kernels.bindMatVecMulti({
      cols: 1536, x: xBuf, gelu: { y, yOffset: 1 }, parts: [gate, up].map((m, i) => ({ weight: upload(m, `w gelu ${i}`), type, rows: half })),
    }));
    submit(device, (pass) => d.encode(pass));
    const got = await readF32(device, y, half + 1);
    checks.push({ name: `Q4_K matvec_multi gate/up + GELU ${half}x1536 at 16 lanes`, maxRelErr: geluProductErr(gate, up, x, got, 1), untouched: sentinelsKept(got, (j) => j >= 1) });
  }

  // 32 lanes: 2,200 rows of 2,048 (275 workgroups of 8 rows).
  {
    const rows = 2200;
    expectQ4kLanes(2048, [rows], false, 32);
    const m = makeMatrix(type, rows, 2048, 113);
    const x2 = seededNormals(2048, 114);
    const y = own(sentinelBuffer(device, rows + 2, 'y 32 lanes'));
    const d = keep(await kernels.bindMatVec({ weight: upload(m, 'w 32 lanes'), type, rows, cols: 2048, x: own(uploadStorage(device, x2, 'x 32 lanes')), y, threadPerRow: false }));
    submit(device, (pass) => d.encode(pass));
    const got = await readF32(device, y, rows + 2);
    checks.push({ name: `Q4_K matvec ${rows}x2048 at 32 lanes`, maxRelErr: relErr(m, x2, 1, got, {}), untouched: sentinelsKept(got, (j) => j < rows) });
  }
  return checks;
}

/** RMS(v)·n in float64, as the kernels define it: v·(mean(v²) + eps)^(−1/2)·n. */
function rmsF64(v: ArrayLike<number>, n: ArrayLike<number>, eps: number): Float64Array {
  let ss = 0;
  for (let i = 0; i < v.length; i++) ss += v[i]! * v[i]!;
  const inv = 1 / Math.sqrt(ss / v.length + eps);
  return Float64Array.from({ length: v.length }, (_, i) => v[i]! * inv * n[i]!);
}

/**
 * Q4_K matvecs that form their input from a residual stream (MatVecResidualInput), against
 * float64: gate/up + GELU over RMS(h + RMS(a)·n0)·n2 (an MLP's input), two weights over the same
 * input, and one weight with the gelu-times-aux epilogue over h + RMS(a)·n0 + RMS(a2)·n1, which it
 * also writes out (a per-layer input). h sits at an offset; the norm weights at offsets into one
 * table. Errors as in {@link checkMatVecVariants}; the written input relative to its largest value.
 */
export async function checkResidualInput(kernels: LinearKernels): Promise<LinearCheck[]> {
  const { device } = kernels;
  const type = GGMLType.Q4_K;
  const eps = 1e-6;
  const checks: LinearCheck[] = [];
  const owned: GPUBuffer[] = [];
  const dispatches: Dispatch[] = [];
  const own = <T extends GPUBuffer>(b: T): T => (owned.push(b), b);
  const keep = (d: Dispatch): Dispatch => (dispatches.push(d), d);
  try {
    // 37 rows take 64 lanes (the fill rule); 4,400 rows of 1,536 keep 16 (275 workgroups), as
    // E2B's narrow MLP does; 8,400 rows (525 workgroups at 16 lanes) take 8, as its wide MLP does.
    for (const [cols, rows, lanes] of [[768, 37, 64], [1536, 4400, 16], [1536, 8400, 8]] as const) {
      expectQ4kLanes(cols, [rows, rows], true, lanes, true);
      expectQ4kLanes(cols, [rows, 16], false, lanes, true);
      expectQ4kLanes(cols, [rows], false, lanes, true);
      const h = seededNormals(cols + 8, 91 + cols, 3);
      const hs = h.subarray(8);
      const a = seededNormals(cols, 92 + cols, 5);
      const a2 = seededNormals(cols, 93 + cols, 0.2);
      // Norm weights around 1, the table [pad 4][n0][n1][n2].
      const table = seededNormals(4 + 3 * cols, 94 + cols, 0.3).map((v) => 1 + v);
      const n = [0, 1, 2].map((j) => table.subarray(4 + j * cols, 4 + (j + 1) * cols));
      const hBuf = own(uploadStorage(device, h, 'h'));
      const aBuf = own(uploadStorage(device, a, 'a'));
      const a2Buf = own(uploadStorage(device, a2, 'a2'));
      const norms = own(uploadStorage(device, table, 'norms'));
      const ra = rmsF64(a, n[0]!, eps);
      const s1 = Float64Array.from(hs, (v, i) => v + ra[i]!);
      const mlpInput = rmsF64(s1, n[2]!, eps);
      const ra2 = rmsF64(a2, n[1]!, eps);
      const pleInput = Float64Array.from(s1, (v, i) => v + ra2[i]!);
      const mlp = { terms: [{ a: aBuf, norm: 4 }], norm: 4 + 2 * cols, norms, eps };

      // gate/up + GELU.
      const gate = makeMatrix(type, rows, cols, 95 + cols);
      const up = makeMatrix(type, rows, cols, 96 + cols);
      const y = own(sentinelBuffer(device, rows + 3, 'y'));
      const d = keep(await kernels.bindMatVecMulti({
        cols, x: hBuf, xOffset: 8, gelu: { y, yOffset: 1 }, residual: mlp,
        parts: [gate, up].map((m, i) => ({ weight: own(uploadWeight(device, type, m.bytes, `w ${i}`)), type, rows })),
      }));
      submit(device, (pass) => d.encode(pass));
      let got = await readF32(device, y, rows + 3);
      checks.push({ name: `residual input RMS(h + RMS(a)·n0)·n2, gate/up + GELU ${rows}x${cols}`, maxRelErr: geluProductErr(gate, up, mlpInput, got, 1), untouched: sentinelsKept(got, (j) => j >= 1 && j < 1 + rows) });

      // Two weights over the same formed input (split mode).
      const ms = [rows, 16].map((r, i) => makeMatrix(type, r, cols, 97 + i + cols));
      const ys = ms.map((m) => own(sentinelBuffer(device, m.rows + 2, 'y split')));
      const split = keep(await kernels.bindMatVecMulti({
        cols, x: hBuf, xOffset: 8, residual: mlp,
        parts: ms.map((m, i) => ({ weight: own(uploadWeight(device, type, m.bytes, `w split ${i}`)), type, rows: m.rows, y: ys[i], yOffset: 2 })),
      }));
      submit(device, (pass) => split.encode(pass));
      let worst = 0;
      let kept = true;
      for (const [i, m] of ms.entries()) {
        got = await readF32(device, ys[i]!, m.rows + 2);
        for (let r = 0; r < m.rows; r++) {
          const p = dotRowF64(m, r, mlpInput);
          worst = Math.max(worst, Math.abs(got[2 + r]! - p.acc) / p.scale || (Number.isNaN(got[2 + r]!) ? Infinity : 0));
        }
        kept &&= sentinelsKept(got, (j) => j >= 2);
      }
      checks.push({ name: `residual input, 2 weights (${ms.map((m) => m.rows).join(', ')}) x ${cols}`, maxRelErr: worst, untouched: kept });

      // One weight, gelu-times-aux, input h + RMS(a)·n0 + RMS(a2)·n1 written out.
      const w = makeMatrix(type, rows, cols, 99 + cols);
      const aux = seededNormals(rows + 2, 100, 1.5);
      const yg = own(sentinelBuffer(device, rows, 'y gate'));
      const out = own(sentinelBuffer(device, cols + 6, 'formed input'));
      const one = keep(await kernels.bindMatVec({
        weight: own(uploadWeight(device, type, w.bytes, 'w gate')), type, rows, cols, x: hBuf, xOffset: 8, y: yg,
        epilogue: 'gelu-times-aux', aux: own(uploadStorage(device, aux, 'aux')), auxOffset: 2,
        residual: { terms: [{ a: aBuf, norm: 4 }, { a: a2Buf, norm: 4 + cols }], norms, eps, out: { buffer: out, offset: 2 } },
      }));
      submit(device, (pass) => one.encode(pass));
      got = await readF32(device, yg, rows);
      worst = 0;
      for (let r = 0; r < rows; r++) {
        const p = dotRowF64(w, r, pleInput);
        const err = Math.abs(got[r]! - geluF64(p.acc) * aux[2 + r]!) / (1.13 * Math.abs(aux[2 + r]!) * p.scale + 1e-30);
        worst = Math.max(worst, Number.isNaN(err) ? Infinity : err);
      }
      checks.push({ name: `residual input h + RMS(a)·n0 + RMS(a2)·n1, gelu-times-aux ${rows}x${cols}`, maxRelErr: worst, untouched: true });
      const written = await readF32(device, out, cols + 6);
      const peak = Math.max(...pleInput.map(Math.abs));
      let inputErr = 0;
      for (let c = 0; c < cols; c++) inputErr = Math.max(inputErr, Math.abs(written[2 + c]! - pleInput[c]!) / peak || (Number.isNaN(written[2 + c]!) ? Infinity : 0));
      checks.push({ name: `residual input written out (${cols})`, maxRelErr: inputErr, untouched: sentinelsKept(written, (j) => j >= 2 && j < 2 + cols) });

      // One weight over RMS((h + RMS(a)·n0)·scale)·n2, s written out: a layer's end folded into
      // the next layer's q (Gemma 4's layer scale).
      const layerScale = 0.7;
      const sScaled = Float64Array.from(s1, (v) => v * layerScale);
      const qInput = rmsF64(sScaled, n[2]!, eps);
      const yq = own(sentinelBuffer(device, rows + 1, 'y q'));
      const hOut = own(sentinelBuffer(device, cols, "h'"));
      const q = keep(await kernels.bindMatVec({
        weight: own(uploadWeight(device, type, w.bytes, 'w q')), type, rows, cols, x: hBuf, xOffset: 8, y: yq, yOffset: 1,
        residual: { ...mlp, scale: layerScale, out: { buffer: hOut } },
      }));
      submit(device, (pass) => q.encode(pass));
      got = await readF32(device, yq, rows + 1);
      worst = 0;
      for (let r = 0; r < rows; r++) {
        const p = dotRowF64(w, r, qInput);
        worst = Math.max(worst, Math.abs(got[1 + r]! - p.acc) / p.scale || (Number.isNaN(got[1 + r]!) ? Infinity : 0));
      }
      checks.push({ name: `residual input RMS((h + RMS(a)·n0)·${layerScale})·n2 ${rows}x${cols}`, maxRelErr: worst, untouched: sentinelsKept(got, (j) => j >= 1) });
      const hWritten = await readF32(device, hOut, cols);
      const sPeak = Math.max(...sScaled.map(Math.abs));
      let sErr = 0;
      for (let c = 0; c < cols; c++) sErr = Math.max(sErr, Math.abs(hWritten[c]! - sScaled[c]!) / sPeak || (Number.isNaN(hWritten[c]!) ? Infinity : 0));
      checks.push({ name: `residual sum (h + RMS(a)·n0)·${layerScale} written out (${cols})`, maxRelErr: sErr, untouched: true });
    }
    return checks;
  } finally {
    for (const d of dispatches) d.destroy();
    for (const b of owned) b.destroy();
  }
}

/** Error codes of bad residual-input bindings (see the comments; 'none' where one binds). */
export async function residualInputErrorCodes(kernels: LinearKernels): Promise<string[]> {
  const { device } = kernels;
  const cols = 256;
  const q4k = uploadWeight(device, GGMLType.Q4_K, new Uint8Array(144 * 8), 'w q4k');
  const q8 = uploadWeight(device, GGMLType.Q8_0, new Uint8Array(34 * 8 * 8), 'w q8');
  const x = uploadStorage(device, new Float32Array(cols), 'x');
  const a = uploadStorage(device, new Float32Array(cols), 'a');
  const norms = uploadStorage(device, new Float32Array(2 * cols), 'norms');
  const y = uploadStorage(device, new Float32Array(cols), 'y');
  const codes: string[] = [];
  const attempt = async (f: () => Promise<Dispatch>) => codes.push(await errorCode(f));
  const residual = { terms: [{ a, norm: 0 }], norm: cols, norms, eps: 1e-6 };
  await attempt(() => kernels.bindMatVec({ weight: q4k, type: GGMLType.Q4_K, rows: 8, cols, x, y, residual })); // fine
  await attempt(() => kernels.bindMatVec({ weight: q8, type: GGMLType.Q8_0, rows: 8, cols, x, y, residual })); // not Q4_K
  await attempt(() => kernels.bindMatVec({ weight: q4k, type: GGMLType.Q4_K, rows: 8, cols, x, y, residual: { ...residual, norm: 2 } })); // offset not a multiple of 4
  await attempt(() => kernels.bindMatVec({ weight: q4k, type: GGMLType.Q4_K, rows: 8, cols, x, y, residual: { ...residual, norm: 2 * cols } })); // norms too small
  await attempt(() => kernels.bindMatVec({ weight: q4k, type: GGMLType.Q4_K, rows: 8, cols, x, y, residual: { ...residual, terms: [] } })); // no term
  await attempt(() => kernels.bindMatVec({ weight: q4k, type: GGMLType.Q4_K, rows: 8, cols, x, y, residual: { ...residual, scale: Number.NaN } })); // scale not finite
  await attempt(() => kernels.bindMatVecMulti({ cols, x, parts: [{ weight: q4k, type: GGMLType.Q4_K, rows: 8, y }], residual: { ...residual, out: { buffer: a } } })); // writes a term
  await attempt(() => kernels.bindMatVecMulti({ cols, x, gelu: { y }, parts: [0, 1].map(() => ({ weight: q4k, type: GGMLType.Q4_K, rows: 8 })), residual: { ...residual, out: { buffer: x } } })); // out on a pair
  const ys = [0, 1, 2].map((i) => uploadStorage(device, new Float32Array(8), `y${i}`));
  await attempt(() => kernels.bindMatVecMulti({ cols, x, parts: ys.map((yi) => ({ weight: q4k, type: GGMLType.Q4_K, rows: 8, y: yi })), residual })); // three weights
  for (const b of [q4k, q8, x, a, norms, y, ...ys]) b.destroy();
  return codes;
}

/** What {@link residualInputErrorCodes} must return. */
export const RESIDUAL_INPUT_ERROR_CODES = ['none', 'unsupported', 'bad-argument', 'bad-argument', 'bad-argument', 'bad-argument', 'bad-argument', 'bad-argument', 'bad-argument'];

/** The message of the error a broken shader produces through the pipeline cache ('' if none). */
export async function brokenShaderMessage(device: GPUDevice): Promise<{ message: string; isCompileError: boolean; part: string; line: number }> {
  const cache = new PipelineCache(device);
  try {
    await cache.get({
      name: 'broken',
      parts: [
        { name: 'head.wgsl', source: '// a fine first part\nconst N: u32 = 4u;' },
        { name: 'body.wgsl', source: '@compute @workgroup_size(N)\nfn main() {\n  let a: u32 = undefined_thing;\n}' },
      ],
      layout: 'auto',
    });
    return { message: '', isCompileError: false, part: '', line: 0 };
  } catch (e) {
    const first = e instanceof ShaderCompileError ? e.messages[0] : undefined;
    return { message: String((e as Error).message), isCompileError: e instanceof ShaderCompileError, part: first?.part ?? '', line: first?.line ?? 0 };
  }
}

/** Error codes from bindings that must be refused before any GPU work. */
export async function badBindingCodes(kernels: LinearKernels): Promise<string[]> {
  const { device } = kernels;
  const w = uploadWeight(device, GGMLType.Q8_0, new Uint8Array(34 * 8), 'w');
  const x = uploadStorage(device, new Float32Array(256), 'x');
  const y = uploadStorage(device, new Float32Array(8), 'y');
  const codes: string[] = [];
  const attempt = async (f: () => Promise<unknown>) => codes.push(await errorCode(f));
  await attempt(() => kernels.bindMatVec({ weight: w, type: GGMLType.Q8_0, rows: 8, cols: 48, x, y })); // cols not a multiple of 32
  await attempt(() => kernels.bindMatVec({ weight: w, type: GGMLType.Q8_0, rows: 9, cols: 32, x, y })); // too few weight bytes
  await attempt(() => kernels.bindMatVec({ weight: w, type: GGMLType.Q8_0, rows: 8, cols: 32, x, xOffset: 2, y })); // xOffset not a multiple of 4
  await attempt(() => kernels.bindMatMul({ weight: w, type: GGMLType.Q8_0, rows: 8, cols: 32, tokens: 2, x, y })); // y too small for 2 tokens
  await attempt(() => kernels.bindMatVec({ weight: w, type: GGMLType.Q2_K, rows: 1, cols: 256, x, y })); // unsupported dtype
  for (const b of [w, x, y]) b.destroy();
  return codes;
}
