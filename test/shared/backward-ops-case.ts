// Checks of the backward kernels of the non-linear ops (src/core/gpu/ops-backward.ts), in two parts:
//   1. float64 analytic gradients against central finite differences of the float64 forward
//      (src/core/reference/math.ts where it has the op): L = Σ r·y for a random r, several random
//      coordinates of every input. This proves the formulas the GPU is then judged against.
//   2. the GPU gradients against those float64 gradients, on small random inputs, with strided
//      operands, token counts below the binding's maximum, in-place and accumulating variants;
//      outputs the kernel must not write keep their sentinel values.
// Usable from the Node (Dawn) suite and, with a browser device, from Chromium.
import { readBack, uploadStorage } from '../../src/core/gpu/buffers.js';
import { OpBackwardKernels, type Dispatch } from '../../src/core/gpu/ops-backward.js';
import { OpKernels, PositionUniform } from '../../src/core/gpu/ops.js';
import { geluDerivative, rmsNormBackward } from '../../src/core/reference/backward.js';
import { errorCode } from './error-code.js';
import { gelu, rmsNorm, rope } from '../../src/core/reference/math.js';

/** GPU vs float64 gradient. */
export const BACKWARD_TOLERANCE = 1e-5;
/** Float64 analytic gradient vs central differences of the float64 forward. */
export const FD_TOLERANCE = 1e-6;

export interface BackwardCheck {
  readonly name: string;
  /** Worst relative error (NaN counts as Infinity). */
  readonly maxRelErr: number;
  /** The tolerance this check must meet. */
  readonly tolerance: number;
  /** Whether every output element the kernel must not write still holds its sentinel. */
  readonly untouched: boolean;
}

export interface BackwardCase {
  readonly name: string;
  run(ops: OpBackwardKernels): Promise<BackwardCheck[]>;
}

const SENTINEL = -12345.5;

function normals(n: number, seed: number, std = 1): Float32Array<ArrayBuffer> {
  let s = seed >>> 0;
  const uniform = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 0.5) / 2 ** 32;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = std * Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
  return out;
}

/** Distinct pseudo-random integers in [0, n). */
function pick(n: number, count: number, seed: number): number[] {
  let s = seed >>> 0;
  const out = new Set<number>();
  while (out.size < Math.min(n, count)) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out.add(s % n);
  }
  return [...out];
}

function f64(a: ArrayLike<number>, start = 0, length = a.length - start): Float64Array {
  const out = new Float64Array(length);
  for (let i = 0; i < length; i++) out[i] = a[start + i]!;
  return out;
}

/** |got − exact| / max(scale, floor), NaN → Infinity. */
function rel(got: number, exact: number, scale = Math.abs(exact), floor = 1e-20): number {
  const e = Math.abs(got - exact) / Math.max(Math.abs(scale), floor);
  return Number.isNaN(e) ? Infinity : e;
}

function maxAbs(a: ArrayLike<number>, start = 0, length = a.length - start): number {
  let m = 0;
  for (let i = 0; i < length; i++) m = Math.max(m, Math.abs(a[start + i]!));
  return m;
}

// -----------------------------------------------------------------------------------------------
// finite differences

/**
 * Worst error of an analytic gradient against central differences: for each listed input and
 * coordinate, (L(x + h e) − L(x − h e)) / 2h with L = Σ r·forward(inputs), relative to
 * max(|analytic|, 1e-2·max|analytic of that input|) (a component far below the gradient's size is
 * judged against that size rather than against itself).
 */
function finiteDifferenceError(
  inputs: Float64Array[],
  forward: (inputs: Float64Array[]) => Float64Array,
  r: Float64Array,
  analytic: Float64Array[],
  coordinates: number,
  seed: number,
  step = 1e-5,
): number {
  const loss = () => {
    const y = forward(inputs);
    if (y.length !== r.length) throw new Error(`forward gave ${y.length} values, r has ${r.length}`);
    let s = 0;
    for (let i = 0; i < y.length; i++) s += r[i]! * y[i]!;
    return s;
  };
  let worst = 0;
  for (const [n, x] of inputs.entries()) {
    const g = analytic[n]!;
    const size = maxAbs(g);
    if (!(size > 0)) throw new Error(`input ${n}: the analytic gradient is zero everywhere; the check would prove nothing`);
    for (const i of pick(x.length, coordinates, seed + 17 * n)) {
      const keep = x[i]!;
      const h = step * Math.max(1, Math.abs(keep));
      x[i] = keep + h;
      const up = loss();
      x[i] = keep - h;
      const down = loss();
      x[i] = keep;
      worst = Math.max(worst, rel((up - down) / (2 * h), g[i]!, Math.max(Math.abs(g[i]!), 1e-2 * size)));
    }
  }
  return worst;
}

// -----------------------------------------------------------------------------------------------
// float64 references

interface RmsShape {
  size: number;
  count: number;
  eps: number;
  weight: Float32Array | null;
  xScale: number;
  outScale: number;
  /** null: no residual. */
  residualScale: number | null;
}

/** out = (RMS(x·xScale)·w + residual·residualScale)·outScale per token row of size·count. */
function rmsForward(s: RmsShape, x: Float64Array, residual: Float64Array | null): Float64Array {
  const normed = rmsNorm(x.map((v) => v * s.xScale), s.eps, s.weight, s.size);
  return normed.map((v, i) => (v + (residual ? residual[i]! * s.residualScale! : 0)) * s.outScale);
}

/** (dx, dResidual) of rmsForward for dL/d out = dy. */
function rmsBackward(s: RmsShape, x: Float64Array, dy: Float64Array): [Float64Array, Float64Array] {
  const du = rmsNormBackward(x.map((v) => v * s.xScale), dy.map((v) => v * s.outScale), s.eps, s.weight, s.size);
  return [du.map((v) => v * s.xScale), dy.map((v) => v * s.outScale * (s.residualScale ?? 0))];
}

/** σ(1 − σ) = e/(1 + e)² for σ = 1/(1 + e), without Infinity/Infinity when e overflows. */
function logisticSlope(e: number): number {
  return 1 / (e + 2 + 1 / e);
}

