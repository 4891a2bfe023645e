// GPU checks of the training kernels: the input gradient through frozen GGUF weights
// (matmul.backward.wgsl), the LoRA gradients (gemm_f32.wgsl), the cross-entropy loss with the
// logit soft-cap (cross_entropy.wgsl) and AdamW with global-norm clipping (adamw.wgsl,
// sum_squares.wgsl). Each GPU result is compared with a float64 computation of the same gradient,
// and each float64 gradient is itself checked against central differences of its float64 forward,
// so a wrong formula cannot pass by being wrong on both sides.
import { readBack, uploadStorage } from '../../src/core/gpu/buffers.js';
import { LinearBackwardKernels, type Dispatch } from '../../src/core/gpu/linear-backward.js';
import { uploadWeight, weightRowBytes } from '../../src/core/gpu/linear.js';
import { LossKernels, MASKED_LABEL } from '../../src/core/gpu/loss.js';
import { GGML_TYPES, GGMLType, typeName } from '../../src/core/gguf/types.js';
import { dequantize } from '../../src/core/quant/dequant.js';
import { errorCode } from './error-code.js';
import { quantize } from '../../src/core/quant/quantize.js';
import { GpuAdamW, GpuGlobalNorm } from '../../src/core/train/gpu-adamw.js';
import { AdamW, clipByGlobalNorm, learningRateFactor } from '../../src/core/train/optimizer.js';

/** What one check measured. */
export interface Check {
  readonly name: string;
  /** The worst error (NaN counts as Infinity). */
  readonly err: number;
  /** The bound it must meet. */
  readonly tolerance: number;
}

/** GPU (f32) against float64: relative to the magnitude of the terms summed. */
export const GPU_TOLERANCE = 1e-5;
/** Central differences (Richardson-extrapolated) against the float64 analytic gradient. */
export const FD_TOLERANCE = 1e-6;

/** The checks that missed their bound, as lines an assertion can show (an empty list passes). */
export function failures(checks: readonly Check[]): string[] {
  return checks.filter((c) => !(c.err <= c.tolerance)).map((c) => `${c.name}: ${c.err.toExponential(2)} > ${c.tolerance}`);
}

/** Every check's measured error, so a failure message shows the margins of the others too. */
export function report(checks: readonly Check[]): string {
  return checks.map((c) => `${c.name}: ${c.err.toExponential(2)}`).join('\n  ');
}

// ---- helpers ----

function normals(n: number, seed: number, std = 1): Float32Array<ArrayBuffer> {
  let s = (seed * 2654435761) >>> 0;
  const next = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 15), z | 1);
    z ^= z + Math.imul(z ^ (z >>> 7), z | 61);
    return (((z ^ (z >>> 14)) >>> 0) + 0.5) / 2 ** 32;
  };
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = std * Math.sqrt(-2 * Math.log(next())) * Math.cos(2 * Math.PI * next());
  return out;
}

const worse = (a: number, b: number): number => Math.max(a, Number.isNaN(b) ? Infinity : b);

function submit(device: GPUDevice, record: (pass: GPUComputePassEncoder) => void): void {
  const encoder = device.createCommandEncoder();
  const pass = encoder.beginComputePass();
  record(pass);
  pass.end();
  device.queue.submit([encoder.finish()]);
}

async function readF32(device: GPUDevice, buffer: GPUBuffer, length: number): Promise<Float32Array> {
  return new Float32Array(await readBack(device, buffer, length * 4));
}

/**
 * The worst relative error of central differences of `f` at `theta` along random directions
 * against the directional derivative Σ grad_i·d_i. Richardson extrapolation of two step sizes
 * cancels the h² term, so the comparison is limited by rounding only.
 */
function fdCheck(f: (theta: Float64Array) => number, theta: Float64Array, grad: Float64Array, directions: number, seed: number, h = 1e-3): number {
  let worst = 0;
  for (let k = 0; k < directions; k++) {
    const d = normals(theta.length, seed + k);
    const at = (step: number) => {
      const p = theta.slice();
      for (let i = 0; i < p.length; i++) p[i]! += step * d[i]!;
      return f(p);
    };
    const central = (step: number) => (at(step) - at(-step)) / (2 * step);
    const fd = (4 * central(h / 2) - central(h)) / 3;
    let analytic = 0;
    let scale = 0;
    for (let i = 0; i < grad.length; i++) {
      analytic += grad[i]! * d[i]!;
      scale += Math.abs(grad[i]! * d[i]!);
    }
    worst = worse(worst, Math.abs(fd - analytic) / Math.max(Math.abs(analytic), 1e-3 * scale));
  }
  return worst;
}

/** A single-coordinate central difference (for the masked-token check: it must be exactly 0). */
function coordinateDerivative(f: (theta: Float64Array) => number, theta: Float64Array, i: number, h = 1e-3): number {
  const p = theta.slice();
  p[i] = theta[i]! + h;
  const up = f(p);
  p[i] = theta[i]! - h;
  return (up - f(p)) / (2 * h);
}

// ---- 1. dx = Wᵀ·dy through GGUF weights ----

/** Σ_r W[r0 + r][c]·dy[t][r] in float64 and the scale Σ_r |W·dy| each output is judged by. */
function wtDy(w: Float32Array | Float64Array, cols: number, r0: number, rows: number, dy: ArrayLike<number>, dyOffset: number, dyStride: number, T: number): { value: Float64Array; scale: Float64Array } {
  const value = new Float64Array(T * cols);
  const scale = new Float64Array(T * cols);
  for (let t = 0; t < T; t++) {
    for (let r = 0; r < rows; r++) {
      const g = dy[dyOffset + t * dyStride + r]!;
      const row = (r0 + r) * cols;
      for (let c = 0; c < cols; c++) {
        const p = w[row + c]! * g;
        value[t * cols + c]! += p;
        scale[t * cols + c]! += Math.abs(p);
      }
    }
  }
  return { value, scale };
}

