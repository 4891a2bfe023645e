/**
 * CPU quantizers producing blocks in exactly ggml's layouts (so ggml and our dequantizers invert
 * them). Used to build test fixtures from well-conditioned float weights and, later, to write
 * LoRA adapters. The K-quants search their scales ggml-style (weighted least squares over a sweep
 * of candidate scales, then 6-bit / 8-bit super-block scales) so the error stays small.
 *
 * Block layouts (little-endian, f16 = IEEE half):
 *   Q8_0  [d f16][qs i8 ×32]                                   34 B / 32
 *   Q4_0  [d f16][qs ×16: lo nibble = x[j], hi = x[j+16]]       18 B / 32, x = d·(q−8)
 *   Q4_1  [d f16][m f16][qs ×16]                                20 B / 32, x = d·q + m
 *   Q5_0  [d f16][qh u32: bit j = bit 4 of q[j]][qs ×16]         22 B / 32, x = d·(q−16)
 *   Q5_1  [d f16][m f16][qh u32][qs ×16]                         24 B / 32, x = d·q + m
 *   Q4_K  [d f16][dmin f16][scales 12 B][qs 128 B]             144 B / 256
 *   Q5_K  [d f16][dmin f16][scales 12 B][qh 32 B][qs 128 B]    176 B / 256
 *   Q6_K  [ql 128 B][qh 64 B][scales i8 ×16][d f16]            210 B / 256
 */
import { RullamaError } from '../errors.js';
import { GGML_TYPES, GGMLType, typeName } from '../gguf/types.js';
import { f16ToF32, f32ToBf16, f32ToF16 } from './float.js';

/** Types `quantize` can produce. */
export const QUANTIZABLE_TYPES: readonly GGMLType[] = [
  GGMLType.F32,
  GGMLType.F16,
  GGMLType.BF16,
  GGMLType.Q8_0,
  GGMLType.Q4_0,
  GGMLType.Q4_1,
  GGMLType.Q5_0,
  GGMLType.Q5_1,
  GGMLType.Q4_K,
  GGMLType.Q5_K,
  GGMLType.Q6_K,
];

export function canQuantize(type: GGMLType): boolean {
  return QUANTIZABLE_TYPES.includes(type);
}

/** Bytes `count` values of `type` take (count must be a multiple of the block size). */
export function quantizedSize(type: GGMLType, count: number): number {
  const t = GGML_TYPES.get(type);
  if (!t) throw new RullamaError('bad-argument', `unknown ggml type ${String(type)}`);
  return (count / t.blockSize) * t.typeSize;
}

/** Quantizes `values` into a fresh buffer of ggml blocks. */
export function quantize(type: GGMLType, values: Float32Array): Uint8Array {
  const out = new Uint8Array(checkedSize(type, values.length));
  quantizeInto(type, values, out, 0);
  return out;
}

/**
 * Quantizes `values` into `out` starting at byte `outOffset` (no allocation; for streaming
 * writers that reuse one buffer). Returns the number of bytes written.
 */
export function quantizeInto(type: GGMLType, values: Float32Array, out: Uint8Array, outOffset = 0): number {
  const size = checkedSize(type, values.length);
  if (outOffset < 0 || outOffset + size > out.byteLength) {
    throw new RullamaError('bad-argument', `quantizeInto: ${size} bytes do not fit at ${outOffset} in a ${out.byteLength}-byte buffer`);
  }
  const dv = new DataView(out.buffer, out.byteOffset + outOffset, size);
  const o = out.byteOffset + outOffset;
  const bytes = new Uint8Array(out.buffer, o, size);
  switch (type) {
    case GGMLType.F32: quantF32(values, dv); break;
    case GGMLType.F16: quantF16(values, dv); break;
    case GGMLType.BF16: quantBF16(values, dv); break;
    case GGMLType.Q8_0: quantQ8_0(values, bytes, dv); break;
    case GGMLType.Q4_0: quantBlock32(values, bytes, dv, 4, false, 'Q4_0'); break;
    case GGMLType.Q4_1: quantBlock32(values, bytes, dv, 4, true, 'Q4_1'); break;
    case GGMLType.Q5_0: quantBlock32(values, bytes, dv, 5, false, 'Q5_0'); break;
    case GGMLType.Q5_1: quantBlock32(values, bytes, dv, 5, true, 'Q5_1'); break;
    case GGMLType.Q4_K: quantQ45K(values, bytes, dv, 15); break;
    case GGMLType.Q5_K: quantQ45K(values, bytes, dv, 31); break;
    case GGMLType.Q6_K: quantQ6_K(values, bytes, dv); break;
    default:
      throw new RullamaError('unsupported', `cannot quantize to ${typeName(type)}`);
  }
  return size;
}