/** GELU-tanh and its slope in float64 in the overflow-free form (x·σ(2u)); agrees with math.ts and backward.ts where theirs are exact. */
function geluAndSlope(x: number): [number, number] {
  const k = 0.7978845608028654;
  const e = Math.exp(-2 * k * (x + 0.044715 * x ** 3));
  const s = 1 / (1 + e);
  const slope = s + x * logisticSlope(e) * 2 * k * (1 + 3 * 0.044715 * x * x);
  if (Math.abs(x) < 4 && (Math.abs(x * s - gelu(x)) > 1e-12 || Math.abs(slope - geluDerivative(x)) > 1e-12)) throw new Error(`gelu reference disagrees with the reference model at ${x}`);
  return [x * s, slope];
}

interface AttnShape {
  T: number;
  heads: number;
  kvHeads: number;
  hd: number;
  window: number;
  scale: number;
}

function visible(s: AttnShape, i: number, j: number): boolean {
  return j <= i && (s.window === 0 || i - j < s.window);
}

/** Softmax probabilities P[i][h][j] (0 where masked), packed [T][heads][T]. */
function attnProbs(s: AttnShape, q: Float64Array, k: Float64Array): Float64Array {
  const { T, heads, hd } = s;
  const group = heads / s.kvHeads;
  const p = new Float64Array(T * heads * T);
  for (let i = 0; i < T; i++) {
    for (let h = 0; h < heads; h++) {
      const g = Math.floor(h / group);
      const row = (i * heads + h) * T;
      let max = -Infinity;
      for (let j = 0; j <= i; j++) {
        if (!visible(s, i, j)) continue;
        let dot = 0;
        for (let d = 0; d < hd; d++) dot += q[(i * heads + h) * hd + d]! * k[(j * s.kvHeads + g) * hd + d]!;
        p[row + j] = s.scale * dot;
        max = Math.max(max, s.scale * dot);
      }
      let total = 0;
      for (let j = 0; j <= i; j++) if (visible(s, i, j)) total += p[row + j] = Math.exp(p[row + j]! - max);
      for (let j = 0; j <= i; j++) p[row + j]! /= total;
    }
  }
  return p;
}

/** o [T][heads·hd] of causal / sliding GQA attention, in float64. */
function attnForward(s: AttnShape, q: Float64Array, k: Float64Array, v: Float64Array): Float64Array {
  const { T, heads, hd } = s;
  const group = heads / s.kvHeads;
  const p = attnProbs(s, q, k);
  const o = new Float64Array(T * heads * hd);
  for (let i = 0; i < T; i++) {
    for (let h = 0; h < heads; h++) {
      const g = Math.floor(h / group);
      for (let j = 0; j <= i; j++) {
        const w = p[(i * heads + h) * T + j]!;
        if (w === 0) continue;
        for (let d = 0; d < hd; d++) o[(i * heads + h) * hd + d]! += w * v[(j * s.kvHeads + g) * hd + d]!;
      }
    }
  }
  return o;
}

/** (dq, dk, dv) of attnForward for dL/d o = dO: dS = P(dP − Σ P dP), dq = scale·dS·k, dk = scale·dSᵀ·q, dv = Pᵀ·dO. */
function attnBackward(s: AttnShape, q: Float64Array, k: Float64Array, v: Float64Array, dO: Float64Array): [Float64Array, Float64Array, Float64Array] {
  const { T, heads, hd } = s;
  const group = heads / s.kvHeads;
  const p = attnProbs(s, q, k);
  const dq = new Float64Array(q.length);
  const dk = new Float64Array(k.length);
  const dv = new Float64Array(v.length);
  for (let i = 0; i < T; i++) {
    for (let h = 0; h < heads; h++) {
      const g = Math.floor(h / group);
      const qo = (i * heads + h) * hd;
      const dp = new Float64Array(T);
      let dsum = 0;
      for (let j = 0; j <= i; j++) {
        if (!visible(s, i, j)) continue;
        let dot = 0;
        for (let d = 0; d < hd; d++) dot += dO[qo + d]! * v[(j * s.kvHeads + g) * hd + d]!;
        dp[j] = dot;
        dsum += p[(i * heads + h) * T + j]! * dot;
      }
      for (let j = 0; j <= i; j++) {
        if (!visible(s, i, j)) continue;
        const pj = p[(i * heads + h) * T + j]!;
        const ds = pj * (dp[j]! - dsum);
        const ko = (j * s.kvHeads + g) * hd;
        for (let d = 0; d < hd; d++) {
          dq[qo + d]! += s.scale * ds * k[ko + d]!;
          dk[ko + d]! += s.scale * ds * q[qo + d]!;
          dv[ko + d]! += pj * dO[qo + d]!;
        }
      }
    }
  }
  return [dq, dk, dv];
}

// -----------------------------------------------------------------------------------------------
// the GPU harness

class Bench {
  private readonly owned: GPUBuffer[] = [];
  private readonly dispatches: Dispatch[] = [];
  readonly checks: BackwardCheck[] = [];

  constructor(readonly ops: OpBackwardKernels) {}

  get device(): GPUDevice {
    return this.ops.device;
  }

  upload(data: Float32Array<ArrayBuffer>, label = 'data'): GPUBuffer {
    const b = uploadStorage(this.device, data, label);
    this.owned.push(b);
    return b;
  }

  sentinels(length: number, label = 'out'): GPUBuffer {
    return this.upload(new Float32Array(length).fill(SENTINEL), label);
  }

  position(): PositionUniform {
    const p = new PositionUniform(this.device);
    this.owned.push(p.buffer);
    return p;
  }

  async keep(d: Promise<Dispatch>): Promise<Dispatch> {
    const dispatch = await d;
    this.dispatches.push(dispatch);
    return dispatch;
  }

  run(record: (pass: GPUComputePassEncoder) => void): void {
    const encoder = this.device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    record(pass);
    pass.end();
    this.device.queue.submit([encoder.finish()]);
  }

