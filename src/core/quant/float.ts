/**
 * Half-precision (IEEE binary16) and bfloat16 conversions, bit-exact with ggml's
 * GGML_FP16_TO_FP32 / GGML_FP32_TO_FP16 / GGML_BF16_TO_FP32 / GGML_FP32_TO_BF16.
 *
 * The f16 → f32 direction goes through a 65,536-entry table built on first use, so the
 * dequantisation loops cost one array load per half. The f32 → 16-bit directions work on
 * the float32 bits of their argument (the argument is rounded to float32 first, as a C
 * caller passing a `float` would have).
 */

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

const TWO_POW_M24 = 2 ** -24;

let f16Table: Float32Array | null = null;

/**
 * The table of all 65,536 halves as float32 (NaN payloads kept). Built lazily; share it in
 * hot loops: `table[lo | (hi << 8)]`.
 */
export function f16Table32(): Float32Array {
  if (f16Table) return f16Table;
  const table = new Float32Array(65536);
  const bits = new Uint32Array(table.buffer);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exp = (h >>> 10) & 0x1f;
    const man = h & 0x3ff;
    if (exp === 0) {
      // zero or subnormal: man * 2^-24, exact in float32
      table[h] = (sign ? -man : man) * TWO_POW_M24;
      if (man === 0) bits[h] = sign >>> 0; // keep -0
    } else if (exp === 31) {
      bits[h] = (sign | 0x7f800000 | (man << 13)) >>> 0;
    } else {
      bits[h] = (sign | ((exp + 112) << 23) | (man << 13)) >>> 0;
    }
  }
  f16Table = table;
  return table;
}

/** The value of the binary16 number whose bits are `bits` (0..65535). */
export function f16ToF32(bits: number): number {
  return (f16Table ?? f16Table32())[bits & 0xffff]!;
}

/**
 * The binary16 bits nearest to `x` (x first rounded to float32): round-to-nearest-even,
 * subnormals kept, overflow to ±inf, NaN to a quiet NaN with x's sign (0x7e00 | sign),
 * as ggml's ggml_compute_fp32_to_fp16 does.
 */
export function f32ToF16(x: number): number {
  scratchF32[0] = x;
  const u = scratchU32[0]!;
  const sign = (u >>> 16) & 0x8000;
  const a = u & 0x7fffffff;
  if (a >= 0x7f800000) return sign | (a > 0x7f800000 ? 0x7e00 : 0x7c00);
  // 65520 = 0x477ff000 is halfway between 65504 (odd mantissa) and 65536: ties go to inf.
  if (a >= 0x477ff000) return sign | 0x7c00;
  if (a >= 0x38800000) {
    // normal half: re-bias the exponent (127 → 15), then round away the low 13 bits.
    const v = a - 0x38000000;
    return sign | ((v + 0xfff + ((v >>> 13) & 1)) >>> 13);
  }
  // |x| < 2^-14: a subnormal half, units of 2^-24. |x| <= 2^-25 rounds to zero.
  if (a <= 0x33000000) return sign;
  const e = a >>> 23; // 102..112
  const m = (a & 0x7fffff) | 0x800000;
  const shift = 126 - e; // 14..24
  let q = m >>> shift;
  const rem = m & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  if (rem > half || (rem === half && (q & 1) !== 0)) q++;
  return sign | q; // q may reach 0x400, the smallest normal: that encoding is right too
}

/** The value of the bfloat16 number whose bits are `bits` (0..65535). */
export function bf16ToF32(bits: number): number {
  scratchU32[0] = (bits & 0xffff) << 16;
  return scratchF32[0]!;
}

/**
 * The bfloat16 bits nearest to `x` (x first rounded to float32), exactly as ggml's
 * GGML_FP32_TO_BF16: round-to-nearest-even on the float32 bits (subnormals not flushed,
 * overflow to ±inf), NaN kept NaN and made quiet.
 */
export function f32ToBf16(x: number): number {
  scratchF32[0] = x;
  const u = scratchU32[0]!;
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) | 64) & 0xffff;
  return (u + 0x7fff + ((u >>> 16) & 1)) >>> 16;
}
