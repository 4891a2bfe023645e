/**
 * CPU dequantisation of ggml tensor data to float32, value for value what ggml's
 * dequantize_row_* (ggml/src/ggml-quants.c) produce for the same bytes.
 *
 * Exactness: every product below (f16 scale × small integer scale × quant) needs at most
 * 23 significant bits, so it is exact in float32 and in the float64 that JS computes in;
 * the one sum (`d*q + m`, `d*sc*q - dmin*m`) is exact in float64 and rounded once when
 * stored into the Float32Array, just as ggml rounds it once in float32.
 *
 * The input may sit at any byte offset (a subarray of a file), so it is read byte by byte,
 * never through a wider typed-array view.
 */

import { RullamaError } from '../errors.js';
import { GGML_TYPES, GGMLType, typeName } from '../gguf/types.js';
import { f16Table32 } from './float.js';

const SUPPORTED: ReadonlySet<number> = new Set([
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
]);

/** Whether {@link dequantize} handles tensors of this type. */
export function canDequantize(type: GGMLType): boolean {
  return SUPPORTED.has(type);
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * Dequantises the first `count` values stored in `bytes` as `type` (ggml's block layout).
 * `count` must be a multiple of the type's block size and `bytes` must hold at least the
 * blocks it needs. Writes into `out` when given (it must hold `count` values; values past
 * `count` are left alone) and returns it, else returns a new Float32Array of `count`.
 *
 * Throws RullamaError 'unsupported' for types it cannot dequantise and 'bad-argument' for
 * a bad count, too few bytes or too small an `out`.
 */
export function dequantize(type: GGMLType, bytes: Uint8Array, count: number, out?: Float32Array): Float32Array {
  const info = GGML_TYPES.get(type);
  if (!info || !SUPPORTED.has(type)) {
    throw new RullamaError('unsupported', `dequantising ${typeName(type)} is not supported`);
  }
  if (!Number.isSafeInteger(count) || count < 0 || count % info.blockSize !== 0) {
    throw new RullamaError(
      'bad-argument',
      `cannot dequantise ${count} values of ${info.name}: the count must be a non-negative multiple of ${info.blockSize}`,
    );
  }
  const nb = count / info.blockSize;
  const need = nb * info.typeSize;
  if (bytes.length < need) {
    throw new RullamaError(
      'bad-argument',
      `${count} values of ${info.name} take ${need} bytes but only ${bytes.length} were given`,
    );
  }
  if (out === undefined) {
    out = new Float32Array(count);
  } else if (out.length < count) {
    throw new RullamaError('bad-argument', `the output holds ${out.length} values, ${count} are needed`);
  }
  if (count === 0) return out;

  switch (type) {
    case GGMLType.F32: f32(bytes, count, out); break;
    case GGMLType.F16: f16(bytes, count, out); break;
    case GGMLType.BF16: bf16(bytes, count, out); break;
    case GGMLType.Q8_0: q8_0(bytes, nb, out); break;
    case GGMLType.Q4_0: q4_0(bytes, nb, out); break;
    case GGMLType.Q4_1: q4_1(bytes, nb, out); break;
    case GGMLType.Q5_0: q5_0(bytes, nb, out); break;
    case GGMLType.Q5_1: q5_1(bytes, nb, out); break;
    case GGMLType.Q4_K: q4_K(bytes, nb, out); break;
    case GGMLType.Q5_K: q5_K(bytes, nb, out); break;
    case GGMLType.Q6_K: q6_K(bytes, nb, out); break;
  }
  return out;
}

function f32(b: Uint8Array, n: number, y: Float32Array): void {
  if (LITTLE_ENDIAN) {
    // a byte copy keeps every bit (NaN payloads included) whatever the source alignment
    new Uint8Array(y.buffer, y.byteOffset, n * 4).set(b.subarray(0, n * 4));
    return;
  }
  const dv = new DataView(b.buffer, b.byteOffset, n * 4);
  for (let i = 0; i < n; i++) y[i] = dv.getFloat32(i * 4, true);
}

function f16(b: Uint8Array, n: number, y: Float32Array): void {
  const T = f16Table32();
  for (let i = 0, o = 0; i < n; i++, o += 2) y[i] = T[b[o]! | (b[o + 1]! << 8)]!;
}

function bf16(b: Uint8Array, n: number, y: Float32Array): void {
  if (LITTLE_ENDIAN) {
    const u = new Uint32Array(y.buffer, y.byteOffset, n);
    for (let i = 0, o = 0; i < n; i++, o += 2) u[i] = ((b[o]! << 16) | (b[o + 1]! << 24)) >>> 0;
    return;
  }
  const dv = new DataView(y.buffer, y.byteOffset, n * 4);
  for (let i = 0, o = 0; i < n; i++, o += 2) dv.setUint32(i * 4, ((b[o]! << 16) | (b[o + 1]! << 24)) >>> 0, true);
}

/** Q8_0, 34 bytes: f16 d; int8 qs[32]. y = d * q. */
function q8_0(b: Uint8Array, nb: number, y: Float32Array): void {
  const T = f16Table32();
  for (let i = 0, o = 0, p = 0; i < nb; i++, o += 34, p += 32) {
    const d = T[b[o]! | (b[o + 1]! << 8)]!;
    const qs = o + 2;
    for (let j = 0; j < 32; j++) y[p + j] = ((b[qs + j]! << 24) >> 24) * d;
  }
}

/** Q4_0, 18 bytes: f16 d; u8 qs[16]. y[j] = d*((qs[j]&15)-8), y[j+16] = d*((qs[j]>>4)-8). */
function q4_0(b: Uint8Array, nb: number, y: Float32Array): void {
  const T = f16Table32();
  for (let i = 0, o = 0, p = 0; i < nb; i++, o += 18, p += 32) {
    const d = T[b[o]! | (b[o + 1]! << 8)]!;
    const qs = o + 2;
    for (let j = 0; j < 16; j++) {
      const q = b[qs + j]!;
      y[p + j] = ((q & 15) - 8) * d;
      y[p + j + 16] = ((q >> 4) - 8) * d;
    }
  }
}

/** Q4_1, 20 bytes: f16 d; f16 m; u8 qs[16]. y = d*q + m, nibbles as Q4_0. */
function q4_1(b: Uint8Array, nb: number, y: Float32Array): void {
  const T = f16Table32();
  for (let i = 0, o = 0, p = 0; i < nb; i++, o += 20, p += 32) {
    const d = T[b[o]! | (b[o + 1]! << 8)]!;
    const m = T[b[o + 2]! | (b[o + 3]! << 8)]!;
    const qs = o + 4;
    for (let j = 0; j < 16; j++) {
      const q = b[qs + j]!;
      y[p + j] = (q & 15) * d + m;
      y[p + j + 16] = (q >> 4) * d + m;
    }
  }
}

/** Q5_0, 22 bytes: f16 d; u32 qh (LE); u8 qs[16]. Bit j of qh is value j's fifth bit; y = d*(q-16). */
function q5_0(b: Uint8Array, nb: number, y: Float32Array): void {
  const T = f16Table32();
  for (let i = 0, o = 0, p = 0; i < nb; i++, o += 22, p += 32) {
    const d = T[b[o]! | (b[o + 1]! << 8)]!;
    const qh = b[o + 2]! | (b[o + 3]! << 8) | (b[o + 4]! << 16) | (b[o + 5]! << 24);
    const qs = o + 6;
    for (let j = 0; j < 16; j++) {
      const q = b[qs + j]!;
      y[p + j] = (((q & 15) | (((qh >>> j) & 1) << 4)) - 16) * d;
      y[p + j + 16] = (((q >> 4) | (((qh >>> (j + 16)) & 1) << 4)) - 16) * d;
    }
  }
}

/** Q5_1, 24 bytes: f16 d; f16 m; u32 qh (LE); u8 qs[16]. y = d*q + m. */
function q5_1(b: Uint8Array, nb: number, y: Float32Array): void {
  const T = f16Table32();
  for (let i = 0, o = 0, p = 0; i < nb; i++, o += 24, p += 32) {
    const d = T[b[o]! | (b[o + 1]! << 8)]!;
    const m = T[b[o + 2]! | (b[o + 3]! << 8)]!;
    const qh = b[o + 4]! | (b[o + 5]! << 8) | (b[o + 6]! << 16) | (b[o + 7]! << 24);
    const qs = o + 8;
    for (let j = 0; j < 16; j++) {
      const q = b[qs + j]!;
      y[p + j] = ((q & 15) | (((qh >>> j) & 1) << 4)) * d + m;
      y[p + j + 16] = ((q >> 4) | (((qh >>> (j + 16)) & 1) << 4)) * d + m;
    }
  }
}

// Per-super-block scratch for the K-quants: the 8 (or 16) effective scales and mins.
const kScale = new Float64Array(16);
const kMin = new Float64Array(8);

/**
 * Unpacks the 12 scale bytes at `s` of a Q4_K/Q5_K block into kScale[0..8) = d*sc(j) and
 * kMin[0..8) = dmin*m(j), with sc and m the 6-bit values of ggml's get_scale_min_k4.
 */
function unpackK4(b: Uint8Array, s: number, d: number, dmin: number): void {
  for (let j = 0; j < 4; j++) {
    kScale[j] = d * (b[s + j]! & 63);
    kMin[j] = dmin * (b[s + j + 4]! & 63);
  }
  for (let j = 4; j < 8; j++) {
    const lo = b[s + j + 4]!;
    kScale[j] = d * ((lo & 0xf) | ((b[s + j - 4]! >> 6) << 4));
    kMin[j] = dmin * ((lo >> 4) | ((b[s + j]! >> 6) << 4));
  }
}

/**
 * Q4_K, 144 bytes: f16 d; f16 dmin; u8 scales[12]; u8 qs[128]. Four 64-value chunks; chunk c
 * reads qs[32c..32c+32): low nibbles give values 64c..64c+32 (sub-block 2c), high nibbles
 * the next 32 (sub-block 2c+1). y = d*sc*q - dmin*m.
 */
function q4_K(b: Uint8Array, nb: number, y: Float32Array): void {
  const T = f16Table32();
  for (let i = 0, o = 0, p = 0; i < nb; i++, o += 144) {
    unpackK4(b, o + 4, T[b[o]! | (b[o + 1]! << 8)]!, T[b[o + 2]! | (b[o + 3]! << 8)]!);
    let qs = o + 16;
    for (let c = 0; c < 8; c += 2, qs += 32, p += 64) {
      const d1 = kScale[c]!, m1 = kMin[c]!;
      const d2 = kScale[c + 1]!, m2 = kMin[c + 1]!;
      for (let l = 0; l < 32; l++) {
        const q = b[qs + l]!;
        y[p + l] = d1 * (q & 15) - m1;
        y[p + l + 32] = d2 * (q >> 4) - m2;
      }
    }
  }
}

/**
 * Q5_K, 176 bytes: f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]. As Q4_K, with the
 * fifth bit of value l of chunk c's low half at bit 2c of qh[l], of its high half at bit 2c+1.
 */
function q5_K(b: Uint8Array, nb: number, y: Float32Array): void {
  const T = f16Table32();
  for (let i = 0, o = 0, p = 0; i < nb; i++, o += 176) {
    unpackK4(b, o + 4, T[b[o]! | (b[o + 1]! << 8)]!, T[b[o + 2]! | (b[o + 3]! << 8)]!);
    const qh = o + 16;
    let qs = o + 48;
    for (let c = 0; c < 8; c += 2, qs += 32, p += 64) {
      const d1 = kScale[c]!, m1 = kMin[c]!;
      const d2 = kScale[c + 1]!, m2 = kMin[c + 1]!;
      for (let l = 0; l < 32; l++) {
        const q = b[qs + l]!;
        const h = b[qh + l]! >> c; // bit 0: low half's fifth bit, bit 1: high half's
        y[p + l] = d1 * ((q & 15) | ((h & 1) << 4)) - m1;
        y[p + l + 32] = d2 * ((q >> 4) | ((h & 2) << 3)) - m2;
      }
    }
  }
}

/**
 * Q6_K, 210 bytes: u8 ql[128]; u8 qh[64]; int8 scales[16]; f16 d. Two 128-value halves, each
 * with ql[64], qh[32], scales[8]; y = d * sc * (q - 32).
 */
function q6_K(b: Uint8Array, nb: number, y: Float32Array): void {
  const T = f16Table32();
  for (let i = 0, o = 0, p = 0; i < nb; i++, o += 210) {
    const d = T[b[o + 208]! | (b[o + 209]! << 8)]!;
    for (let k = 0; k < 16; k++) kScale[k] = d * ((b[o + 192 + k]! << 24) >> 24);
    for (let n = 0; n < 2; n++, p += 128) {
      const ql = o + 64 * n;
      const qh = o + 128 + 32 * n;
      const sc = 8 * n;
      for (let l = 0; l < 32; l++) {
        const is = sc + (l >> 4);
        const a = b[ql + l]!;
        const c = b[ql + l + 32]!;
        const h = b[qh + l]!;
        y[p + l] = kScale[is]! * (((a & 15) | ((h & 3) << 4)) - 32);
        y[p + l + 32] = kScale[is + 2]! * (((c & 15) | (((h >> 2) & 3) << 4)) - 32);
        y[p + l + 64] = kScale[is + 4]! * (((a >> 4) | (((h >> 4) & 3) << 4)) - 32);
        y[p + l + 96] = kScale[is + 6]! * (((c >> 4) | ((h >> 6) << 4)) - 32);
      }
    }
  }
}