  async read(buffer: GPUBuffer, length: number): Promise<Float32Array> {
    return new Float32Array(await readBack(this.device, buffer, length * 4));
  }

  write(buffer: GPUBuffer, data: Float32Array<ArrayBuffer>): void {
    this.device.queue.writeBuffer(buffer, 0, data);
  }

  push(name: string, maxRelErr: number, untouched = true, tolerance = BACKWARD_TOLERANCE): void {
    this.checks.push({ name, maxRelErr, tolerance, untouched });
  }

  dispose(): void {
    for (const d of this.dispatches) d.destroy();
    for (const b of this.owned) b.destroy();
  }
}

async function withBench(ops: OpBackwardKernels, body: (b: Bench) => Promise<void>): Promise<BackwardCheck[]> {
  const bench = new Bench(ops);
  try {
    await body(bench);
    return bench.checks;
  } finally {
    bench.dispose();
  }
}

/** Token rows of `width` values in a flat buffer: element (t, i) at offset + t·stride + i. */
interface Layout {
  offset: number;
  stride: number;
}

function layoutLength(l: Layout, rows: number): number {
  return l.offset + rows * l.stride;
}

/** A buffer image holding `data` ([rows][width], dense) at the layout's rows and `fill` elsewhere. */
function scatter(data: ArrayLike<number>, width: number, rows: number, l: Layout, fill = SENTINEL): Float32Array<ArrayBuffer> {
  const out = new Float32Array(layoutLength(l, rows)).fill(fill);
  for (let t = 0; t < rows; t++) for (let i = 0; i < width; i++) out[l.offset + t * l.stride + i] = data[t * width + i]!;
  return out;
}

/** The dense [rows][width] values at the layout's rows. */
function gather(buf: ArrayLike<number>, width: number, rows: number, l: Layout): Float64Array {
  const out = new Float64Array(rows * width);
  for (let t = 0; t < rows; t++) for (let i = 0; i < width; i++) out[t * width + i] = buf[l.offset + t * l.stride + i]!;
  return out;
}

/** Whether every element outside the first `rows` rows of the layout equals `before` there. */
function keptOutside(got: Float32Array, before: Float32Array, width: number, rows: number, l: Layout): boolean {
  for (let i = 0; i < got.length; i++) {
    const inside = i >= l.offset && Math.floor((i - l.offset) / l.stride) < rows && (i - l.offset) % l.stride < width;
    if (!inside && got[i] !== before[i]) return false;
  }
  return true;
}

/** Worst over slices of `size` of max |got − exact| / max |exact| within the slice. */
function sliceError(got: Float64Array, exact: Float64Array, size: number): number {
  let worst = 0;
  for (let s = 0; s < exact.length; s += size) {
    const scale = maxAbs(exact, s, size);
    for (let i = 0; i < size; i++) worst = Math.max(worst, rel(got[s + i]!, exact[s + i]!, scale));
  }
  return worst;
}

// -----------------------------------------------------------------------------------------------
// rms_norm

interface RmsCase extends RmsShape {
  name: string;
  maxTokens: number;
  tokens: readonly number[];
  x: Layout;
  dy: Layout;
  /** 'dy': in place over dy. */
  dx: Layout | 'dy';
  accumulate?: boolean;
  /** 'dy': in place over dy; null: no residual output. */
  dres?: Layout | 'dy' | null;
  accumulateResidual?: boolean;
}

const RMS_CASES: readonly RmsCase[] = [
  {
    name: 'weighted, width 200, strided', size: 200, count: 1, eps: 1e-6, weight: normals(200, 2, 0.5).map((v) => 1 + v),
    xScale: 1, outScale: 1, residualScale: null, maxTokens: 7, tokens: [7, 3],
    x: { offset: 3, stride: 208 }, dy: { offset: 1, stride: 203 }, dx: { offset: 5, stride: 200 },
  },
  {
    name: 'per-head q norm 4x32, dx over dy', size: 32, count: 4, eps: 1e-6, weight: normals(32, 3, 0.5).map((v) => 1 + v),
    xScale: 1, outScale: 1, residualScale: null, maxTokens: 7, tokens: [7, 2],
    x: { offset: 0, stride: 128 }, dy: { offset: 4, stride: 132 }, dx: 'dy',
  },
  {
    name: 'unweighted v norm 2x64, accumulating', size: 64, count: 2, eps: 1e-6, weight: null,
    xScale: 1, outScale: 1, residualScale: null, maxTokens: 5, tokens: [5, 1],
    x: { offset: 2, stride: 130 }, dy: { offset: 0, stride: 128 }, dx: { offset: 0, stride: 128 }, accumulate: true,
  },
  {
    name: 'residual h·s + RMS(a)·w·s, d residual over dy, dx accumulating', size: 96, count: 1, eps: 1e-6, weight: normals(96, 4, 0.3).map((v) => 1 + v),
    xScale: 1, outScale: 0.73, residualScale: 1, maxTokens: 7, tokens: [7, 4],
    x: { offset: 0, stride: 96 }, dy: { offset: 8, stride: 100 }, dx: { offset: 0, stride: 96 }, accumulate: true, dres: 'dy',
  },
  {
    name: 'residual with x, residual and out scales (ple_combine), both outputs accumulating', size: 48, count: 3, eps: 1e-6, weight: normals(48, 5, 0.3).map((v) => 1 + v),
    xScale: 1 / Math.sqrt(200), outScale: Math.SQRT1_2, residualScale: Math.sqrt(48), maxTokens: 4, tokens: [4, 3],
    x: { offset: 1, stride: 150 }, dy: { offset: 0, stride: 144 }, dx: { offset: 2, stride: 146 }, accumulate: true,
    dres: { offset: 3, stride: 144 }, accumulateResidual: true,
  },
];

function rmsFiniteDifferences(c: RmsCase, seed: number): number {
  const width = c.size * c.count;
  const T = 3;
  const x = f64(normals(T * width, seed, 2));
  const res = f64(normals(T * width, seed + 1));
  const r = f64(normals(T * width, seed + 2));
  const [dx, dres] = rmsBackward(c, x, r);
  if (c.residualScale === null) return finiteDifferenceError([x], ([xv]) => rmsForward(c, xv!, null), r, [dx], 12, seed);
  return finiteDifferenceError([x, res], ([xv, rv]) => rmsForward(c, xv!, rv!), r, [dx, dres], 12, seed);
}