/** Shapes: K-quants need rows of 256; 70 rows = several row chunks and a ragged one. */
function colsFor(type: GGMLType): number {
  return GGML_TYPES.get(type)!.blockSize === 256 ? 512 : 160;
}

/**
 * dx through a weight of `type`: the whole weight; two row tiles in separate buffers (the second
 * accumulating); a firstRow binding into a strided dx that already holds values (accumulate), the
 * elements it must not touch checked; and the same binding at another token count.
 */
export async function checkMatMulBackward(kernels: LinearBackwardKernels, type: GGMLType): Promise<Check[]> {
  const { device } = kernels;
  const name = typeName(type);
  const rows = 70;
  const cols = colsFor(type);
  const T = 33;
  const quantBytes = quantize(type, normals(rows * cols, 100 + type, 1 / Math.sqrt(cols)));
  const values = dequantize(type, quantBytes, rows * cols); // exactly what the bytes stand for
  const checks: Check[] = [];
  const owned: GPUBuffer[] = [];
  const binds: Dispatch[] = [];
  const own = (b: GPUBuffer) => (owned.push(b), b);
  const keep = (d: Dispatch) => (binds.push(d), d);
  try {
    const dy = normals(T * rows, 200 + type);
    const dyBuf = own(uploadStorage(device, dy, 'dy'));
    const wBuf = own(uploadWeight(device, type, quantBytes, `${name} w`));
    const rowBytes = weightRowBytes(type, cols);
    const tileA = own(uploadWeight(device, type, quantBytes.subarray(0, 40 * rowBytes), `${name} rows 0..40`));
    const tileB = own(uploadWeight(device, type, quantBytes.subarray(40 * rowBytes), `${name} rows 40..70`));
    const judge = (got: Float32Array, exact: { value: Float64Array; scale: Float64Array }, base: Float32Array | null, tokens: number, dxOffset = 0, dxStride = cols) => {
      let e = 0;
      for (let t = 0; t < tokens; t++) {
        for (let c = 0; c < cols; c++) {
          const at = dxOffset + t * dxStride + c;
          const want = exact.value[t * cols + c]! + (base ? base[at]! : 0);
          e = worse(e, Math.abs(got[at]! - want) / (exact.scale[t * cols + c]! + (base ? Math.abs(base[at]!) * 1e-2 : 0) + 1e-30));
        }
      }
      return e;
    };

    // Whole weight, T = 33 and T = 5 (same binding), dx overwritten.
    const dx = own(uploadStorage(device, new Float32Array(T * cols).fill(7), 'dx'));
    const whole = keep(await kernels.bindMatMulBackward({ weight: wBuf, type, rows, cols, dy: dyBuf, dx, tokens: T }));
    const exact = wtDy(values, cols, 0, rows, dy, 0, rows, T);
    for (const tokens of [T, 5]) {
      device.queue.writeBuffer(dx, 0, new Float32Array(T * cols).fill(7));
      submit(device, (pass) => whole.encode(pass, tokens));
      const got = await readF32(device, dx, T * cols);
      checks.push({ name: `${name} dx=Wᵀdy T=${tokens}`, err: judge(got, exact, null, tokens), tolerance: GPU_TOLERANCE });
      let kept = 0;
      for (let i = tokens * cols; i < T * cols; i++) if (got[i] !== 7) kept = Infinity;
      checks.push({ name: `${name} T=${tokens} leaves other tokens alone`, err: kept, tolerance: 0 });
    }

    // Row tiles: tile A writes, tile B accumulates (dy columns 40..70 via dyOffset).
    const dxTiles = own(uploadStorage(device, new Float32Array(T * cols).fill(-3), 'dx tiles'));
    const tA = keep(await kernels.bindMatMulBackward({ weight: tileA, type, rows: 40, cols, dy: dyBuf, dyStride: rows, dx: dxTiles, tokens: T }));
    const tB = keep(await kernels.bindMatMulBackward({ weight: tileB, type, rows: 30, cols, dy: dyBuf, dyOffset: 40, dyStride: rows, dx: dxTiles, tokens: T, accumulate: true }));
    submit(device, (pass) => {
      tA.encode(pass);
      tB.encode(pass);
    });
    checks.push({ name: `${name} row tiles (write + accumulate)`, err: judge(await readF32(device, dxTiles, T * cols), exact, null, T), tolerance: GPU_TOLERANCE });

    // firstRow 40 of the whole buffer, accumulating into a strided, offset dx holding values.
    const dxOffset = 3;
    const dxStride = cols + 5;
    const len = dxOffset + T * dxStride;
    const base = normals(len, 300 + type);
    const dxStrided = own(uploadStorage(device, base, 'dx strided'));
    const part = keep(await kernels.bindMatMulBackward({ weight: wBuf, type, rows: 30, cols, firstRow: 40, dy: dyBuf, dyOffset: 40, dyStride: rows, dx: dxStrided, dxOffset, dxStride, tokens: T, accumulate: true }));
    submit(device, (pass) => part.encode(pass, T));
    const gotStrided = await readF32(device, dxStrided, len);
    checks.push({ name: `${name} firstRow, dx += (offset, stride)`, err: judge(gotStrided, wtDy(values, cols, 40, 30, dy, 40, rows, T), base, T, dxOffset, dxStride), tolerance: GPU_TOLERANCE });
    let untouched = 0;
    for (let i = 0; i < len; i++) {
      const inside = i >= dxOffset && (i - dxOffset) % dxStride < cols;
      if (!inside && gotStrided[i] !== base[i]) untouched = Infinity;
    }
    checks.push({ name: `${name} firstRow leaves the stride gaps alone`, err: untouched, tolerance: 0 });

    // The float64 formula is the gradient of L(x) = Σ_t dy_t·(W x_t) (the forward matmul).
    const x0 = Float64Array.from(normals(4 * cols, 400 + type));
    const forwardL = (x: Float64Array) => {
      let L = 0;
      for (let t = 0; t < 4; t++) {
        for (let r = 0; r < rows; r++) {
          let y = 0;
          for (let c = 0; c < cols; c++) y += values[r * cols + c]! * x[t * cols + c]!;
          L += dy[t * rows + r]! * y;
        }
      }
      return L;
    };
    checks.push({ name: `${name} FD of Σ dy·Wx vs Wᵀdy`, err: fdCheck(forwardL, x0, wtDy(values, cols, 0, rows, dy, 0, rows, 4).value, 2, 500 + type), tolerance: FD_TOLERANCE });
    return checks;
  } finally {
    for (const d of binds) d.destroy();
    for (const b of owned) b.destroy();
  }
}