function checkedSize(type: GGMLType, count: number): number {
  const t = GGML_TYPES.get(type);
  if (!t || !canQuantize(type)) throw new RullamaError('unsupported', `cannot quantize to ${typeName(type)}`);
  if (count % t.blockSize !== 0) {
    throw new RullamaError('bad-argument', `${count} values are not a whole number of ${t.name} blocks (${t.blockSize} values each)`);
  }
  return (count / t.blockSize) * t.typeSize;
}

function nonFinite(type: string, at: number): RullamaError {
  return new RullamaError('bad-argument', `cannot quantize a non-finite value to ${type} (block starting at value ${at})`);
}

// ---------------------------------------------------------------------------------------------
// Half-precision helpers
// ---------------------------------------------------------------------------------------------

const F16_MAX = 65504;

/** A block scale as f16 bits, saturated to the largest finite half instead of overflowing. */
function scaleBits(d: number): number {
  return f32ToF16(d > F16_MAX ? F16_MAX : d < -F16_MAX ? -F16_MAX : d);
}

/**
 * f16 bits for a scale `d` chosen so that `value / d` still rounds to at most `limit` in
 * magnitude: nearest rounding, moved up an ulp at a time when it came out too small. Matters for
 * tiny tensors whose scales fall in the f16 subnormal range, where one ulp is a large step and
 * rounding down would clamp the largest values.
 */
function scaleBitsCovering(d: number, value: number, limit: number): number {
  let bits = scaleBits(d);
  const v = Math.abs(value);
  const max = limit + 0.49;
  while ((bits & 0x7fff) < 0x7bff && v > max * Math.abs(f16ToF32(bits))) bits++;
  return bits;
}

// ---------------------------------------------------------------------------------------------
// Float types
// ---------------------------------------------------------------------------------------------

function quantF32(x: Float32Array, dv: DataView): void {
  for (let i = 0; i < x.length; i++) dv.setFloat32(i * 4, x[i]!, true);
}

function quantF16(x: Float32Array, dv: DataView): void {
  for (let i = 0; i < x.length; i++) dv.setUint16(i * 2, f32ToF16(x[i]!), true);
}

function quantBF16(x: Float32Array, dv: DataView): void {
  for (let i = 0; i < x.length; i++) dv.setUint16(i * 2, f32ToBf16(x[i]!), true);
}

// ---------------------------------------------------------------------------------------------
// 32-value block types
// ---------------------------------------------------------------------------------------------

/** Q8_0 scale candidates, as multiples of 1/amax (see quantQ8_0). */
const Q8_CANDIDATES = [127, 126, 124, 122, 120];

/**
 * Q8_0: symmetric 8-bit, q ∈ [−127, 127]. Besides ggml's amax/127 grid it tries a few coarser
 * grids, refits each by least squares (scale = Σxq/Σq²) and keeps the best: about 8% less RMS
 * error than the plain amax/127 scale on Gaussian data.
 */
function quantQ8_0(x: Float32Array, out: Uint8Array, dv: DataView): void {
  const nb = x.length / 32;
  for (let b = 0; b < nb; b++) {
    const xo = b * 32;
    const o = b * 34;
    let amax = 0;
    let sum = 0;
    for (let j = 0; j < 32; j++) {
      const a = Math.abs(x[xo + j]!);
      sum += a;
      if (a > amax) amax = a;
    }
    if (!(sum <= Number.MAX_VALUE)) throw nonFinite('Q8_0', xo); // NaN or ±Inf somewhere
    if (amax === 0) {
      out.fill(0, o, o + 34);
      continue;
    }
    let bestScale = amax / 127;
    let best = 0;
    for (let c = 0; c < Q8_CANDIDATES.length; c++) {
      const is = Q8_CANDIDATES[c]! / amax;
      let sxl = 0, sll = 0;
      for (let j = 0; j < 32; j++) {
        const v = x[xo + j]!;
        const l = ((v * is + 127.5) | 0) - 127; // round(v·is); |v·is| ≤ 127 since is ≤ 127/amax
        sxl += v * l;
        sll += l * l;
      }
      // The least-squares error is Σx² − (Σxl)²/Σl²: maximise (Σxl)²/Σl².
      if (sll > 0 && sxl * sxl > best * sll) {
        best = (sxl * sxl) / sll;
        bestScale = sxl / sll;
      }
    }
    const dBits = scaleBitsCovering(bestScale, amax, 127);
    const d = f16ToF32(dBits);
    dv.setUint16(o, dBits, true);
    const id = d !== 0 ? 1 / d : 0;
    for (let j = 0; j < 32; j++) {
      let l = Math.round(x[xo + j]! * id);
      if (l > 127) l = 127; else if (l < -127) l = -127;
      out[o + 2 + j] = l & 0xff;
    }
  }
}