async function checkRmsNormBackward(ops: OpBackwardKernels): Promise<BackwardCheck[]> {
  return withBench(ops, async (b) => {
    for (const [n, c] of RMS_CASES.entries()) {
      b.push(`rms_norm ${c.name}: float64 gradient vs finite differences`, rmsFiniteDifferences(c, 100 + 10 * n), true, FD_TOLERANCE);

      const width = c.size * c.count;
      const M = c.maxTokens;
      const x = normals(M * width, 200 + n, 2);
      const dy = normals(M * width, 300 + n);
      const priorDx = normals(M * width, 400 + n, 0.5);
      const priorRes = normals(M * width, 500 + n, 0.5);
      const xBuf = b.upload(scatter(x, width, M, c.x));
      const dyImage = scatter(dy, width, M, c.dy);
      const dyBuf = b.upload(dyImage);
      const dxLayout = c.dx === 'dy' ? c.dy : c.dx;
      const dxImage = c.dx === 'dy' ? dyImage : scatter(c.accumulate ? priorDx : new Float32Array(M * width).fill(SENTINEL), width, M, c.dx);
      const dxBuf = c.dx === 'dy' ? dyBuf : b.upload(dxImage);
      const dresLayout = c.dres === 'dy' ? c.dy : c.dres ?? null;
      let dresImage: Float32Array<ArrayBuffer> | null = null;
      let dresBuf: GPUBuffer | undefined;
      if (c.dres === 'dy') dresBuf = dyBuf;
      else if (c.dres) {
        dresImage = scatter(c.accumulateResidual ? priorRes : new Float32Array(M * width).fill(SENTINEL), width, M, c.dres);
        dresBuf = b.upload(dresImage);
      }
      const weight = c.weight ? b.upload(Float32Array.from([7, 7, ...c.weight])) : undefined;
      const bind = await b.keep(ops.bindRmsNormBackward({
        size: c.size, count: c.count, eps: c.eps, maxTokens: M,
        x: xBuf, xOffset: c.x.offset, xStride: c.x.stride, xScale: c.xScale,
        weight, weightOffset: 2, outScale: c.outScale,
        dy: dyBuf, dyOffset: c.dy.offset, dyStride: c.dy.stride,
        dx: dxBuf, dxOffset: dxLayout.offset, dxStride: dxLayout.stride, accumulate: c.accumulate,
        dResidual: dresBuf, dResidualOffset: dresLayout?.offset, dResidualStride: dresLayout?.stride,
        residualScale: c.residualScale ?? 1, accumulateResidual: c.accumulateResidual,
      }));
      for (const T of c.tokens) {
        b.write(dyBuf, dyImage);
        if (dxBuf !== dyBuf) b.write(dxBuf, dxImage);
        if (dresBuf && dresBuf !== dyBuf) b.write(dresBuf, dresImage!);
        b.run((pass) => bind.encode(pass, T));
        const [exactDx, exactRes] = rmsBackward(c, f64(x, 0, T * width), f64(dy, 0, T * width));
        if (c.accumulate) for (let i = 0; i < T * width; i++) exactDx[i]! += priorDx[i]!;
        if (c.accumulateResidual) for (let i = 0; i < T * width; i++) exactRes[i]! += priorRes[i]!;
        const gotDxImage = await b.read(dxBuf, dxImage.length);
        let worst = sliceError(gather(gotDxImage, width, T, dxLayout), exactDx, c.size);
        let kept = keptOutside(gotDxImage, dxImage, width, T, dxLayout);
        if (dresBuf && dresLayout) {
          const before = dresBuf === dyBuf ? dyImage : dresImage!;
          const gotRes = dresBuf === dxBuf ? gotDxImage : await b.read(dresBuf, before.length);
          const got = gather(gotRes, width, T, dresLayout);
          // Relative to the size of the terms (the new gradient and what it is added to), not of their sum.
          for (let i = 0; i < T * width; i++) {
            const prior = c.accumulateResidual ? priorRes[i]! : 0;
            worst = Math.max(worst, rel(got[i]!, exactRes[i]!, Math.abs(exactRes[i]! - prior) + Math.abs(prior)));
          }
          kept &&= keptOutside(gotRes, before, width, T, dresLayout);
        }
        if (c.dx !== 'dy' && c.dres !== 'dy') kept &&= keptOutside(await b.read(dyBuf, dyImage.length), dyImage, 0, 0, c.dy);
        b.push(`rms_norm ${c.name} T=${T}`, worst, kept);
      }
    }
  });
}

// -----------------------------------------------------------------------------------------------
// rope: the float64 gradient is rope at −pos (the inverse rotation); GPU error relative to the
// norm of each pair; values past dims and outside the rows unchanged. Also: the GPU backward after
// the GPU forward gives back the input (it is the transpose of the very rotation the forward uses).

const ROPE_CASES = [
  { name: 'base 1e4', heads: 2, headDim: 64, dims: 64, base: 1e4, factors: null },
  { name: 'base 1e6 with factors (partial)', heads: 2, headDim: 64, dims: 64, base: 1e6, factors: new Float32Array(32).map((_, j) => (j < 8 ? 1 : 1e30)) },
  { name: 'base 1e4 dims 32 of 64', heads: 3, headDim: 64, dims: 32, base: 1e4, factors: null },
] as const;

/** Token t of x ([T][width]) rotated by math.ts's rope at position positionOf(t). */
function ropeRows(x: Float64Array, width: number, headDim: number, dims: number, base: number, factors: Float32Array | null, positionOf: (t: number) => number): Float64Array {
  const y = x.slice();
  for (let t = 0; t < y.length / width; t++) rope(y.subarray(t * width, (t + 1) * width), headDim, dims, positionOf(t), base, factors);
  return y;
}