// ---- 2. LoRA gradients ----

interface LoraShape {
  nIn: number;
  nOut: number;
  r: number;
  s: number;
}

/** L = Σ_t dy_t·(W x_t + s·B·A·x_t) in float64. */
function loraLoss(w: Float32Array, A: ArrayLike<number>, B: ArrayLike<number>, x: ArrayLike<number>, dy: ArrayLike<number>, T: number, sh: LoraShape): number {
  const { nIn, nOut, r, s } = sh;
  let L = 0;
  for (let t = 0; t < T; t++) {
    const u = new Float64Array(r);
    for (let q = 0; q < r; q++) for (let c = 0; c < nIn; c++) u[q]! += A[q * nIn + c]! * x[t * nIn + c]!;
    for (let o = 0; o < nOut; o++) {
      let y = 0;
      for (let c = 0; c < nIn; c++) y += w[o * nIn + c]! * x[t * nIn + c]!;
      for (let q = 0; q < r; q++) y += s * B[o * r + q]! * u[q]!;
      L += dy[t * nOut + o]! * y;
    }
  }
  return L;
}

/** The float64 gradients of loraLoss, with per-element scales Σ|terms| for judging f32 results. */
function loraGrads(w: Float32Array, A: ArrayLike<number>, B: ArrayLike<number>, x: ArrayLike<number>, dy: ArrayLike<number>, T: number, sh: LoraShape) {
  const { nIn, nOut, r, s } = sh;
  const u = new Float64Array(T * r);
  for (let t = 0; t < T; t++) for (let q = 0; q < r; q++) for (let c = 0; c < nIn; c++) u[t * r + q]! += A[q * nIn + c]! * x[t * nIn + c]!;
  const dt = new Float64Array(T * r);
  const dtScale = new Float64Array(T * r);
  for (let t = 0; t < T; t++) {
    for (let q = 0; q < r; q++) {
      for (let o = 0; o < nOut; o++) {
        const p = s * B[o * r + q]! * dy[t * nOut + o]!;
        dt[t * r + q]! += p;
        dtScale[t * r + q]! += Math.abs(p);
      }
    }
  }
  const dB = new Float64Array(nOut * r);
  const dBScale = new Float64Array(nOut * r);
  for (let o = 0; o < nOut; o++) {
    for (let q = 0; q < r; q++) {
      for (let t = 0; t < T; t++) {
        const p = s * dy[t * nOut + o]! * u[t * r + q]!;
        dB[o * r + q]! += p;
        dBScale[o * r + q]! += Math.abs(p);
      }
    }
  }
  const dA = new Float64Array(r * nIn);
  const dAScale = new Float64Array(r * nIn);
  const dx = new Float64Array(T * nIn);
  const dxScale = new Float64Array(T * nIn);
  for (let t = 0; t < T; t++) {
    for (let q = 0; q < r; q++) {
      for (let c = 0; c < nIn; c++) {
        const pa = dt[t * r + q]! * x[t * nIn + c]!;
        dA[q * nIn + c]! += pa;
        dAScale[q * nIn + c]! += Math.abs(dtScale[t * r + q]! * x[t * nIn + c]!);
        const px = dt[t * r + q]! * A[q * nIn + c]!;
        dx[t * nIn + c]! += px;
        dxScale[t * nIn + c]! += Math.abs(dtScale[t * r + q]! * A[q * nIn + c]!);
      }
    }
    for (let o = 0; o < nOut; o++) {
      for (let c = 0; c < nIn; c++) {
        const p = w[o * nIn + c]! * dy[t * nOut + o]!;
        dx[t * nIn + c]! += p;
        dxScale[t * nIn + c]! += Math.abs(p);
      }
    }
  }
  // The scale of a dB element is Σ|s·dy·u| with u itself a sum: bound |u| by Σ|A·x|.
  const uAbs = new Float64Array(T * r);
  for (let t = 0; t < T; t++) for (let q = 0; q < r; q++) for (let c = 0; c < nIn; c++) uAbs[t * r + q]! += Math.abs(A[q * nIn + c]! * x[t * nIn + c]!);
  dBScale.fill(0);
  for (let o = 0; o < nOut; o++) for (let q = 0; q < r; q++) for (let t = 0; t < T; t++) dBScale[o * r + q]! += Math.abs(s * dy[t * nOut + o]!) * uAbs[t * r + q]!;
  return { dA, dAScale, dB, dBScale, dx, dxScale, dt, dtScale };
}