/** Largest-magnitude value of a block, keeping its sign (ggml's "max" for Q4_0/Q5_0). */
function signedMax(x: Float32Array, xo: number, n: number): number {
  let amax = 0;
  let max = 0;
  for (let j = 0; j < n; j++) {
    const v = x[xo + j]!;
    const a = Math.abs(v);
    if (a > amax) {
      amax = a;
      max = v;
    }
    if (a !== a) return NaN;
  }
  return max;
}

/** Affine 32-value blocks x ≈ d·q + m (Q4_1 with nmax 15, Q5_1 with nmax 31). */
function affineBlockParams(x: Float32Array, xo: number, nmax: number, type: string): { d: number; m: number; dBits: number; mBits: number } {
  let min = Infinity;
  let max = -Infinity;
  let sum = 0;
  for (let j = 0; j < 32; j++) {
    const v = x[xo + j]!;
    sum += v;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  if (!Number.isFinite(sum) || !Number.isFinite(min) || !Number.isFinite(max)) throw nonFinite(type, xo);
  const mBits = scaleBits(min);
  const m = f16ToF32(mBits);
  // Scale from the f16-rounded min so the top of the range stays reachable.
  const dBits = scaleBitsCovering((max - m) / nmax, max - m, nmax);
  return { d: f16ToF32(dBits), m, dBits, mBits };
}

/**
 * Q4_0 / Q5_0 (symmetric: x = d·(q − 2^(bits−1)), d from the value of largest magnitude) and
 * Q4_1 / Q5_1 (affine: x = d·q + m) in one loop over blocks of 32 values laid out as
 * [d f16][m f16 if affine][qh u32 if 5 bits: bit j = bit 4 of q[j]][qs ×16: lo nibble = q[j], hi = q[j+16]].
 */
function quantBlock32(x: Float32Array, out: Uint8Array, dv: DataView, bits: 4 | 5, affine: boolean, type: string): void {
  const nmax = (1 << bits) - 1;
  const bias = affine ? 0 : (nmax + 1) / 2;
  const qhAt = affine ? 4 : 2;
  const qsAt = bits === 5 ? qhAt + 4 : qhAt;
  const blockBytes = qsAt + 16;
  const nb = x.length / 32;
  for (let b = 0; b < nb; b++) {
    const xo = b * 32;
    const o = b * blockBytes;
    let d: number;
    let m = 0;
    if (affine) {
      const p = affineBlockParams(x, xo, nmax, type);
      dv.setUint16(o, p.dBits, true);
      dv.setUint16(o + 2, p.mBits, true);
      d = p.d;
      m = p.m;
    } else {
      const max = signedMax(x, xo, 32);
      if (!Number.isFinite(max)) throw nonFinite(type, xo);
      const dBits = scaleBitsCovering(max / -bias, max, bias);
      dv.setUint16(o, dBits, true);
      d = f16ToF32(dBits);
    }
    const id = d !== 0 ? 1 / d : 0;
    let qh = 0;
    for (let j = 0; j < 16; j++) {
      const q0 = clampQ(Math.round((x[xo + j]! - m) * id) + bias, nmax);
      const q1 = clampQ(Math.round((x[xo + 16 + j]! - m) * id) + bias, nmax);
      out[o + qsAt + j] = (q0 & 15) | ((q1 & 15) << 4);
      qh |= ((q0 >>> 4) << j) | ((q1 >>> 4) << (j + 16));
    }
    if (bits === 5) dv.setUint32(o + qhAt, qh >>> 0, true);
  }
}

function clampQ(q: number, max: number): number {
  return q < 0 ? 0 : q > max ? max : q;
}

// ---------------------------------------------------------------------------------------------
// K-quants
// ---------------------------------------------------------------------------------------------

const subScale = new Float64Array(16);
const subMin = new Float64Array(16);
const wtBuf = new Float64Array(32); // weight of each value
const dxBuf = new Float64Array(32); // value minus the block minimum
const wdxBuf = new Float64Array(32); // weight × dx
const L = new Uint8Array(256);
let fitScale = 0;
let fitOffset = 0;
let gridL = 0;
let gridLL = 0;
let gridDL = 0;

/**
 * For the grid l = min(nmax, round(is·dx)) over the 32 values in dxBuf, the weighted sums Σw·l,
 * Σw·l² and Σw·dx·l (weights in wtBuf, w·dx in wdxBuf), left in gridL, gridLL and gridDL.
 */
function gridSums(is: number, nmax: number): void {
  const wt = wtBuf;
  const dx = dxBuf;
  const wdx = wdxBuf;
  let sl = 0, sll = 0, sdl = 0;
  for (let i = 0; i < 32; i++) {
    let l = (is * dx[i]! + 0.5) | 0;
    if (l > nmax) l = nmax;
    const w = wt[i]!;
    sl += w * l;
    sll += w * l * l;
    sdl += wdx[i]! * l;
  }
  gridL = sl;
  gridLL = sll;
  gridDL = sdl;
}

/**
 * Weighted least-squares fit of x[xo … xo+32) ≈ scale·l + m with l ∈ [0, nmax] and m ≤ 0, using
 * the weights in `wt`. Like ggml's make_qkx2_quants: start from the min/max grid, then try
 * `nstep` stretched grids is = (nmax + rmin + rdelta·k)/(max − min), refit scale and m in closed
 * form for each, keep the fit with the smallest weighted error (also in closed form, from the
 * same sums). Works on dx = x − min so that every rounding is of a non-negative number.
 * Result in fitScale and fitOffset (= −m ≥ 0).
 */
function fitAffine32(x: Float32Array, xo: number, nmax: number, rmin: number, rdelta: number, nstep: number): void {
  const wt = wtBuf;
  const dx = dxBuf;
  const wdx = wdxBuf;
  let min = x[xo]!;
  let max = min;
  for (let i = 1; i < 32; i++) {
    const v = x[xo + i]!;
    if (v < min) min = v;
    else if (v > max) max = v;
  }
  if (min > 0) min = 0;
  if (max === min) {
    fitScale = 0;
    fitOffset = -min;
    return;
  }
  let sw = 0, sd = 0, sdd = 0;
  for (let i = 0; i < 32; i++) {
    const d = x[xo + i]! - min;
    const w = wt[i]!;
    dx[i] = d;
    wdx[i] = w * d;
    sw += w;
    sd += w * d;
    sdd += w * d * d;
  }
  const range = max - min;
  // Start: the plain min/max grid, scale = range/nmax, offset 0 (in dx space).
  let bestScale = range / nmax;
  let bestM = 0;
  gridSums(nmax / range, nmax);
  let bestErr = bestScale * bestScale * gridLL - 2 * bestScale * gridDL + sdd;
  for (let step = 0; step <= nstep; step++) {
    gridSums((rmin + rdelta * step + nmax) / range, nmax);
    const sl = gridL;
    const sll = gridLL;
    const sdl = gridDL;
    const D = sw * sll - sl * sl;
    if (!(D > 0)) continue;
    let s = (sw * sdl - sd * sl) / D;
    let m = (sll * sd - sl * sdl) / D; // in dx space; the real offset is m + min, which must be ≤ 0
    if (m + min > 0) {
      m = -min;
      s = (sdl - m * sl) / sll;
    }
    // Σw(s·l + m − dx)², expanded.
    const err = s * s * sll + 2 * s * m * sl + m * m * sw - 2 * s * sdl - 2 * m * sd + sdd;
    if (err < bestErr) {
      bestErr = err;
      bestScale = s;
      bestM = m;
    }
  }
  fitScale = bestScale;
  fitOffset = -(bestM + min);
}

/** Q4_K (nmax 15) and Q5_K (nmax 31): 8 sub-blocks of 32 with 6-bit scales and mins. */
function quantQ45K(x: Float32Array, out: Uint8Array, dv: DataView, nmax: 15 | 31): void {
  const is5 = nmax === 31;
  const blockBytes = is5 ? 176 : 144;
  const nb = x.length / 256;
  const rmin = is5 ? -0.5 : -1;
  const nstep = is5 ? 15 : 20;
  for (let b = 0; b < nb; b++) {
    const xo = b * 256;
    const o = b * blockBytes;
    let maxScale = 0;
    let maxOffset = 0;
    for (let j = 0; j < 8; j++) {
      const so = xo + 32 * j;
      let s2 = 0;
      for (let i = 0; i < 32; i++) {
        const v = x[so + i]!;
        s2 += v * v;
      }
      if (!(s2 <= Number.MAX_VALUE)) throw nonFinite(is5 ? 'Q5_K' : 'Q4_K', so);
      // Weight large values more, like ggml: a sub-block's RMS plus the value's magnitude.
      const av = Math.sqrt(s2 / 32);
      for (let i = 0; i < 32; i++) wtBuf[i] = av + Math.abs(x[so + i]!);
      fitAffine32(x, so, nmax, rmin, 0.1, nstep);
      subScale[j] = fitScale;
      subMin[j] = fitOffset;
      if (fitScale > maxScale) maxScale = fitScale;
      if (fitOffset > maxOffset) maxOffset = fitOffset;
    }
    const dBits = scaleBitsCovering(maxScale / 63, maxScale, 63);
    const mBits = scaleBitsCovering(maxOffset / 63, maxOffset, 63);
    const d = f16ToF32(dBits);
    const dmin = f16ToF32(mBits);
    dv.setUint16(o, dBits, true);
    dv.setUint16(o + 2, mBits, true);
    const sc = o + 4; // 12 bytes of packed 6-bit scales and mins
    out.fill(0, sc, sc + 12);
    const invD = d > 0 ? 1 / d : 0;
    const invM = dmin > 0 ? 1 / dmin : 0;
    for (let j = 0; j < 8; j++) {
      const ls = Math.min(63, Math.round(subScale[j]! * invD));
      const lm = Math.min(63, Math.round(subMin[j]! * invM));
      if (j < 4) {
        out[sc + j] = ls;
        out[sc + j + 4] = lm;
      } else {
        out[sc + j + 4] = (ls & 15) | ((lm & 15) << 4);
        out[sc + j - 4]! |= (ls >>> 4) << 6;
        out[sc + j]! |= (lm >>> 4) << 6;
      }
      // Requantize against the scales as stored.
      const ds = d * ls;
      const dm = dmin * lm;
      const so = xo + 32 * j;
      if (ds === 0) {
        L.fill(0, 32 * j, 32 * j + 32);
        continue;
      }
      const ids = 1 / ds;
      for (let i = 0; i < 32; i++) {
        let l = Math.round((x[so + i]! + dm) * ids);
        if (l > nmax) l = nmax; else if (l < 0) l = 0;
        L[32 * j + i] = l;
      }
    }
    // Values 64c … 64c+31 go to the low nibbles of 32 bytes, 64c+32 … 64c+63 to the high nibbles;
    // for Q5_K bit 4 of value 64c+i goes to qh[i] bit 2c, of value 64c+32+i to bit 2c+1.
    const qs = o + (is5 ? 48 : 16);
    if (is5) out.fill(0, o + 16, o + 48);
    for (let c = 0; c < 4; c++) {
      for (let i = 0; i < 32; i++) {
        const l0 = L[64 * c + i]!;
        const l1 = L[64 * c + 32 + i]!;
        out[qs + 32 * c + i] = (l0 & 15) | ((l1 & 15) << 4);
        if (is5) out[o + 16 + i]! |= ((l0 >>> 4) << (2 * c)) | ((l1 >>> 4) << (2 * c + 1));
      }
    }
  }
}

const q6Scale = new Float64Array(16);
const L6 = new Int8Array(256);
const w16 = new Float64Array(16);
const wx16 = new Float64Array(16);
const x16 = new Float64Array(16);

/**
 * Best symmetric scale for 16 values with l ∈ [−32, 31] (ggml's make_qx_quants with x² weights):
 * sweeps iscale = −(32 + 0.1k)/max over k = −9 … 9, where max is the value of largest magnitude,
 * and keeps the weighted least-squares scale Σwxl/Σwl² of the best fit. The scale is negative
 * when max is positive (so max lands on l = −32, the end with room for it), as in ggml.
 */
function bestScale16(x: Float32Array, xo: number): number {
  let amax = 0;
  let max = 0;
  let sumW = 0;
  for (let i = 0; i < 16; i++) {
    const v = x[xo + i]!;
    const a = Math.abs(v);
    if (a > amax) {
      amax = a;
      max = v;
    }
    const w = v * v;
    sumW += w;
    x16[i] = v;
    w16[i] = w;
    wx16[i] = w * v;
  }
  if (!(sumW <= Number.MAX_VALUE)) return NaN; // a NaN or infinite input
  if (amax < 1e-15) return 0;
  let best = 0;
  let bestScale = 0;
  for (let k = -9; k <= 9; k++) {
    const is = -(32 + 0.1 * k) / max;
    let sxl = 0, sll = 0;
    for (let i = 0; i < 16; i++) {
      // round(is·x) clamped to [−32, 31], computed as a truncation of a shifted non-negative value
      let u = (is * x16[i]! + 32.5) | 0;
      if (u < 0) u = 0; else if (u > 63) u = 63;
      const l = u - 32;
      sxl += wx16[i]! * l;
      sll += w16[i]! * l * l;
    }
    if (sll > 0 && sxl * sxl > best * sll) {
      best = (sxl * sxl) / sll;
      bestScale = sxl / sll;
    }
  }
  return bestScale;
}

function quantQ6_K(x: Float32Array, out: Uint8Array, dv: DataView): void {
  const nb = x.length / 256;
  for (let b = 0; b < nb; b++) {
    const xo = b * 256;
    const o = b * 210;
    let maxAbs = 0;
    let maxScale = 0;
    for (let j = 0; j < 16; j++) {
      const s = bestScale16(x, xo + 16 * j);
      if (s !== s) throw nonFinite('Q6_K', xo + 16 * j);
      q6Scale[j] = s;
      if (Math.abs(s) > maxAbs) {
        maxAbs = Math.abs(s);
        maxScale = s;
      }
    }
    out.fill(0, o, o + 210);
    if (maxAbs < 1e-15) continue;
    // 8-bit sub-block scales: the largest maps to −128 (int8), the super scale d = maxScale/−128.
    const dBits = scaleBitsCovering(maxScale / -128, maxScale, 128);
    const d = f16ToF32(dBits);
    const inv = d !== 0 ? 1 / d : 0;
    dv.setUint16(o + 208, dBits, true);
    for (let j = 0; j < 16; j++) {
      let s = Math.round(q6Scale[j]! * inv);
      if (s > 127) s = 127; else if (s < -128) s = -128;
      out[o + 192 + j] = s & 0xff;
      const ds = d * s;
      const so = xo + 16 * j;
      if (ds === 0) {
        for (let i = 0; i < 16; i++) L6[16 * j + i] = 0;
        continue;
      }
      const ids = 1 / ds;
      for (let i = 0; i < 16; i++) {
        let l = Math.round(x[so + i]! * ids);
        if (l > 31) l = 31; else if (l < -32) l = -32;
        L6[16 * j + i] = l;
      }
    }
    // Two halves of 128 values; in each, value h+i (i < 32) for the four quarters q = 0..3 is
    // split into a low nibble (ql) and two high bits (qh).
    for (let h = 0; h < 2; h++) {
      const ql = o + 64 * h;
      const qh = o + 128 + 32 * h;
      const base = 128 * h;
      for (let i = 0; i < 32; i++) {
        const q1 = L6[base + i]! + 32;
        const q2 = L6[base + 32 + i]! + 32;
        const q3 = L6[base + 64 + i]! + 32;
        const q4 = L6[base + 96 + i]! + 32;
        out[ql + i] = (q1 & 15) | ((q3 & 15) << 4);
        out[ql + 32 + i] = (q2 & 15) | ((q4 & 15) << 4);
        out[qh + i] = (q1 >>> 4) | ((q2 >>> 4) << 2) | ((q3 >>> 4) << 4) | ((q4 >>> 4) << 6);
      }
    }
  }
}