async function checkRopeBackward(ops: OpBackwardKernels): Promise<BackwardCheck[]> {
  const forwardOps = new OpKernels(ops.device, ops.pipelines);
  try {
    return await withBench(ops, async (b) => {
      const M = 7;
      for (const [n, c] of ROPE_CASES.entries()) {
        const width = c.heads * c.headDim;
        const factors = c.factors as Float32Array | null;
        {
          const x = f64(normals(3 * width, 600 + n));
          const r = f64(normals(3 * width, 610 + n));
          // Forward at positions 5 + t; the gradient is the rotation by −(5 + t).
          const g = ropeRows(r, width, c.headDim, c.dims, c.base, factors, (t) => -(5 + t));
          const forward = ([xv]: Float64Array[]) => ropeRows(xv!, width, c.headDim, c.dims, c.base, factors, (t) => 5 + t);
          b.push(`rope ${c.name}: float64 gradient vs finite differences`, finiteDifferenceError([x], forward, r, [g], 12, 620 + n), true, FD_TOLERANCE);
        }
        const l: Layout = { offset: 5, stride: width + 3 };
        const g = normals(M * width, 630 + n);
        const image = scatter(g, width, M, l, 0.25);
        const buf = b.upload(image);
        const position = b.position();
        const binding = { x: buf, xOffset: l.offset, xStride: l.stride, heads: c.heads, headDim: c.headDim, dims: c.dims, base: c.base, factors: factors ?? undefined, position: position.buffer, maxTokens: M };
        const back = await b.keep(ops.bindRopeBackward(binding));
        const fwd = await forwardOps.bindRope(binding);
        try {
          for (const [start, T] of [[0, M], [994, 4], [131_000, M]] as const) {
            b.write(buf, image);
            position.set(start);
            b.run((pass) => back.encode(pass, T));
            const got = await b.read(buf, image.length);
            const exact = ropeRows(f64(g, 0, T * width), width, c.headDim, c.dims, c.base, factors, (t) => -(start + t));
            const dense = gather(got, width, T, l);
            let worst = 0;
            let kept = keptOutside(got, image, width, T, l);
            const half = c.dims / 2;
            for (let t = 0; t < T; t++) {
              for (let h = 0; h < c.heads; h++) {
                const base = t * width + h * c.headDim;
                for (let j = 0; j < half; j++) {
                  const norm = Math.hypot(g[base + j]!, g[base + j + half]!);
                  worst = Math.max(worst, rel(dense[base + j]!, exact[base + j]!, norm), rel(dense[base + j + half]!, exact[base + j + half]!, norm));
                }
                for (let i = c.dims; i < c.headDim; i++) if (dense[base + i] !== g[base + i]) kept = false;
              }
            }
            b.push(`rope ${c.name} positions ${start}..${start + T - 1}`, worst, kept);

            // Forward then backward on the GPU: the identity.
            b.write(buf, image);
            b.run((pass) => {
              fwd.encode(pass, T);
              back.encode(pass, T);
            });
            const round = gather(await b.read(buf, image.length), width, T, l);
            let worstRound = 0;
            for (let i = 0; i < T * width; i++) worstRound = Math.max(worstRound, rel(round[i]!, g[i]!, 1));
            b.push(`rope ${c.name} positions ${start}..: GPU backward ∘ GPU forward = identity (abs err)`, worstRound, true, 1e-6);
          }
        } finally {
          fwd.destroy();
        }
      }
    });
  } finally {
    // The forward kernels share the pipeline cache; only their own tables and placeholders go.
    forwardOps.destroy();
  }
}

// -----------------------------------------------------------------------------------------------
// gelu_mul: error per element relative to the sum of the magnitudes of the terms of its formula
// (|dOut·up|·(|s| + |x·e·s²·2u'|) for d gate, |dOut·gelu(gate)| for d up), so that values near a
// zero of gelu' are judged against the size of what cancels there.

/** Gate values with the extremes of GELU: its minimum near −0.75, the tails, and the clamp region. */
function gateValues(n: number, seed: number): Float32Array<ArrayBuffer> {
  const g = normals(n, seed, 2);
  const special = [-0.7517916, 0, -12, 12, -8, 8, -3.5, 30, -30, 1e-4];
  special.forEach((v, i) => {
    if (3 * i < n) g[3 * i] = v;
  });
  return g;
}

function geluScales(gate: number, up: number, dOut: number): { dg: number; du: number; sg: number; su: number } {
  const k = 0.7978845608028654;
  const e = Math.exp(-2 * k * (gate + 0.044715 * gate ** 3));
  const s = 1 / (1 + e);
  const [value, slope] = geluAndSlope(gate);
  const tail = Math.abs(gate * logisticSlope(e) * 2 * k * (1 + 3 * 0.044715 * gate * gate));
  return {
    dg: dOut * up * slope,
    du: dOut * value,
    sg: Math.abs(dOut * up) * (Math.abs(s) + tail),
    su: Math.abs(dOut * value),
  };
}

interface GeluCase {
  name: string;
  width: number;
  maxTokens: number;
  tokens: readonly number[];
  dOut: Layout;
  gate: Layout;
  up: Layout;
  /** 'dOut' | 'gate': in place over that input. */
  dGate: Layout | 'dOut' | 'gate';
  dUp: Layout | 'up' | 'dOut' | null;
  accumulateGate?: boolean;
  accumulateUp?: boolean;
}