/**
 * The LoRA backward (bindLoraBackward) after the frozen weight's own dx (F32 weight through
 * matmul_backward), all in one pass: dA, dB accumulate onto values already there, dx sums both
 * branches. Shapes cross every tile edge: out 100, in 160 (not multiples of 64), rank 5,
 * up to 70 tokens (two token tiles); run at T = 70 and T = 9. Also a fixed-size gemm_f32 with
 * transposed, offset operands.
 */
export async function checkLoraBackward(kernels: LinearBackwardKernels): Promise<Check[]> {
  const { device } = kernels;
  const sh: LoraShape = { nIn: 160, nOut: 100, r: 5, s: 1.75 };
  const { nIn, nOut, r, s } = sh;
  const maxT = 70;
  const checks: Check[] = [];
  const owned: GPUBuffer[] = [];
  const binds: Dispatch[] = [];
  const own = (b: GPUBuffer) => (owned.push(b), b);
  const keep = (d: Dispatch) => (binds.push(d), d);
  try {
    const w = normals(nOut * nIn, 1, 1 / Math.sqrt(nIn));
    const A = normals(r * nIn, 2, 1 / Math.sqrt(nIn));
    const B = normals(nOut * r, 3, 0.5);
    const x = normals(maxT * nIn, 4);
    const dy = normals(maxT * nOut, 5);
    const da0 = normals(r * nIn, 6, 0.1);
    const db0 = normals(nOut * r, 7, 0.1);
    // A and B in one flat parameter buffer (A at 8, B after it), dA and dB likewise in one gradient buffer.
    const aOff = 8;
    const bOff = aOff + r * nIn + 4;
    const flat = new Float32Array(bOff + nOut * r + 3);
    flat.set(A, aOff);
    flat.set(B, bOff);
    const gflat = new Float32Array(flat.length);
    gflat.set(da0, aOff);
    gflat.set(db0, bOff);
    const paramsBuf = own(uploadStorage(device, flat, 'lora params'));
    const gradsBuf = own(uploadStorage(device, gflat, 'lora grads'));
    const wBuf = own(uploadWeight(device, GGMLType.F32, new Uint8Array(w.buffer), 'w f32'));
    const xBuf = own(uploadStorage(device, x, 'x'));
    const dyBuf = own(uploadStorage(device, dy, 'dy'));
    const dxBuf = own(uploadStorage(device, new Float32Array(maxT * nIn), 'dx'));
    const scratch = own(uploadStorage(device, new Float32Array(2 * maxT * r + 8), 't, dt'));
    const dtOffset = maxT * r + 8;
    const frozen = keep(await kernels.bindMatMulBackward({ weight: wBuf, type: GGMLType.F32, rows: nOut, cols: nIn, dy: dyBuf, dx: dxBuf, tokens: maxT }));
    const lora = keep(
      await kernels.bindLoraBackward({
        rank: r, inFeatures: nIn, outFeatures: nOut, scale: s, tokens: maxT,
        a: paramsBuf, aOffset: aOff, b: paramsBuf, bOffset: bOff, da: gradsBuf, daOffset: aOff, db: gradsBuf, dbOffset: bOff,
        x: { buffer: xBuf }, dy: { buffer: dyBuf }, t: { buffer: scratch }, dt: { buffer: scratch, offset: dtOffset }, dx: { buffer: dxBuf },
      }),
    );
    for (const T of [maxT, 9]) {
      device.queue.writeBuffer(gradsBuf, 0, gflat);
      submit(device, (pass) => {
        frozen.encode(pass, T);
        lora.encode(pass, T);
      });
      const grads = await readF32(device, gradsBuf, gflat.length);
      const dxGot = await readF32(device, dxBuf, maxT * nIn);
      const dtGot = await readF32(device, scratch, dtOffset + maxT * r);
      const exact = loraGrads(w, A, B, x, dy, T, sh);
      const judge = (got: ArrayLike<number>, at: number, want: Float64Array, scale: Float64Array, base?: Float32Array) => {
        let e = 0;
        for (let i = 0; i < want.length; i++) {
          const expected = want[i]! + (base ? base[i]! : 0);
          e = worse(e, Math.abs(got[at + i]! - expected) / (scale[i]! + (base ? Math.abs(base[i]!) * 1e-2 : 0) + 1e-30));
        }
        return e;
      };
      checks.push({ name: `lora dA += dtᵀx T=${T}`, err: judge(grads, aOff, exact.dA, exact.dAScale, da0), tolerance: GPU_TOLERANCE });
      checks.push({ name: `lora dB += s·dyᵀ(Ax) T=${T}`, err: judge(grads, bOff, exact.dB, exact.dBScale, db0), tolerance: GPU_TOLERANCE });
      checks.push({ name: `lora dt = s·dy·B T=${T}`, err: judge(dtGot, dtOffset, exact.dt, exact.dtScale), tolerance: GPU_TOLERANCE });
      checks.push({ name: `dx = Wᵀdy + Aᵀdt T=${T}`, err: judge(dxGot, 0, exact.dx.subarray(0, T * nIn), exact.dxScale), tolerance: GPU_TOLERANCE });
      let gaps = 0;
      for (let i = 0; i < gflat.length; i++) {
        const inA = i >= aOff && i < aOff + r * nIn;
        const inB = i >= bOff && i < bOff + nOut * r;
        if (!inA && !inB && grads[i] !== gflat[i]) gaps = Infinity;
      }
      checks.push({ name: `lora T=${T} writes only dA and dB`, err: gaps, tolerance: 0 });
    }

    // t = A·x as the backward recomputed it (rows of the last call, T = 9).
    {
      const tGot = await readF32(device, scratch, 9 * r);
      let e = 0;
      for (let t = 0; t < 9; t++) {
        for (let q = 0; q < r; q++) {
          let v = 0;
          let sc = 0;
          for (let c = 0; c < nIn; c++) {
            v += A[q * nIn + c]! * x[t * nIn + c]!;
            sc += Math.abs(A[q * nIn + c]! * x[t * nIn + c]!);
          }
          e = worse(e, Math.abs(tGot[t * r + q]! - v) / sc);
        }
      }
      checks.push({ name: 'lora t = A·x (recomputed)', err: e, tolerance: GPU_TOLERANCE });
    }
    // A binding that reuses the forward's t (recomputeT false) and wants no dx: the same dA, dB; dx untouched.
    {
      const reuse = keep(
        await kernels.bindLoraBackward({
          rank: r, inFeatures: nIn, outFeatures: nOut, scale: s, tokens: maxT, recomputeT: false,
          a: paramsBuf, aOffset: aOff, b: paramsBuf, bOffset: bOff, da: gradsBuf, daOffset: aOff, db: gradsBuf, dbOffset: bOff,
          x: { buffer: xBuf }, dy: { buffer: dyBuf }, t: { buffer: scratch }, dt: { buffer: scratch, offset: dtOffset },
        }),
      );
      const dxBefore = await readF32(device, dxBuf, maxT * nIn);
      device.queue.writeBuffer(gradsBuf, 0, new Float32Array(gflat.length));
      submit(device, (pass) => reuse.encode(pass, 9));
      const grads = await readF32(device, gradsBuf, gflat.length);
      const dxAfter = await readF32(device, dxBuf, maxT * nIn);
      const exact = loraGrads(w, A, B, x, dy, 9, sh);
      let e = 0;
      for (let i = 0; i < r * nIn; i++) e = worse(e, Math.abs(grads[aOff + i]! - exact.dA[i]!) / exact.dAScale[i]!);
      for (let i = 0; i < nOut * r; i++) e = worse(e, Math.abs(grads[bOff + i]! - exact.dB[i]!) / exact.dBScale[i]!);
      if (!dxAfter.every((v, i) => v === dxBefore[i])) e = Infinity;
      checks.push({ name: 'lora reusing t, without dx: dA, dB from zero', err: e, tolerance: GPU_TOLERANCE });
    }

    // The float64 gradients are those of L(A, B, x) (a smaller problem keeps the FD loops short).
    const T = 6;
    const A64 = Float64Array.from(A);
    const B64 = Float64Array.from(B);
    const x64 = Float64Array.from(x.subarray(0, T * nIn));
    const g = loraGrads(w, A64, B64, x64, dy, T, sh);
    checks.push({ name: 'lora FD dA', err: fdCheck((a) => loraLoss(w, a, B64, x64, dy, T, sh), A64, g.dA, 2, 11), tolerance: FD_TOLERANCE });
    checks.push({ name: 'lora FD dB', err: fdCheck((b) => loraLoss(w, A64, b, x64, dy, T, sh), B64, g.dB, 2, 12), tolerance: FD_TOLERANCE });
    checks.push({ name: 'lora FD dx', err: fdCheck((xx) => loraLoss(w, A64, B64, xx, dy, T, sh), x64, g.dx, 2, 13), tolerance: FD_TOLERANCE });

    // A fixed-size product with transposed operands at offsets: C(7x45) = 0.5·Pᵀ·Q, P [23][7], Q [45][23].
    const P = normals(23 * 7 + 2, 21);
    const Q = normals(45 * 23 + 1, 22);
    const pBuf = own(uploadStorage(device, P, 'P'));
    const qBuf = own(uploadStorage(device, Q, 'Q'));
    const cBuf = own(uploadStorage(device, new Float32Array(7 * 45 + 5).fill(9), 'C'));
    const gemm = keep(await kernels.bindGemm({ m: 7, n: 45, k: 23, a: pBuf, aOffset: 2, aStrides: [1, 7], b: qBuf, bOffset: 1, bStrides: [1, 23], c: cBuf, cOffset: 5, cStrides: [45, 1], alpha: 0.5 }));
    submit(device, (pass) => gemm.encode(pass));
    const cGot = await readF32(device, cBuf, 7 * 45 + 5);
    let e = 0;
    for (let i = 0; i < 7; i++) {
      for (let j = 0; j < 45; j++) {
        let v = 0;
        let sc = 0;
        for (let k = 0; k < 23; k++) {
          const p = 0.5 * P[2 + k * 7 + i]! * Q[1 + j * 23 + k]!;
          v += p;
          sc += Math.abs(p);
        }
        e = worse(e, Math.abs(cGot[5 + i * 45 + j]! - v) / sc);
      }
    }
    for (let i = 0; i < 5; i++) if (cGot[i] !== 9) e = Infinity;
    checks.push({ name: 'gemm_f32 fixed C = α·Pᵀ·Qᵀ (offsets, strides)', err: e, tolerance: GPU_TOLERANCE });
    return checks;
  } finally {
    for (const d of binds) d.destroy();
    for (const b of owned) b.destroy();
  }
}

