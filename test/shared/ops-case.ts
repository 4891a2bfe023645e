// GPU checks of the non-matmul forward ops (src/core/gpu/ops.ts), shared by the Node (Dawn) and
// browser (Chromium WebGPU) suites. Each op runs on small random inputs and is compared with a
// float64 computation (src/core/reference/math.ts where it has the op): every check reports its
// worst relative error (defined per op below) and whether the outputs it must not write kept their
// sentinel values. Token counts: T = 1 and T = 7 with bindings made for 7.
import { readBack, uploadStorage } from '../../src/core/gpu/buffers.js';
import { OpKernels, PositionUniform, type Dispatch } from '../../src/core/gpu/ops.js';
import { GGMLType, typeName } from '../../src/core/gguf/types.js';
import { dequantize } from '../../src/core/quant/dequant.js';
import { quantize } from '../../src/core/quant/quantize.js';
import { gelu, rmsNorm, rope } from '../../src/core/reference/math.js';
import { errorCode } from './error-code.js';

/** The tolerance every check must meet. */
export const OPS_TOLERANCE = 1e-5;

export interface OpCheck {
  readonly name: string;
  /** Worst relative error (NaN counts as Infinity). */
  readonly maxRelErr: number;
  /** Whether every output element the op must not write still holds its sentinel. */
  readonly untouched: boolean;
}

export interface OpCase {
  readonly name: string;
  run(ops: OpKernels): Promise<OpCheck[]>;
}

const SENTINEL = -12345.5;
const MAX_T = 7;

function seededNormals(n: number, seed: number, std = 1): Float32Array<ArrayBuffer> {
  let s = seed >>> 0;
  const uniform = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 0.5) / 2 ** 32;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = std * Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
  return out;
}

/**
 * GELU-tanh in float64 as x / (1 + e^(-2u)), algebraically identical to math.ts's
 * 0.5·x·(1 + tanh(u)) but without its cancellation for x < −6 (there 1 + tanh(u) loses every
 * digit in float64: at x = −8 it returns 0 instead of −3.1e−21).
 */
function geluExact(x: number): number {
  const u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
  const exact = x / (1 + Math.exp(-2 * u));
  if (Math.abs(x) < 4 && Math.abs(exact - gelu(x)) > 1e-12 * Math.max(1, Math.abs(x))) throw new Error(`geluExact disagrees with math.ts gelu at ${x}`);
  return exact;
}

/** |got − exact| / max(|scale|, floor), NaN → Infinity. */
function rel(got: number, exact: number, scale = Math.abs(exact), floor = 1e-20): number {
  const e = Math.abs(got - exact) / Math.max(Math.abs(scale), floor);
  return Number.isNaN(e) ? Infinity : e;
}

/** A small harness: owned buffers and bindings, submit, read back. */
class Bench {
  private readonly owned: GPUBuffer[] = [];
  private readonly dispatches: Dispatch[] = [];
  readonly checks: OpCheck[] = [];

  constructor(readonly ops: OpKernels) {}

  get device(): GPUDevice {
    return this.ops.device;
  }