const GELU_CASES: readonly GeluCase[] = [
  {
    name: 'separate outputs, strided', width: 48, maxTokens: 7, tokens: [7, 2],
    dOut: { offset: 1, stride: 50 }, gate: { offset: 0, stride: 48 }, up: { offset: 3, stride: 52 }, dGate: { offset: 2, stride: 49 }, dUp: { offset: 0, stride: 48 },
  },
  {
    name: 'd gate over dOut, d up over up', width: 40, maxTokens: 5, tokens: [5, 3],
    dOut: { offset: 0, stride: 40 }, gate: { offset: 4, stride: 44 }, up: { offset: 0, stride: 40 }, dGate: 'dOut', dUp: 'up',
  },
  {
    name: 'd gate over gate, d up over dOut', width: 40, maxTokens: 5, tokens: [5],
    dOut: { offset: 0, stride: 40 }, gate: { offset: 4, stride: 44 }, up: { offset: 0, stride: 40 }, dGate: 'gate', dUp: 'dOut',
  },
  {
    name: 'PLE: up = layer 2 of [T][4·32], no d up, d gate over gate', width: 32, maxTokens: 6, tokens: [6, 1],
    dOut: { offset: 0, stride: 32 }, gate: { offset: 0, stride: 32 }, up: { offset: 64, stride: 128 }, dGate: 'gate', dUp: null,
  },
  {
    name: 'both accumulating', width: 24, maxTokens: 4, tokens: [4, 2],
    dOut: { offset: 0, stride: 24 }, gate: { offset: 0, stride: 24 }, up: { offset: 0, stride: 24 }, dGate: { offset: 1, stride: 25 }, dUp: { offset: 2, stride: 26 }, accumulateGate: true, accumulateUp: true,
  },
];

async function checkGeluMulBackward(ops: OpBackwardKernels): Promise<BackwardCheck[]> {
  return withBench(ops, async (b) => {
    {
      const n = 64;
      const gate = f64(gateValues(n, 700)).map((v) => Math.max(-9, Math.min(9, v))); // central differences of e^(−2u) past ±9 lose float64 digits
      const up = f64(normals(n, 701));
      const r = f64(normals(n, 702));
      const forward = ([g, u]: Float64Array[]) => g!.map((v, i) => geluAndSlope(v)[0] * u![i]!);
      const dg = gate.map((v, i) => r[i]! * up[i]! * geluAndSlope(v)[1]);
      const du = gate.map((v, i) => r[i]! * geluAndSlope(v)[0]);
      b.push('gelu_mul: float64 gradient vs finite differences', finiteDifferenceError([gate, up], forward, r, [dg, du], 24, 703), true, FD_TOLERANCE);
    }
    for (const [n, c] of GELU_CASES.entries()) {
      const { width, maxTokens: M } = c;
      const dOut = normals(M * width, 710 + n);
      const gate = gateValues(M * width, 720 + n);
      // up's buffer is random throughout (the PLE case reads one layer's slice of full [L·P] rows).
      const upImage = normals(layoutLength(c.up, M), 730 + n);
      const up = gather(upImage, width, M, c.up);
      const dOutImage = scatter(dOut, width, M, c.dOut);
      const gateImage = scatter(gate, width, M, c.gate);
      const dOutBuf = b.upload(dOutImage);
      const gateBuf = b.upload(gateImage);
      const upBuf = b.upload(upImage);
      const priorGate = normals(M * width, 740 + n, 0.5);
      const priorUp = normals(M * width, 750 + n, 0.5);
      const target = (o: Layout | 'dOut' | 'gate' | 'up', prior: Float32Array): { buf: GPUBuffer; l: Layout; image: Float32Array<ArrayBuffer>; accumulate: boolean } => {
        if (o === 'dOut') return { buf: dOutBuf, l: c.dOut, image: dOutImage, accumulate: false };
        if (o === 'gate') return { buf: gateBuf, l: c.gate, image: gateImage, accumulate: false };
        if (o === 'up') return { buf: upBuf, l: c.up, image: upImage, accumulate: false };
        const image = scatter(prior, width, M, o);
        return { buf: b.upload(image), l: o, image, accumulate: true };
      };
      const dg = target(c.dGate, c.accumulateGate ? priorGate : new Float32Array(M * width).fill(SENTINEL));
      const du = c.dUp ? target(c.dUp, c.accumulateUp ? priorUp : new Float32Array(M * width).fill(SENTINEL)) : null;
      const bind = await b.keep(ops.bindGeluMulBackward({
        width, maxTokens: M,
        dOut: dOutBuf, dOutOffset: c.dOut.offset, dOutStride: c.dOut.stride,
        gate: gateBuf, gateOffset: c.gate.offset, gateStride: c.gate.stride,
        up: upBuf, upOffset: c.up.offset, upStride: c.up.stride,
        dGate: dg.buf, dGateOffset: dg.l.offset, dGateStride: dg.l.stride, accumulateGate: c.accumulateGate,
        dUp: du?.buf, dUpOffset: du?.l.offset, dUpStride: du?.l.stride, accumulateUp: c.accumulateUp,
      }));
      const images = new Map<GPUBuffer, Float32Array<ArrayBuffer>>([[dOutBuf, dOutImage], [gateBuf, gateImage], [upBuf, upImage], [dg.buf, dg.image]]);
      if (du) images.set(du.buf, du.image);
      for (const T of c.tokens) {
        for (const [buf, image] of images) b.write(buf, image);
        b.run((pass) => bind.encode(pass, T));
        const gotG = gather(await b.read(dg.buf, dg.image.length), width, T, dg.l);
        const gotU = du ? gather(await b.read(du.buf, du.image.length), width, T, du.l) : null;
        let worst = 0;
        let where = '';
        for (let i = 0; i < T * width; i++) {
          const e = geluScales(gate[i]!, up[i]!, dOut[i]!);
          const eg = e.dg + (c.accumulateGate ? priorGate[i]! : 0);
          const eu = e.du + (c.accumulateUp ? priorUp[i]! : 0);
          const errG = rel(gotG[i]!, eg, e.sg + (c.accumulateGate ? Math.abs(priorGate[i]!) : 0));
          const errU = gotU ? rel(gotU[i]!, eu, e.su + (c.accumulateUp ? Math.abs(priorUp[i]!) : 0)) : 0;
          if (Math.max(errG, errU) > worst) {
            worst = Math.max(errG, errU);
            where = `gate ${gate[i]} up ${up[i]!.toPrecision(4)} dOut ${dOut[i]!.toPrecision(4)}: d gate ${gotG[i]} vs ${eg}, d up ${gotU?.[i]} vs ${eu}`;
          }
        }
        // Every buffer keeps its values outside the rows written; inputs that are not outputs keep all of them.
        let kept = true;
        for (const [buf, image] of images) {
          const got = await b.read(buf, image.length);
          const written = buf === dg.buf ? dg.l : du && buf === du.buf ? du.l : null;
          kept &&= written ? keptOutside(got, image, width, T, written) : keptOutside(got, image, 0, 0, { offset: 0, stride: 1 });
        }
        b.push(`gelu_mul ${c.name} T=${T} (worst: ${where})`, worst, kept);
      }
    }
  });
}