// ---- 3. cross-entropy with the soft-cap ----

/** Float64 loss per token and dz = (softmax(c) − onehot)·(1 − tanh²)/N (0 rows for masked labels). */
function crossEntropyF64(z: ArrayLike<number>, labels: readonly number[], V: number, cap: number, N: number) {
  const T = labels.length;
  const loss = new Float64Array(T);
  const dz = new Float64Array(T * V);
  const scale = new Float64Array(T * V);
  for (let t = 0; t < T; t++) {
    const label = labels[t]!;
    if (label === MASKED_LABEL) continue;
    const c = new Float64Array(V);
    const th = new Float64Array(V);
    let max = -Infinity;
    for (let i = 0; i < V; i++) {
      th[i] = cap > 0 ? Math.tanh(z[t * V + i]! / cap) : 0;
      c[i] = cap > 0 ? cap * th[i]! : z[t * V + i]!;
      max = Math.max(max, c[i]!);
    }
    let sum = 0;
    for (let i = 0; i < V; i++) sum += Math.exp(c[i]! - max);
    loss[t] = Math.log(sum) + max - c[label]!;
    for (let i = 0; i < V; i++) {
      const p = Math.exp(c[i]! - max) / sum;
      const d = (1 - th[i]!) * (1 + th[i]!) / N;
      dz[t * V + i] = (p - (i === label ? 1 : 0)) * d;
      scale[t * V + i] = (p + (i === label ? 1 : 0)) * d;
    }
  }
  return { loss, dz, scale };
}