  upload(data: Float32Array<ArrayBuffer> | Uint32Array<ArrayBuffer> | Uint8Array<ArrayBuffer>, label = 'data'): GPUBuffer {
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

  push(name: string, maxRelErr: number, untouched = true): void {
    this.checks.push({ name, maxRelErr, untouched });
  }

  dispose(): void {
    for (const d of this.dispatches) d.destroy();
    for (const b of this.owned) b.destroy();
  }
}

async function withBench(ops: OpKernels, body: (b: Bench) => Promise<void>): Promise<OpCheck[]> {
  const bench = new Bench(ops);
  try {
    await body(bench);
    return bench.checks;
  } finally {
    bench.dispose();
  }
}

/** Whether got[i] holds the sentinel for every i with !written(i). */
function sentinelsKept(got: Float32Array, written: (i: number) => boolean): boolean {
  for (let i = 0; i < got.length; i++) if (!written(i) && got[i] !== SENTINEL) return false;
  return true;
}

/** Whether i falls in one of T rows of `width` at offset + t·stride. */
function inRows(i: number, offset: number, stride: number, width: number, tokens: number): boolean {
  if (i < offset) return false;
  const t = Math.floor((i - offset) / stride);
  return t < tokens && (i - offset) % stride < width;
}

// -----------------------------------------------------------------------------------------------
// embed: a 20-row table as tiles [0, 12) and [12, 20), scaled by sqrt(1536); error relative to each value.

async function checkEmbed(ops: OpKernels): Promise<OpCheck[]> {
  return withBench(ops, async (b) => {
    const cols = 256;
    const vocab = 20;
    const split = 12;
    const scale = Math.sqrt(1536); // Gemma 4 E2B's sqrt(d_model), not a power of two
    const outOffset = 4;
    const outStride = cols + 8;
    const outLen = outOffset + MAX_T * outStride;
    for (const type of [GGMLType.F32, GGMLType.Q8_0, GGMLType.Q6_K]) {
      const bytes = quantize(type, seededNormals(vocab * cols, 100 + type, 0.05));
      const table = dequantize(type, bytes, vocab * cols);
      const rowBytes = bytes.byteLength / vocab;
      const tiles = [
        { weight: b.upload(bytes.slice(0, split * rowBytes)), firstRow: 0, rows: split },
        { weight: b.upload(bytes.slice(split * rowBytes)), firstRow: split, rows: vocab - split },
      ];
      const ids = b.upload(new Uint32Array(MAX_T + 1));
      const out = b.sentinels(outLen);
      const embed = await b.keep(ops.bindEmbed({ type, cols, tiles, ids, idsOffset: 1, out, outOffset, outStride, scale, maxTokens: MAX_T }));
      for (const tokens of [[3, 15, 0, 19, 12, 11, 7], [17]]) {
        b.device.queue.writeBuffer(ids, 0, new Uint32Array([99, ...tokens]));
        b.write(out, new Float32Array(outLen).fill(SENTINEL));
        b.run((pass) => embed.encode(pass, tokens.length));
        const got = await b.read(out, outLen);
        let worst = 0;
        for (const [t, id] of tokens.entries()) {
          for (let c = 0; c < cols; c++) worst = Math.max(worst, rel(got[outOffset + t * outStride + c]!, table[id * cols + c]! * scale));
        }
        b.push(`embed ${typeName(type)} two tiles T=${tokens.length}`, worst, sentinelsKept(got, (i) => inRows(i, outOffset, outStride, cols, tokens.length)));
      }
    }
  });
}

// -----------------------------------------------------------------------------------------------
// rms_norm and ple_combine; error relative to |result| (plain norms) or to |residual| + |norm| (fused).

function f64(a: ArrayLike<number>, start = 0, length = a.length - start): Float64Array {
  const out = new Float64Array(length);
  for (let i = 0; i < length; i++) out[i] = a[start + i]!;
  return out;
}

async function checkRmsNorm(ops: OpKernels): Promise<OpCheck[]> {
  return withBench(ops, async (b) => {
    const eps = 1e-6;

    // Whole-vector norm, width 200 (more than one value per thread), strided x and out.
    {
      const width = 200;
      const xStride = 208;
      const outOffset = 3;
      const outStride = 205;
      const x = seededNormals(MAX_T * xStride, 1, 2);
      const w = seededNormals(width, 2, 0.5).map((v) => 1 + v);
      const xBuf = b.upload(x);
      const wBuf = b.upload(w);
      const outLen = outOffset + MAX_T * outStride;
      const out = b.sentinels(outLen);
      const norm = await b.keep(ops.bindRmsNorm({ size: width, x: xBuf, xStride, weight: wBuf, out, outOffset, outStride, eps, maxTokens: MAX_T }));
      for (const T of [MAX_T, 1]) {
        b.write(out, new Float32Array(outLen).fill(SENTINEL));
        b.run((pass) => norm.encode(pass, T));
        const got = await b.read(out, outLen);
        let worst = 0;
        for (let t = 0; t < T; t++) {
          const exact = rmsNorm(f64(x, t * xStride, width), eps, w);
          for (let i = 0; i < width; i++) worst = Math.max(worst, rel(got[outOffset + t * outStride + i]!, exact[i]!));
        }
        b.push(`rms_norm width ${width} T=${T}`, worst, sentinelsKept(got, (i) => inRows(i, outOffset, outStride, width, T)));
      }
    }

    // Per-head norms in place (q-norm: 4 heads of 32), and the unweighted v-norm (2 heads of 64).
    for (const [size, count, weighted] of [[32, 4, true], [64, 2, false]] as const) {
      const width = size * count;
      const offset = 8;
      const stride = width + 16;
      const len = offset + MAX_T * stride;
      const x = seededNormals(len, 3 + size, 1.5);
      const w = seededNormals(size, 4, 0.3).map((v) => 1 + v);
      const buf = b.upload(x);
      const wBuf = weighted ? b.upload(w) : undefined;
      const norm = await b.keep(ops.bindRmsNorm({ size, count, x: buf, xOffset: offset, xStride: stride, weight: wBuf, out: buf, outOffset: offset, outStride: stride, eps, maxTokens: MAX_T }));
      for (const T of [MAX_T, 1]) {
        b.write(buf, x);
        b.run((pass) => norm.encode(pass, T));
        const got = await b.read(buf, len);
        let worst = 0;
        let kept = true;
        for (let i = 0; i < len; i++) if (!inRows(i, offset, stride, width, T) && got[i] !== x[i]) kept = false;
        for (let t = 0; t < T; t++) {
          const exact = rmsNorm(f64(x, offset + t * stride, width), eps, weighted ? w : null, size);
          for (let i = 0; i < width; i++) worst = Math.max(worst, rel(got[offset + t * stride + i]!, exact[i]!));
        }
        b.push(`rms_norm ${count}x${size} ${weighted ? 'weighted' : 'unweighted'} in place T=${T}`, worst, kept);
      }
    }

    // h1 = h + RMS(a, w), in place on h.
    {
      const width = 96;
      const h = seededNormals(MAX_T * width, 5, 3);
      const a = seededNormals(MAX_T * width, 6, 0.7);
      const w = seededNormals(width, 7, 0.3).map((v) => 1 + v);
      const hBuf = b.upload(h);
      const norm = await b.keep(ops.bindRmsNorm({ size: width, x: b.upload(a), weight: b.upload(w), residual: hBuf, out: hBuf, eps, maxTokens: MAX_T }));
      for (const T of [MAX_T, 1]) {
        b.write(hBuf, h);
        b.run((pass) => norm.encode(pass, T));
        const got = await b.read(hBuf, MAX_T * width);
        let worst = 0;
        for (let t = 0; t < T; t++) {
          const n = rmsNorm(f64(a, t * width, width), eps, w);
          for (let i = 0; i < width; i++) {
            const r = h[t * width + i]!;
            worst = Math.max(worst, rel(got[t * width + i]!, r + n[i]!, Math.abs(r) + Math.abs(n[i]!)));
          }
        }
        let kept = true;
        for (let i = T * width; i < MAX_T * width; i++) if (got[i] !== h[i]) kept = false;
        b.push(`h + rms_norm(a) in place T=${T}`, worst, kept);
      }
    }

    // ple = (RMS(proj / sqrt(d), w) + e·sqrt(P))·2^(-1/2), L = 3 layers of P = 32, d = 96.
    {
      const L = 3;
      const P = 32;
      const d = 96;
      const proj = seededNormals(MAX_T * L * P, 8, 4);
      const e = seededNormals(MAX_T * L * P, 9, 0.05);
      const w = seededNormals(P, 10, 0.3).map((v) => 1 + v);
      const out = b.sentinels(MAX_T * L * P);
      const ple = await b.keep(ops.bindPleCombine({ proj: b.upload(proj), projScale: 1 / Math.sqrt(d), tokenRows: b.upload(e), weight: b.upload(w), layers: L, size: P, out, eps, maxTokens: MAX_T }));
      for (const T of [MAX_T, 1]) {
        b.write(out, new Float32Array(MAX_T * L * P).fill(SENTINEL));
        b.run((pass) => ple.encode(pass, T));
        const got = await b.read(out, MAX_T * L * P);
        let worst = 0;
        for (let t = 0; t < T; t++) {
          const scaled = f64(proj, t * L * P, L * P).map((v) => v / Math.sqrt(d));
          const n = rmsNorm(scaled, eps, w, P);
          for (let i = 0; i < L * P; i++) {
            const tok = e[t * L * P + i]! * Math.sqrt(P);
            worst = Math.max(worst, rel(got[t * L * P + i]!, (n[i]! + tok) * Math.SQRT1_2, (Math.abs(n[i]!) + Math.abs(tok)) * Math.SQRT1_2));
          }
        }
        b.push(`ple_combine ${L}x${P} T=${T}`, worst, sentinelsKept(got, (i) => i < T * L * P));
      }
    }
  });
}

// -----------------------------------------------------------------------------------------------
// rope: error relative to the norm of each rotated pair (rotation keeps it); untouched values exact.

async function checkRope(ops: OpKernels): Promise<OpCheck[]> {
  return withBench(ops, async (b) => {
    const heads = 2;
    const headDim = 64;
    const globalFactors = new Float32Array(32).map((_, j) => (j < 8 ? 1 : 1e30));
    const configs = [
      { name: 'base 1e4', dims: 64, base: 1e4, factors: null },
      { name: 'base 1e6 with factors', dims: 64, base: 1e6, factors: globalFactors },
      { name: 'base 1e4 dims 32 of 64', dims: 32, base: 1e4, factors: null },
    ];
    const offset = 5;
    const stride = heads * headDim + 3;
    const len = offset + MAX_T * stride;
    const x = seededNormals(len, 11);
    const buf = b.upload(x);
    const position = b.position();
    for (const c of configs) {
      const r = await b.keep(ops.bindRope({ x: buf, xOffset: offset, xStride: stride, heads, headDim, dims: c.dims, base: c.base, factors: c.factors ?? undefined, position: position.buffer, maxTokens: MAX_T }));
      for (const [start, T] of [[0, MAX_T], [994, MAX_T], [1000, 1], [131_000, MAX_T]] as const) {
        b.write(buf, x);
        position.set(start);
        b.run((pass) => r.encode(pass, T));
        const got = await b.read(buf, len);
        let worst = 0;
        let kept = true;
        for (let t = 0; t < T; t++) {
          const base = offset + t * stride;
          const exact = f64(x, base, heads * headDim);
          rope(exact, headDim, c.dims, start + t, c.base, c.factors);
          for (let h = 0; h < heads; h++) {
            for (let j = 0; j < c.dims / 2; j++) {
              const i0 = h * headDim + j;
              const i1 = i0 + c.dims / 2;
              const norm = Math.hypot(x[base + i0]!, x[base + i1]!);
              worst = Math.max(worst, rel(got[base + i0]!, exact[i0]!, norm), rel(got[base + i1]!, exact[i1]!, norm));
            }
            for (let i = c.dims; i < headDim; i++) if (got[base + h * headDim + i] !== x[base + h * headDim + i]) kept = false;
          }
        }
        for (let i = 0; i < len; i++) if (!inRows(i, offset, stride, heads * headDim, T) && got[i] !== x[i]) kept = false;
        b.push(`rope ${c.name} positions ${start}..${start + T - 1}`, worst, kept);
      }
    }
  });
}

// -----------------------------------------------------------------------------------------------
// kv_store + attention: a sequence of blocks (prefill chunks and decode steps) written to the cache
// and attended over, as the engine does, against float64 attention over the whole history.
// Error: per (token, head), max |gpu − exact| / max |exact| over the head.

interface AttentionConfig {
  name: string;
  headDim: number;
  heads: number;
  kvHeads: number;
  window: number;
  capacity: number;
  /** Token counts of the successive blocks. */
  blocks: readonly number[];
  maxSplits?: number;
  /** false: one-token blocks split the keys and combine instead of the one-pass decode kernel. */
  decodeKernel?: 'head-groups' | 'one-pass' | 'tiled';
}

function attentionExact(q: Float32Array, keys: Float32Array, values: Float32Array, c: AttentionConfig, pos: number, h: number): Float64Array {
  const { headDim: hd, heads, kvHeads } = c;
  const g = Math.floor(h / (heads / kvHeads));
  const kvw = kvHeads * hd;
  const first = c.window > 0 ? Math.max(0, pos - c.window + 1) : 0;
  const scores: number[] = [];
  for (let j = first; j <= pos; j++) {
    let s = 0;
    for (let d = 0; d < hd; d++) s += q[d]! * keys[j * kvw + g * hd + d]!;
    scores.push(s);
  }
  const m = Math.max(...scores);
  const p = scores.map((s) => Math.exp(s - m));
  const sum = p.reduce((a, v) => a + v, 0);
  const o = new Float64Array(hd);
  for (let j = first; j <= pos; j++) {
    const wgt = p[j - first]! / sum;
    for (let d = 0; d < hd; d++) o[d]! += wgt * values[j * kvw + g * hd + d]!;
  }
  return o;
}

async function runAttention(ops: OpKernels, c: AttentionConfig): Promise<OpCheck[]> {
  return withBench(ops, async (b) => {
    const { headDim: hd, heads, kvHeads, capacity } = c;
    const kvw = kvHeads * hd;
    const qw = heads * hd;
    const total = c.blocks.reduce((a, v) => a + v, 0);
    // Scores q·k of standard deviation about 2: q, k ~ N(0, 2/sqrt(hd)).
    const std = Math.sqrt(2 / Math.sqrt(hd));
    const keys = seededNormals(total * kvw, 21 + hd, std);
    const values = seededNormals(total * kvw, 22 + hd);
    const queries = seededNormals(total * qw, 23 + hd, std);

    // Inputs laid out as the engine's fused projections might be: strided rows with offsets.
    const kvStride = kvw + 4;
    const kIn = b.upload(new Float32Array(MAX_T * kvStride));
    const vIn = b.upload(new Float32Array(2 + MAX_T * kvStride));
    const qOffset = 4;
    const qStride = qw + 8;
    const qIn = b.upload(new Float32Array(qOffset + MAX_T * qStride));
    const outOffset = 4;
    const outStride = qw + 4;
    const outLen = outOffset + MAX_T * outStride;
    const out = b.sentinels(outLen);
    const kCache = b.sentinels(capacity * kvw, 'k cache');
    const vCache = b.sentinels(capacity * kvw, 'v cache');
    const position = b.position();
    const store = await b.keep(ops.bindKvStore({ k: kIn, kStride: kvStride, v: vIn, vOffset: 2, vStride: kvStride, kCache, vCache, width: kvw, capacity, position: position.buffer, maxTokens: MAX_T }));
    const attend = await b.keep(
      ops.bindAttention({ q: qIn, qOffset, qStride, kCache, vCache, out, outOffset, outStride, heads, kvHeads, headDim: hd, capacity, window: c.window, position: position.buffer, maxTokens: MAX_T, maxSplits: c.maxSplits, decodeKernel: c.decodeKernel ?? 'head-groups' }),
    );

    let start = 0;
    let worstAll = 0;
    let keptAll = true;
    const perBlock: string[] = [];
    for (const T of c.blocks) {
      const kBlock = new Float32Array(MAX_T * kvStride);
      const vBlock = new Float32Array(2 + MAX_T * kvStride);
      const qBlock = new Float32Array(qOffset + MAX_T * qStride);
      for (let t = 0; t < T; t++) {
        kBlock.set(keys.subarray((start + t) * kvw, (start + t + 1) * kvw), t * kvStride);
        vBlock.set(values.subarray((start + t) * kvw, (start + t + 1) * kvw), 2 + t * kvStride);
        qBlock.set(queries.subarray((start + t) * qw, (start + t + 1) * qw), qOffset + t * qStride);
      }
      b.write(kIn, kBlock);
      b.write(vIn, vBlock);
      b.write(qIn, qBlock);
      b.write(out, new Float32Array(outLen).fill(SENTINEL));
      position.set(start);
      b.run((pass) => {
        store.encode(pass, T);
        attend.encode(pass, T);
      });
      const got = await b.read(out, outLen);
      let worst = 0;
      for (let t = 0; t < T; t++) {
        for (let h = 0; h < heads; h++) {
          const q = queries.subarray((start + t) * qw + h * hd, (start + t) * qw + (h + 1) * hd);
          const exact = attentionExact(q, keys, values, c, start + t, h);
          let scale = 0;
          for (let d = 0; d < hd; d++) scale = Math.max(scale, Math.abs(exact[d]!));
          for (let d = 0; d < hd; d++) worst = Math.max(worst, rel(got[outOffset + t * outStride + h * hd + d]!, exact[d]!, scale));
        }
      }
      const kept = sentinelsKept(got, (i) => inRows(i, outOffset, outStride, qw, T));
      worstAll = Math.max(worstAll, worst);
      keptAll &&= kept;
      perBlock.push(`${start}+${T}`);
      start += T;
    }
    b.push(`attention ${c.name}: blocks ${perBlock.join(' ')}`, worstAll, keptAll);

    // The caches hold exactly the last `capacity` positions, each in slot p % capacity.
    const [kGot, vGot] = [await b.read(kCache, capacity * kvw), await b.read(vCache, capacity * kvw)];
    let cacheExact = true;
    for (let p = Math.max(0, total - capacity); p < total; p++) {
      const slot = p % capacity;
      for (let i = 0; i < kvw; i++) {
        if (kGot[slot * kvw + i] !== keys[p * kvw + i] || vGot[slot * kvw + i] !== values[p * kvw + i]) cacheExact = false;
      }
    }
    b.push(`kv_store ${c.name}: ring of ${capacity} holds positions ${Math.max(0, total - capacity)}..${total - 1}`, cacheExact ? 0 : Infinity);
  });
}

const SLIDING_BLOCKS = [7, 7, 7, 1, 1, 7, 3, 1]; // positions 0..33; the block at 23..29 wraps the ring of 14
const GLOBAL_BLOCKS = [7, 7, 7, 7, 7, 1, 1, 1, 1, 1]; // 40 positions
const LONG_SLIDING_BLOCKS = [7, 7, 7, 7, 7, 7, 7, 7, 1, 1, 1]; // 59 positions: two key tiles, a ring of 46 that wraps

export const ATTENTION_CONFIGS: readonly AttentionConfig[] = [
  { name: 'sliding 8, hd 32, 4/1 heads', headDim: 32, heads: 4, kvHeads: 1, window: 8, capacity: 8 + MAX_T - 1, blocks: SLIDING_BLOCKS },
  { name: 'sliding 8, hd 64, 4/2 heads', headDim: 64, heads: 4, kvHeads: 2, window: 8, capacity: 8 + MAX_T - 1, blocks: SLIDING_BLOCKS },
  { name: 'sliding 8, hd 32, 4/2 heads, ring of 16', headDim: 32, heads: 4, kvHeads: 2, window: 8, capacity: 16, blocks: SLIDING_BLOCKS },
  { name: 'global, hd 64, 4/2 heads', headDim: 64, heads: 4, kvHeads: 2, window: 0, capacity: 40, blocks: GLOBAL_BLOCKS },
  { name: 'global, hd 32, 4/1 heads, no splits', headDim: 32, heads: 4, kvHeads: 1, window: 0, capacity: 48, blocks: GLOBAL_BLOCKS, maxSplits: 1 },
  { name: 'global, hd 32, 4/1 heads', headDim: 32, heads: 4, kvHeads: 1, window: 0, capacity: 48, blocks: GLOBAL_BLOCKS },
  { name: 'global, hd 32, 4/1 heads, 5 splits', headDim: 32, heads: 4, kvHeads: 1, window: 0, capacity: 160, blocks: GLOBAL_BLOCKS },
  { name: 'sliding 40, hd 64, 4/2 heads, no splits', headDim: 64, heads: 4, kvHeads: 2, window: 40, capacity: 40 + MAX_T - 1, blocks: LONG_SLIDING_BLOCKS, maxSplits: 1 },
  { name: 'sliding 40, hd 64, 4/2 heads', headDim: 64, heads: 4, kvHeads: 2, window: 40, capacity: 40 + MAX_T - 1, blocks: LONG_SLIDING_BLOCKS },
  // One-token blocks above use the head-group decode kernel; these the tiled one (key splits and
  // combine) or the one-pass one.
  { name: 'global, hd 32, 4/1 heads, 5 splits, split decode', headDim: 32, heads: 4, kvHeads: 1, window: 0, capacity: 160, blocks: GLOBAL_BLOCKS, decodeKernel: 'tiled' },
  { name: 'sliding 40, hd 64, 4/2 heads, split decode', headDim: 64, heads: 4, kvHeads: 2, window: 40, capacity: 40 + MAX_T - 1, blocks: LONG_SLIDING_BLOCKS, decodeKernel: 'tiled' },
  { name: 'sliding 40, hd 64, 4/2 heads, one-pass decode', headDim: 64, heads: 4, kvHeads: 2, window: 40, capacity: 40 + MAX_T - 1, blocks: LONG_SLIDING_BLOCKS, decodeKernel: 'one-pass' },
  { name: 'sliding 8, hd 32, 4/2 heads, ring of 16, one-pass decode', headDim: 32, heads: 4, kvHeads: 2, window: 8, capacity: 16, blocks: SLIDING_BLOCKS, decodeKernel: 'one-pass' },
  // 32 heads a kv head: the head-group decode takes one key a round, several rounds a split.
  { name: 'global, hd 32, 32/1 heads, head-group decode in rounds', headDim: 32, heads: 32, kvHeads: 1, window: 0, capacity: 96, blocks: [7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 1, 1, 1] },
  // E2B head sizes.
  { name: 'sliding 40, hd 256, 8/1 heads', headDim: 256, heads: 8, kvHeads: 1, window: 40, capacity: 40 + MAX_T - 1, blocks: LONG_SLIDING_BLOCKS },
  { name: 'global, hd 512, 2/1 heads', headDim: 512, heads: 2, kvHeads: 1, window: 0, capacity: 40, blocks: GLOBAL_BLOCKS },
];

async function checkAttention(ops: OpKernels): Promise<OpCheck[]> {
  const checks: OpCheck[] = [];
  for (const c of ATTENTION_CONFIGS) checks.push(...(await runAttention(ops, c)));
  return checks;
}

// -----------------------------------------------------------------------------------------------
// elementwise: add, mul, gelu_mul (up = one layer's slice of a [T][L·P] buffer), scale, softcap,
// in place where offered. Error relative to each value (add: to |a| + |b|), values under 1e-20 as 0.

async function checkElementwise(ops: OpKernels): Promise<OpCheck[]> {
  return withBench(ops, async (b) => {
    const width = 48;
    const n = MAX_T * width;
    const a = seededNormals(n, 31, 3);
    // Extremes for the activations: large |x| must not give NaN.
    a.set([-100, -20, -9, -5, 0, 1e-4, -1e-4, 5, 20, 100, 0.24, -0.26], 0);
    const bv = seededNormals(n, 32);
    const aBuf = b.upload(a);
    const bBuf = b.upload(bv);

    type Out = { out: GPUBuffer; outOffset: number; outStride: number; width: number; maxTokens: number };
    const cases: { name: string; exact: (t: number, i: number) => number; scale?: (t: number, i: number) => number; bind: (o: Out) => Promise<Dispatch> }[] = [];
    cases.push({ name: 'add', exact: (t, i) => a[t * width + i]! + bv[t * width + i]!, scale: (t, i) => Math.abs(a[t * width + i]!) + Math.abs(bv[t * width + i]!), bind: (o) => ops.bindAdd({ ...o, a: aBuf, b: bBuf }) });
    cases.push({ name: 'mul', exact: (t, i) => a[t * width + i]! * bv[t * width + i]!, bind: (o) => ops.bindMul({ ...o, a: aBuf, b: bBuf }) });
    cases.push({ name: 'gelu_mul', exact: (t, i) => geluExact(a[t * width + i]!) * bv[t * width + i]!, bind: (o) => ops.bindGeluMul({ ...o, gate: aBuf, up: bBuf }) });
    // g = gelu(gate)·ple_l: up is layer 2 of L = 3 slices of width in a [T][3·width] buffer.
    const ple = seededNormals(MAX_T * 3 * width, 33);
    const pleBuf = b.upload(ple);
    cases.push({ name: 'gelu_mul with a PLE slice', exact: (t, i) => geluExact(a[t * width + i]!) * ple[t * 3 * width + 2 * width + i]!, bind: (o) => ops.bindGeluMul({ ...o, gate: aBuf, up: pleBuf, upOffset: 2 * width, upStride: 3 * width }) });
    const factor = b.upload(new Float32Array([7, 0.8125, 3]));
    cases.push({ name: 'scale by a GPU scalar', exact: (t, i) => a[t * width + i]! * 0.8125, bind: (o) => ops.bindScale({ ...o, x: aBuf, factor, factorIndex: 1 }) });
    const logits = seededNormals(n, 34, 40);
    logits.set([-500, -60, -1e-4, 1e-4, 0.1, 7.4, -7.6, 500], 0);
    const logitBuf = b.upload(logits);
    cases.push({ name: 'softcap 30', exact: (t, i) => 30 * Math.tanh(logits[t * width + i]! / 30), bind: (o) => ops.bindSoftcap({ ...o, x: logitBuf, cap: 30 }) });

    const outOffset = 6;
    const outStride = width + 10;
    const outLen = outOffset + MAX_T * outStride;
    for (const c of cases) {
      const out = b.sentinels(outLen);
      const d = await b.keep(c.bind({ out, outOffset, outStride, width, maxTokens: MAX_T }));
      for (const T of [MAX_T, 1]) {
        b.write(out, new Float32Array(outLen).fill(SENTINEL));
        b.run((pass) => d.encode(pass, T));
        const got = await b.read(out, outLen);
        let worst = 0;
        for (let t = 0; t < T; t++) {
          for (let i = 0; i < width; i++) worst = Math.max(worst, rel(got[outOffset + t * outStride + i]!, c.exact(t, i), c.scale ? c.scale(t, i) : undefined));
        }
        b.push(`${c.name} T=${T}`, worst, sentinelsKept(got, (i) => inRows(i, outOffset, outStride, width, T)));
      }
    }

    // In place: h = h + x (a is out), g = gelu(g)·up (gate is out), h = h·s and logits capped in place.
    const inPlace: { name: string; data: Float32Array<ArrayBuffer>; exact: (v: number, t: number, i: number) => number; scale?: (v: number, t: number, i: number) => number; bind: (buf: GPUBuffer) => Promise<Dispatch> }[] = [
      { name: 'add in place', data: a, exact: (v, t, i) => v + bv[t * width + i]!, scale: (v, t, i) => Math.abs(v) + Math.abs(bv[t * width + i]!), bind: (buf) => ops.bindAdd({ a: buf, b: bBuf, out: buf, width, maxTokens: MAX_T }) },
      { name: 'add in place (b is out)', data: a, exact: (v, t, i) => bv[t * width + i]! + v, scale: (v, t, i) => Math.abs(v) + Math.abs(bv[t * width + i]!), bind: (buf) => ops.bindAdd({ a: bBuf, b: buf, out: buf, width, maxTokens: MAX_T }) },
      { name: 'gelu_mul in place', data: a, exact: (v, t, i) => geluExact(v) * bv[t * width + i]!, bind: (buf) => ops.bindGeluMul({ gate: buf, up: bBuf, out: buf, width, maxTokens: MAX_T }) },
      { name: 'scale in place', data: a, exact: (v) => v * 0.8125, bind: (buf) => ops.bindScale({ x: buf, factor, factorIndex: 1, out: buf, width, maxTokens: MAX_T }) },
      { name: 'softcap in place', data: logits, exact: (v) => 30 * Math.tanh(v / 30), bind: (buf) => ops.bindSoftcap({ x: buf, cap: 30, out: buf, width, maxTokens: MAX_T }) },
    ];
    for (const c of inPlace) {
      const buf = b.upload(c.data.slice());
      const d = await b.keep(c.bind(buf));
      for (const T of [MAX_T, 1]) {
        b.write(buf, c.data);
        b.run((pass) => d.encode(pass, T));
        const got = await b.read(buf, n);
        let worst = 0;
        let kept = true;
        for (let t = 0; t < MAX_T; t++) {
          for (let i = 0; i < width; i++) {
            const v = c.data[t * width + i]!;
            if (t >= T) {
              if (got[t * width + i] !== v) kept = false;
              continue;
            }
            worst = Math.max(worst, rel(got[t * width + i]!, c.exact(v, t, i), c.scale ? c.scale(v, t, i) : undefined));
          }
        }
        b.push(`${c.name} T=${T}`, worst, kept);
      }
    }
  });
}

// -----------------------------------------------------------------------------------------------

/** Error codes ('none' when accepted) of bindings checked before any GPU work. */
export async function badOpBindingCodes(ops: OpKernels): Promise<string[]> {
  const { device } = ops;
  const buf = (n: number) => uploadStorage(device, new Float32Array(n), 'b');
  const x = buf(1024);
  const y = buf(1024);
  const position = new PositionUniform(device);
  const codes: string[] = [];
  const attempt = async (f: () => Promise<unknown>) => codes.push(await errorCode(f));
  const p = position.buffer;
  // A sliding window of 8 over blocks of 7 needs 14 slots.
  await attempt(() => ops.bindAttention({ q: x, kCache: buf(13 * 32), vCache: buf(13 * 32), out: y, heads: 4, kvHeads: 1, headDim: 32, capacity: 13, window: 8, position: p, maxTokens: 7 }));
  // The same cache is fine when no position reaches past it (it never wraps); a global one that would wrap is not.
  await attempt(() => ops.bindAttention({ q: x, kCache: buf(13 * 32), vCache: buf(13 * 32), out: y, heads: 4, kvHeads: 1, headDim: 32, capacity: 13, window: 8, maxPosition: 12, position: p, maxTokens: 7 }).then((d) => d.destroy()));
  await attempt(() => ops.bindAttention({ q: x, kCache: buf(13 * 32), vCache: buf(13 * 32), out: y, heads: 4, kvHeads: 1, headDim: 32, capacity: 13, maxPosition: 13, position: p, maxTokens: 7 }));
  // Head dim not a multiple of 32.
  await attempt(() => ops.bindAttention({ q: x, kCache: y, vCache: buf(1024), out: buf(1024), heads: 2, kvHeads: 1, headDim: 24, capacity: 8, position: p, maxTokens: 1 }));
  // A block longer than the ring.
  await attempt(() => ops.bindKvStore({ k: x, v: x, kCache: buf(64), vCache: buf(64), width: 16, capacity: 4, position: p, maxTokens: 5 }));
  // In place at other rows.
  await attempt(() => ops.bindAdd({ a: x, aOffset: 4, b: y, out: x, width: 16, maxTokens: 2 }));
  await attempt(() => ops.bindRmsNorm({ size: 16, x, out: x, outOffset: 16, eps: 1e-6, maxTokens: 2 }));
  // Odd rope dims; out too small.
  await attempt(() => ops.bindRope({ x, heads: 1, headDim: 16, dims: 7, base: 1e4, position: p, maxTokens: 1 }));
  await attempt(() => ops.bindGeluMul({ gate: x, up: y, out: buf(8), width: 16, maxTokens: 1 }));
  // Unsupported embedding dtype.
  await attempt(() => ops.bindEmbed({ type: GGMLType.Q2_K, cols: 256, tiles: [{ weight: x, firstRow: 0, rows: 1 }], ids: y, out: buf(256), maxTokens: 1 }));
  position.destroy();
  return codes;
}

export const BAD_BINDING_CODES = ['bad-argument', 'none', 'bad-argument', 'bad-argument', 'bad-argument', 'bad-argument', 'bad-argument', 'bad-argument', 'bad-argument', 'unsupported'];


// The fused end of a Gemma 4 block: h' = (h + RMS(a)·w)·s and x = RMS(h')·w2 in one dispatch,
// against the two separate rms_norm dispatches (must agree to the bit) and float64.
async function checkRmsNormNext(ops: OpKernels): Promise<OpCheck[]> {
  return withBench(ops, async (b) => {
    const eps = 1e-6;
    // 1,100 values: on a software device (128 threads), more than the threads hold in registers
    // (rms_norm.forward.wgsl's loop path).
    for (const width of [96, 200, 1100]) {
      const s = 0.73;
      const h = seededNormals(MAX_T * width, 11 + width, 3);
      const a = seededNormals(MAX_T * width, 12, 0.7);
      const w = seededNormals(width, 13, 0.3).map((v) => 1 + v);
      const w2 = seededNormals(width, 14, 0.3).map((v) => 1 + v);
      const aBuf = b.upload(a);
      const wBuf = b.upload(w);
      const w2Buf = b.upload(w2);
      const hFused = b.upload(h);
      const hPlain = b.upload(h);
      const xOffset = 5;
      const xLen = xOffset + MAX_T * width;
      const xFused = b.sentinels(xLen);
      const xPlain = b.sentinels(xLen);
      const fused = await b.keep(ops.bindRmsNorm({
        size: width, x: aBuf, weight: wBuf, residual: hFused, out: hFused, outScale: s, eps, maxTokens: MAX_T,
        next: { weight: w2Buf, out: xFused, outOffset: xOffset },
      }));
      const first = await b.keep(ops.bindRmsNorm({ size: width, x: aBuf, weight: wBuf, residual: hPlain, out: hPlain, outScale: s, eps, maxTokens: MAX_T }));
      const second = await b.keep(ops.bindRmsNorm({ size: width, x: hPlain, weight: w2Buf, out: xPlain, outOffset: xOffset, eps, maxTokens: MAX_T }));
      for (const T of [MAX_T, 1]) {
        b.write(hFused, h);
        b.write(hPlain, h);
        b.write(xFused, new Float32Array(xLen).fill(SENTINEL));
        b.run((pass) => fused.encode(pass, T));
        b.run((pass) => {
          first.encode(pass, T);
          second.encode(pass, T);
        });
        const [gh, gx, ph, px] = [await b.read(hFused, MAX_T * width), await b.read(xFused, xLen), await b.read(hPlain, MAX_T * width), await b.read(xPlain, xLen)];
        let same = true;
        for (let i = 0; i < MAX_T * width; i++) if (gh[i] !== ph[i] && !(i >= T * width && gh[i] === h[i])) same = false;
        for (let i = 0; i < T * width; i++) if (gx[xOffset + i] !== px[xOffset + i]) same = false;
        b.push(`rms_norm+next width ${width} T=${T}: fused equals two dispatches to the bit`, same ? 0 : Infinity, true);
        let worst = 0;
        for (let t = 0; t < T; t++) {
          const n = rmsNorm(f64(a, t * width, width), eps, w);
          const hn = new Float64Array(width);
          for (let i = 0; i < width; i++) hn[i] = (h[t * width + i]! + n[i]!) * s;
          const xn = rmsNorm(hn, eps, w2);
          // x relative to the row's largest value: an element near 0 carries h's rounding alone.
          const xMax = Math.max(...xn.map(Math.abs));
          for (let i = 0; i < width; i++) {
            worst = Math.max(worst, rel(gh[t * width + i]!, hn[i]!, Math.abs(h[t * width + i]! * s) + Math.abs(n[i]! * s)));
            worst = Math.max(worst, rel(gx[xOffset + t * width + i]!, xn[i]!, xMax));
          }
        }
        b.push(`rms_norm+next width ${width} T=${T} vs float64`, worst, sentinelsKept(gx, (i) => i >= xOffset && i < xOffset + T * width));
      }
    }
  });
}

// -----------------------------------------------------------------------------------------------
// qk_norm_rope: q = rope(RMS(q)·wq) in place, cache[slot] = rope(RMS(k)·wk) and RMS(v), against
// float64 over successive blocks (a ring of 10 slots that wraps). Error per head: max |gpu − exact|
// / max |exact| over the head; q values outside the block's rows and cache slots not written keep
// their values.

async function checkQkNormRope(ops: OpKernels): Promise<OpCheck[]> {
  return withBench(ops, async (b) => {
    const eps = 1e-6;
    const heads = 4;
    const kvHeads = 2;
    const headDim = 64;
    const capacity = 10;
    const qOffset = 8;
    const qStride = heads * headDim + 4;
    const kStride = kvHeads * headDim + 8;
    const qLen = qOffset + MAX_T * qStride;
    const kvw = kvHeads * headDim;
    const wq = seededNormals(headDim, 31, 0.3).map((v) => 1 + v);
    const wk = seededNormals(headDim, 32, 0.3).map((v) => 1 + v);
    const wqBuf = b.upload(wq);
    const wkBuf = b.upload(wk);
    const globalFactors = new Float32Array(16).map((_, j) => (j < 4 ? 1 : 1e30));
    const configs = [
      { name: 'hd 64, base 1e4, with kv', dims: 64, base: 1e4, factors: null, kv: true },
      { name: 'hd 64, dims 32, base 1e6 with factors, with kv', dims: 32, base: 1e6, factors: globalFactors, kv: true },
      { name: 'hd 64, q only', dims: 64, base: 1e4, factors: null, kv: false },
    ];
    for (const c of configs) {
      const qBuf = b.upload(new Float32Array(qLen));
      const kBuf = b.upload(new Float32Array(MAX_T * kStride));
      const vBuf = b.upload(new Float32Array(3 + MAX_T * kStride));
      const kCache = b.sentinels(capacity * kvw, 'k cache');
      const vCache = b.sentinels(capacity * kvw, 'v cache');
      const position = b.position();
      const d = await b.keep(ops.bindQkNormRope({
        maxTokens: MAX_T, q: qBuf, qOffset, qStride, heads, headDim, dims: c.dims, base: c.base, factors: c.factors ?? undefined,
        qNorm: wqBuf, eps, position: position.buffer,
        kv: c.kv ? { k: kBuf, kStride, v: vBuf, vOffset: 3, vStride: kStride, kvHeads, kNorm: wkBuf, kCache, vCache, capacity } : undefined,
      }));
      const kExpect = new Float64Array(capacity * kvw).fill(SENTINEL);
      const vExpect = new Float64Array(capacity * kvw).fill(SENTINEL);
      let start = 0;
      let worst = 0;
      let kept = true;
      const blocks: string[] = [];
      for (const [i, T] of [MAX_T, 1, MAX_T, 1].entries()) {
        const q = seededNormals(qLen, 40 + i, 1.5);
        const k = seededNormals(MAX_T * kStride, 50 + i, 1.5);
        const v = seededNormals(3 + MAX_T * kStride, 60 + i, 1.5);
        b.write(qBuf, q);
        b.write(kBuf, k);
        b.write(vBuf, v);
        position.set(start);
        b.run((pass) => d.encode(pass, T));
        const gotQ = await b.read(qBuf, qLen);
        for (let t = 0; t < T; t++) {
          const pos = start + t;
          const headErr = (got: ArrayLike<number>, at: number, exact: Float64Array) => {
            let scale = 0;
            for (let j = 0; j < headDim; j++) scale = Math.max(scale, Math.abs(exact[j]!));
            for (let j = 0; j < headDim; j++) worst = Math.max(worst, rel(got[at + j]!, exact[j]!, scale));
          };
          for (let h = 0; h < heads; h++) {
            const at = qOffset + t * qStride + h * headDim;
            const exact = rmsNorm(f64(q, at, headDim), eps, wq);
            rope(exact, headDim, c.dims, pos, c.base, c.factors);
            headErr(gotQ, at, exact);
          }
          if (c.kv) {
            const slot = pos % capacity;
            for (let h = 0; h < kvHeads; h++) {
              const ek = rmsNorm(f64(k, t * kStride + h * headDim, headDim), eps, wk);
              rope(ek, headDim, c.dims, pos, c.base, c.factors);
              kExpect.set(ek, slot * kvw + h * headDim);
              vExpect.set(rmsNorm(f64(v, 3 + t * kStride + h * headDim, headDim), eps, null), slot * kvw + h * headDim);
            }
          }
        }
        for (let i2 = 0; i2 < qLen; i2++) if (!inRows(i2, qOffset, qStride, heads * headDim, T) && gotQ[i2] !== q[i2]) kept = false;
        const [kGot, vGot] = [await b.read(kCache, capacity * kvw), await b.read(vCache, capacity * kvw)];
        for (let slot = 0; slot < capacity; slot++) {
          for (let h = 0; h < kvHeads; h++) {
            const at = slot * kvw + h * headDim;
            if (kExpect[at] === SENTINEL) {
              for (let j = 0; j < headDim; j++) if (kGot[at + j] !== SENTINEL || vGot[at + j] !== SENTINEL) kept = false;
              continue;
            }
            for (const [got, exp] of [[kGot, kExpect], [vGot, vExpect]] as const) {
              let scale = 0;
              for (let j = 0; j < headDim; j++) scale = Math.max(scale, Math.abs(exp[at + j]!));
              for (let j = 0; j < headDim; j++) worst = Math.max(worst, rel(got[at + j]!, exp[at + j]!, scale));
            }
          }
        }
        blocks.push(`${start}+${T}`);
        start += T;
      }
      b.push(`qk_norm_rope ${c.name}: blocks ${blocks.join(' ')} (ring of ${capacity})`, worst, kept);
    }
  });
}

export const OP_CASES: readonly OpCase[] = [
  { name: 'embed gathers rows of F32, Q8_0 and Q6_K tables split in two tiles', run: checkEmbed },
  { name: 'rms_norm (whole, per head, unweighted, fused residual, in place) and ple_combine', run: checkRmsNorm },
  { name: 'rms_norm with the next norm fused (h = (h + RMS(a)·w)·s, x = RMS(h)·w2)', run: checkRmsNormNext },
  { name: 'rope with and without frequency factors up to position 131006', run: checkRope },
  { name: 'kv_store and attention (sliding rings that wrap, global, GQA, splits)', run: checkAttention },
  { name: 'qk_norm_rope (q/k norm + RoPE + KV store fused, ring that wraps)', run: checkQkNormRope },
  { name: 'add, mul, gelu_mul, scale, softcap (strided and in place)', run: checkElementwise },
];

/** One line per check, for failure messages. */
export function reportChecks(checks: readonly OpCheck[]): string {
  return checks.map((c) => `${c.name}: ${c.maxRelErr.toExponential(2)}${c.untouched ? '' : ' (wrote outside its outputs)'}`).join('\n  ');
}