// -----------------------------------------------------------------------------------------------
// attention: error per (token, head) of dq and per (token, kv head) of dk and dv: max |gpu − exact|
// / max |exact| over the head.

interface AttnCase extends AttnShape {
  name: string;
  /** Token counts to encode (the binding is made for T). */
  tokens: readonly number[];
  accumulate?: boolean;
  /** Random coordinates per input for the finite-difference check (0: skip; the long case). */
  fd: number;
  /** Standard deviation of the scores scale·q·k (default 2). */
  scoreStd?: number;
}

const ATTN_CASES: readonly AttnCase[] = [
  { name: 'GQA 4/2, hd 32, causal', T: 9, heads: 4, kvHeads: 2, hd: 32, window: 0, scale: 1, tokens: [9, 5], fd: 10 },
  { name: 'GQA 4/2, hd 64, sliding window 3', T: 9, heads: 4, kvHeads: 2, hd: 64, window: 3, scale: 1, tokens: [9, 2], fd: 10 },
  { name: '2/1, hd 256, scale 1/16, accumulating', T: 5, heads: 2, kvHeads: 1, hd: 256, window: 0, scale: 1 / 16, tokens: [5, 1], accumulate: true, fd: 8 },
  { name: '1/1, hd 512', T: 3, heads: 1, kvHeads: 1, hd: 512, window: 0, scale: 1, tokens: [3], fd: 0 },
  { name: 'GQA 4/1, hd 32, 70 tokens (several key and row tiles), window 66', T: 70, heads: 4, kvHeads: 1, hd: 32, window: 66, scale: 1, tokens: [70], fd: 0 },
  { name: 'GQA 2/1, hd 64, 300 tokens', T: 300, heads: 2, kvHeads: 1, hd: 64, window: 0, scale: 1, tokens: [300], fd: 0 },
  { name: 'peaked softmax (scores of std 8), hd 256', T: 12, heads: 2, kvHeads: 1, hd: 256, window: 0, scale: 1, scoreStd: 8, tokens: [12], fd: 6 },
];

async function checkAttentionBackward(ops: OpBackwardKernels): Promise<BackwardCheck[]> {
  return withBench(ops, async (b) => {
    for (const [n, c] of ATTN_CASES.entries()) {
      const { T: M, heads, kvHeads, hd } = c;
      const qw = heads * hd;
      const kvw = kvHeads * hd;
      // Scores scale·q·k of standard deviation about 2 (as in the forward's checks) unless said otherwise.
      const std = Math.sqrt((c.scoreStd ?? 2) / Math.sqrt(hd) / c.scale);
      const q = normals(M * qw, 800 + n, std);
      const k = normals(M * kvw, 810 + n, std);
      const v = normals(M * kvw, 820 + n);
      const dO = normals(M * qw, 830 + n);

      if (c.fd > 0) {
        const s = { ...c, T: Math.min(M, 6) };
        const [qs, ks, vs] = [f64(q, 0, s.T * qw), f64(k, 0, s.T * kvw), f64(v, 0, s.T * kvw)];
        const r = f64(dO, 0, s.T * qw);
        const grads = attnBackward(s, qs, ks, vs, r);
        const err = finiteDifferenceError([qs, ks, vs], ([a, bb, cc]) => attnForward(s, a!, bb!, cc!), r, grads, c.fd, 840 + n);
        b.push(`attention ${c.name}: float64 gradient vs finite differences`, err, true, FD_TOLERANCE);
      }

      const lq: Layout = { offset: 4, stride: qw + 4 };
      const lk: Layout = { offset: 0, stride: kvw + 2 };
      const lv: Layout = { offset: 3, stride: kvw };
      const lo: Layout = { offset: 1, stride: qw };
      const ldq: Layout = { offset: 2, stride: qw + 1 };
      const ldk: Layout = { offset: 0, stride: kvw };
      const ldv: Layout = { offset: 5, stride: kvw + 3 };
      const priorQ = normals(M * qw, 850 + n, 0.5);
      const priorK = normals(M * kvw, 860 + n, 0.5);
      const priorV = normals(M * kvw, 870 + n, 0.5);
      const dqImage = c.accumulate ? scatter(priorQ, qw, M, ldq) : scatter(new Float32Array(M * qw).fill(SENTINEL), qw, M, ldq);
      const dkImage = c.accumulate ? scatter(priorK, kvw, M, ldk) : scatter(new Float32Array(M * kvw).fill(SENTINEL), kvw, M, ldk);
      const dvImage = c.accumulate ? scatter(priorV, kvw, M, ldv) : scatter(new Float32Array(M * kvw).fill(SENTINEL), kvw, M, ldv);
      const [dqBuf, dkBuf, dvBuf] = [b.upload(dqImage), b.upload(dkImage), b.upload(dvImage)];
      const bind = await b.keep(ops.bindAttentionBackward({
        maxTokens: M, heads, kvHeads, headDim: hd, window: c.window, scale: c.scale,
        q: b.upload(scatter(q, qw, M, lq)), qOffset: lq.offset, qStride: lq.stride,
        k: b.upload(scatter(k, kvw, M, lk)), kOffset: lk.offset, kStride: lk.stride,
        v: b.upload(scatter(v, kvw, M, lv)), vOffset: lv.offset, vStride: lv.stride,
        dOut: b.upload(scatter(dO, qw, M, lo)), dOutOffset: lo.offset, dOutStride: lo.stride,
        dq: dqBuf, dqOffset: ldq.offset, dqStride: ldq.stride, accumulateQ: c.accumulate,
        dk: dkBuf, dkOffset: ldk.offset, dkStride: ldk.stride,
        dv: dvBuf, dvOffset: ldv.offset, dvStride: ldv.stride, accumulateKv: c.accumulate,
      }));
      for (const T of c.tokens) {
        b.write(dqBuf, dqImage);
        b.write(dkBuf, dkImage);
        b.write(dvBuf, dvImage);
        b.run((pass) => bind.encode(pass, T));
        const s = { ...c, T };
        const exact = attnBackward(s, f64(q, 0, T * qw), f64(k, 0, T * kvw), f64(v, 0, T * kvw), f64(dO, 0, T * qw));
        if (c.accumulate) {
          for (let i = 0; i < T * qw; i++) exact[0][i]! += priorQ[i]!;
          for (let i = 0; i < T * kvw; i++) {
            exact[1][i]! += priorK[i]!;
            exact[2][i]! += priorV[i]!;
          }
        }
        const parts = [
          { name: 'dq', buf: dqBuf, image: dqImage, l: ldq, width: qw },
          { name: 'dk', buf: dkBuf, image: dkImage, l: ldk, width: kvw },
          { name: 'dv', buf: dvBuf, image: dvImage, l: ldv, width: kvw },
        ];
        const errors: string[] = [];
        let worst = 0;
        let kept = true;
        for (const [i, p] of parts.entries()) {
          const got = await b.read(p.buf, p.image.length);
          const e = sliceError(gather(got, p.width, T, p.l), exact[i]!, hd);
          errors.push(`${p.name} ${e.toExponential(1)}`);
          worst = Math.max(worst, e);
          kept &&= keptOutside(got, p.image, p.width, T, p.l);
        }
        b.push(`attention ${c.name} T=${T} (${errors.join(', ')})`, worst, kept);
      }
    }
  });
}