/** The batch loss Σ_t loss_t / N over labelled tokens, float64. */
function meanLoss(z: ArrayLike<number>, labels: readonly number[], V: number, cap: number, N: number): number {
  return crossEntropyF64(z, labels, V, cap, N).loss.reduce((a, b) => a + b, 0) / N;
}

/**
 * Loss and gradient on the GPU against float64: V = 50,000 with cap 30, a masked token, a token
 * with a huge logit (stability) and N larger than the block's labelled tokens (accumulation),
 * written to a separate dz buffer; V = 1,000 without a cap, in place over z, with an invalid label
 * (NaN loss) and a token count below the binding's maximum. FD checks of the float64 gradient.
 */
export async function checkCrossEntropy(kernels: LossKernels): Promise<Check[]> {
  const { device } = kernels;
  const checks: Check[] = [];
  const owned: GPUBuffer[] = [];
  const own = (b: GPUBuffer) => (owned.push(b), b);
  const judge = (got: Float32Array, at: (t: number) => number, exact: ReturnType<typeof crossEntropyF64>, V: number, T: number) => {
    let e = 0;
    for (let t = 0; t < T; t++) {
      for (let i = 0; i < V; i++) e = worse(e, Math.abs(got[at(t) + i]! - exact.dz[t * V + i]!) / (exact.scale[t * V + i]! + 1e-30));
    }
    return e;
  };
  try {
    {
      const V = 50_000;
      const cap = 30;
      const labels = [17, MASKED_LABEL, 49_999, 4];
      const T = labels.length;
      const N = 5; // this block has 3 labelled tokens; the batch has 5
      const z = normals(T * V, 31, 4);
      z[3 * V + 4] = 200; // far past the cap: tanh saturates, the label dominates
      z[3 * V + 9] = -150;
      z[0 * V + 12_345] = 60;
      const zBuf = own(uploadStorage(device, z, 'z'));
      const dzBuf = own(uploadStorage(device, new Float32Array(T * V).fill(5), 'dz'));
      const labelsBuf = own(uploadStorage(device, new Uint32Array(labels), 'labels'));
      const lossBuf = own(uploadStorage(device, new Float32Array(T + 2).fill(-1), 'loss'));
      const ce = await kernels.bindCrossEntropy({ vocab: V, maxTokens: T, z: zBuf, dz: dzBuf, labels: labelsBuf, loss: lossBuf, lossOffset: 1, softcap: cap, count: N });
      submit(device, (pass) => ce.encode(pass, T));
      const dz = await readF32(device, dzBuf, T * V);
      const loss = await readF32(device, lossBuf, T + 2);
      const zAfter = await readF32(device, zBuf, T * V);
      ce.destroy();
      const exact = crossEntropyF64(z, labels, V, cap, N);
      checks.push({ name: `CE V=${V} cap ${cap} dz`, err: judge(dz, (t) => t * V, exact, V, T), tolerance: GPU_TOLERANCE });
      let le = 0;
      for (let t = 0; t < T; t++) le = worse(le, Math.abs(loss[1 + t]! - exact.loss[t]!) / Math.max(1, exact.loss[t]!));
      checks.push({ name: `CE V=${V} per-token loss`, err: le, tolerance: GPU_TOLERANCE });
      checks.push({ name: 'CE masked token: loss 0, dz row 0', err: loss[2] === 0 && dz.subarray(V, 2 * V).every((v) => v === 0) ? 0 : Infinity, tolerance: 0 });
      checks.push({ name: 'CE writes only its loss slots, keeps z', err: loss[0] === -1 && loss[T + 1] === -1 && zAfter.every((v, i) => v === z[i]) ? 0 : Infinity, tolerance: 0 });

      // FD of the float64 mean loss against the float64 dz, and a masked token's logits do not matter.
      const z64 = Float64Array.from(z);
      const f = (zz: Float64Array) => meanLoss(zz, labels, V, cap, N);
      checks.push({ name: `CE FD V=${V} cap ${cap}`, err: fdCheck(f, z64, exact.dz, 2, 41), tolerance: FD_TOLERANCE });
      const maskedSlope = Math.abs(coordinateDerivative(f, z64, V + 5)) + Math.abs(coordinateDerivative(f, z64, V + 49_000));
      checks.push({ name: 'CE masked logits do not move the loss', err: maskedSlope, tolerance: 0 });
    }
    {
      const V = 1000;
      const labels = [3, 999, MASKED_LABEL, 0, 500, 2000];
      const maxT = labels.length;
      const T = 5; // the invalid label of token 5 is beyond this call
      const N = 4;
      const z = normals(maxT * V, 51, 3);
      const zBuf = own(uploadStorage(device, z, 'z in place'));
      const labelsBuf = own(uploadStorage(device, new Uint32Array(labels), 'labels'));
      const lossBuf = own(uploadStorage(device, new Float32Array(maxT).fill(-1), 'loss'));
      const ce = await kernels.bindCrossEntropy({ vocab: V, maxTokens: maxT, z: zBuf, labels: labelsBuf, loss: lossBuf, softcap: 0 });
      ce.setCount(N);
      submit(device, (pass) => ce.encode(pass, T));
      const dz = await readF32(device, zBuf, maxT * V);
      const loss = await readF32(device, lossBuf, maxT);
      const used = labels.slice(0, T);
      const exact = crossEntropyF64(z, used, V, 0, N);
      checks.push({ name: `CE V=${V} no cap, in place, T=${T} of ${maxT}`, err: judge(dz, (t) => t * V, exact, V, T), tolerance: GPU_TOLERANCE });
      let le = 0;
      for (let t = 0; t < T; t++) le = worse(le, Math.abs(loss[t]! - exact.loss[t]!) / Math.max(1, exact.loss[t]!));
      checks.push({ name: `CE V=${V} per-token loss`, err: le, tolerance: GPU_TOLERANCE });
      checks.push({ name: 'CE token past the count untouched', err: loss[5] === -1 && dz.subarray(5 * V).every((v, i) => v === z[5 * V + i]) ? 0 : Infinity, tolerance: 0 });
      checks.push({ name: 'CE FD no cap', err: fdCheck((zz) => meanLoss(zz, used, V, 0, N), Float64Array.from(z.subarray(0, T * V)), exact.dz, 2, 61), tolerance: FD_TOLERANCE });
      // Now token 5 too: its label 2000 ≥ V gives a NaN loss and a zero gradient row.
      submit(device, (pass) => ce.encode(pass, maxT));
      const lossAll = await readF32(device, lossBuf, maxT);
      const dzAll = await readF32(device, zBuf, maxT * V);
      checks.push({ name: 'CE label ≥ vocab: NaN loss, zero dz', err: Number.isNaN(lossAll[5]) && dzAll.subarray(5 * V).every((v) => v === 0) ? 0 : Infinity, tolerance: 0 });
      ce.destroy();
    }
    return checks;
  } finally {
    for (const b of owned) b.destroy();
  }
}

// ---- 4. AdamW with clipping by the global norm ----

/**
 * Six AdamW steps on the GPU against the CPU AdamW (with clipByGlobalNorm on the CPU, the GPU
 * reducing the norm itself over two gradient segments): a schedule, weight decay, steps that clip
 * and steps that do not; then a step whose gradient overflows, which must change nothing.
 */
export async function checkAdamW(device: GPUDevice): Promise<Check[]> {
  const n = 1000;
  const split = 613;
  const checks: Check[] = [];
  const paramOffset = 4;
  const init = normals(n, 71, 0.05);
  const cpuParams = init.slice();
  const options = { learningRate: 2e-3, weightDecay: 0.01, beta1: 0.9, beta2: 0.999, epsilon: 1e-8 };
  const cpu = new AdamW([cpuParams], options);
  const schedule = { warmupSteps: 2, totalSteps: 6 };
  const paramsBuf = uploadStorage(device, (() => {
    const p = new Float32Array(n + paramOffset + 3).fill(42);
    p.set(init, paramOffset);
    return p;
  })(), 'params');
  const gradsBuf = uploadStorage(device, new Float32Array(n), 'grads');
  const maxNorm = 30;
  const norm = await GpuGlobalNorm.create(device, { segments: [{ buffer: gradsBuf, length: split }, { buffer: gradsBuf, offset: split, length: n - split }], maxNorm });
  const opt = await GpuAdamW.create(device, { ...options, params: paramsBuf, paramOffset, grads: gradsBuf, length: n, clip: norm.clip });
  try {
    let pe = 0;
    let ne = 0;
    let clipped = 0;
    for (let step = 0; step < 6; step++) {
      // Gradient norms around maxNorm: about sqrt(1000)·std.
      const std = [0.5, 2, 0.3, 1.5, 0.8, 3][step]!;
      const g = normals(n, 80 + step, std);
      device.queue.writeBuffer(gradsBuf, 0, g);
      const lr = options.learningRate * learningRateFactor(step, schedule);
      const cpuGrad = g.slice();
      const cpuNorm = clipByGlobalNorm([cpuGrad], maxNorm);
      if (cpuNorm > maxNorm) clipped++;
      cpu.update([cpuGrad], lr);
      submit(device, (pass) => {
        norm.encode(pass);
        opt.encodeStep(pass, lr);
      });
      const got = await readF32(device, paramsBuf, n + paramOffset + 3);
      // Relative to the parameter's size plus the largest step (the peak learning rate): an
      // element near 0 carries the rounding of earlier, larger steps.
      for (let i = 0; i < n; i++) pe = worse(pe, Math.abs(got[paramOffset + i]! - cpuParams[i]!) / (Math.abs(cpuParams[i]!) + options.learningRate));
      const r = await norm.read();
      ne = worse(ne, Math.abs(r.norm - cpuNorm) / cpuNorm);
      if (step === 5) {
        let edges = 0;
        for (const i of [0, 1, 2, 3, n + 4, n + 5, n + 6]) if (got[i] !== 42) edges = Infinity;
        checks.push({ name: 'adamw writes only its parameters', err: edges, tolerance: 0 });
      }
    }
    checks.push({ name: `adamw 6 steps vs CPU (params, ${clipped} clipped)`, err: clipped >= 2 && clipped <= 4 ? pe : Infinity, tolerance: 1e-6 });
    checks.push({ name: 'global norm vs CPU', err: ne, tolerance: 1e-6 });
    const state = await opt.saveState();
    const cpuState = cpu.saveState();
    // Moments relative to each vector's largest element (an element of m may cancel to near 0).
    const maxAbs = (a: Float32Array) => a.reduce((x, v) => Math.max(x, Math.abs(v)), 0);
    const mScale = maxAbs(cpuState.m[0]!);
    const vScale = maxAbs(cpuState.v[0]!);
    let me = 0;
    for (let i = 0; i < n; i++) {
      me = worse(me, Math.abs(state.m[0]![i]! - cpuState.m[0]![i]!) / mScale);
      me = worse(me, Math.abs(state.v[0]![i]! - cpuState.v[0]![i]!) / vScale);
    }
    checks.push({ name: 'adamw moments vs CPU', err: state.step === cpuState.step ? me : Infinity, tolerance: 1e-6 });

    // An overflowing gradient: the norm is not finite, so the step changes nothing.
    const before = await readF32(device, paramsBuf, n + paramOffset + 3);
    const bad = normals(n, 99);
    bad[700] = Infinity;
    device.queue.writeBuffer(gradsBuf, 0, bad);
    submit(device, (pass) => {
      norm.encode(pass);
      opt.encodeStep(pass);
    });
    const after = await readF32(device, paramsBuf, n + paramOffset + 3);
    const after2 = await opt.saveState();
    const same = after.every((v, i) => v === before[i]) && after2.m[0]!.every((v, i) => v === state.m[0]![i]);
    checks.push({ name: 'adamw skips a step with a non-finite norm', err: same && Number.isNaN((await norm.read()).clip) ? 0 : Infinity, tolerance: 0 });
    return checks;
  } finally {
    opt.destroy();
    norm.destroy();
    paramsBuf.destroy();
    gradsBuf.destroy();
  }
}