// -----------------------------------------------------------------------------------------------

export const BACKWARD_CASES: readonly BackwardCase[] = [
  { name: 'rms_norm backward (weighted, per-head, unweighted, residual-fused with scales; in place, accumulating)', run: checkRmsNormBackward },
  { name: 'gelu_mul backward (strided, in place, PLE slice, accumulating)', run: checkGeluMulBackward },
  { name: 'rope backward (partial dims, frequency factors, large positions)', run: checkRopeBackward },
  { name: 'attention backward (GQA, sliding window, hd 256 and 512, several tiles, accumulating)', run: checkAttentionBackward },
];

export function reportBackwardChecks(checks: readonly BackwardCheck[]): string {
  return checks.map((c) => `${c.maxRelErr <= c.tolerance && c.untouched ? 'ok ' : 'BAD'} ${c.maxRelErr.toExponential(2)} (≤ ${c.tolerance})${c.untouched ? '' : ' wrote outside its rows'}  ${c.name}`).join('\n  ');
}

/** The codes bad bindings fail with ('none' where a binding is accepted), before any GPU work. */
export async function badBackwardBindingCodes(ops: OpBackwardKernels): Promise<string[]> {
  const { device } = ops;
  const owned: GPUBuffer[] = [];
  const buf = (floats: number) => {
    const b = device.createBuffer({ size: 4 * floats, usage: GPUBufferUsage.STORAGE });
    owned.push(b);
    return b;
  };
  const codes: string[] = [];
  const attempt = async (f: () => Promise<Dispatch>) => codes.push(await errorCode(f));
  const position = new PositionUniform(device);
  const [x, y, z, w] = [buf(64), buf(64), buf(64), buf(64)];
  // rms_norm: accepted in place; dx over dy at other rows; dx the same buffer as x; dy too small; in place and accumulating.
  await attempt(() => ops.bindRmsNormBackward({ size: 16, x, dy: y, dx: y, eps: 1e-6, maxTokens: 4 }));
  await attempt(() => ops.bindRmsNormBackward({ size: 16, x, dy: y, dx: y, dxOffset: 16, eps: 1e-6, maxTokens: 2 }));
  await attempt(() => ops.bindRmsNormBackward({ size: 16, x, dy: y, dx: x, eps: 1e-6, maxTokens: 2 }));
  await attempt(() => ops.bindRmsNormBackward({ size: 16, x, dy: buf(8), dx: z, eps: 1e-6, maxTokens: 1 }));
  await attempt(() => ops.bindRmsNormBackward({ size: 16, x, dy: y, dx: z, dResidual: y, accumulateResidual: true, eps: 1e-6, maxTokens: 2 }));
  // rope: odd dims.
  await attempt(() => ops.bindRopeBackward({ x, heads: 1, headDim: 16, dims: 7, base: 1e4, position: position.buffer, maxTokens: 1 }));
  // gelu_mul: dGate and dUp the same buffer; gate at other rows of dGate.
  await attempt(() => ops.bindGeluMulBackward({ width: 16, dOut: x, gate: y, up: y, dGate: z, dUp: z, maxTokens: 1 }));
  await attempt(() => ops.bindGeluMulBackward({ width: 16, dOut: x, gate: z, gateOffset: 16, up: y, dGate: z, maxTokens: 1 }));
  // attention: heads not a multiple of kvHeads; head dim past 512; dk = k.
  await attempt(() => ops.bindAttentionBackward({ heads: 3, kvHeads: 2, headDim: 8, q: x, k: y, v: y, dOut: x, dq: z, dk: w, dv: buf(64), maxTokens: 1 }));
  await attempt(() => ops.bindAttentionBackward({ heads: 1, kvHeads: 1, headDim: 544, q: buf(544), k: buf(544), v: buf(544), dOut: buf(544), dq: buf(544), dk: buf(544), dv: buf(544), maxTokens: 1 }));
  await attempt(() => ops.bindAttentionBackward({ heads: 2, kvHeads: 1, headDim: 16, q: x, k: y, v: y, dOut: x, dq: z, dk: y, dv: w, maxTokens: 2 }));
  position.destroy();
  for (const b of owned) b.destroy();
  return codes;
}

export const BAD_BACKWARD_BINDING_CODES = ['none', 'bad-argument', 'bad-argument', 'bad-argument', 'bad-argument', 'bad-argument', 'bad-argument', 'bad-argument', 'bad-argument', 'bad-argument', 'bad-argument'];