// ---- refusals ----

/** Error codes of bindings that must be refused before any GPU work. */
export async function badBindingCodes(device: GPUDevice, linear: LinearBackwardKernels, loss: LossKernels): Promise<string[]> {
  const w = uploadWeight(device, GGMLType.Q8_0, new Uint8Array(34 * 8), 'w');
  const f = uploadStorage(device, new Float32Array(256), 'f');
  const g = uploadStorage(device, new Float32Array(256), 'g');
  const labels = uploadStorage(device, new Uint32Array(4), 'labels');
  const codes: string[] = [];
  const attempt = async (f: () => Promise<unknown>) => codes.push(await errorCode(f));
  await attempt(() => linear.bindMatMulBackward({ weight: w, type: GGMLType.Q8_0, rows: 8, cols: 48, dy: f, dx: g, tokens: 1 })); // cols not a multiple of 32
  await attempt(() => linear.bindMatMulBackward({ weight: w, type: GGMLType.Q8_0, rows: 9, cols: 32, dy: f, dx: g, tokens: 1 })); // weight too short
  await attempt(() => linear.bindMatMulBackward({ weight: w, type: GGMLType.Q8_0, rows: 8, cols: 32, dy: f, dx: g, tokens: 9 })); // dx too small
  await attempt(() => linear.bindMatMulBackward({ weight: w, type: GGMLType.Q2_K, rows: 1, cols: 256, dy: f, dx: g, tokens: 1 })); // unsupported dtype
  await attempt(() => linear.bindGemm({ m: 16, n: 17, k: 1, a: f, aStrides: [1, 1], b: f, bStrides: [1, 1], c: g, cStrides: [17, 1] })); // C too small
  await attempt(() => linear.bindGemm({ m: 2, n: 2, k: 2, a: f, aStrides: [2, 1], b: g, bStrides: [2, 1], c: f, cStrides: [2, 1] })); // C aliases A
  await attempt(() => loss.bindCrossEntropy({ vocab: 100, maxTokens: 3, z: f, labels, loss: g, softcap: 30 })); // z too small
  await attempt(() => loss.bindCrossEntropy({ vocab: 64, maxTokens: 2, z: f, labels, loss: labels, softcap: 30 })); // loss aliases labels
  await attempt(() => GpuAdamW.create(device, { learningRate: 1e-3, params: f, grads: f, length: 10 })); // params = grads
  await attempt(() => GpuAdamW.create(device, { learningRate: 1e-3, beta2: 1, params: f, grads: g, length: 10 })); // beta2 = 1
  await attempt(() => GpuGlobalNorm.create(device, { segments: [{ buffer: f, offset: 250, length: 10 }], maxNorm: 1 })); // past the end
  for (const b of [w, f, g, labels]) b.destroy();
  return codes;
}
