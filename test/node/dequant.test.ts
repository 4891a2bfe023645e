// CPU dequantisation against blocks written by hand from ggml's layouts (ggml-common.h,
// dequantize_row_* in ggml-quants.c). Every block below is spelled out as bytes; the expected
// values are worked out in the comments and checked bit for bit (-0 and NaN included).
// The last test also compares random blocks with ggml's own dequantize_row_* when the
// libggml-base.so shipped by node-llama-cpp and a python3 can be found (skipped otherwise).
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RullamaError } from '../../src/core/errors.js';
import { GGMLType } from '../../src/core/gguf/types.js';
import { bf16ToF32, canDequantize, dequantize, f16ToF32, f32ToBf16, f32ToF16 } from '../../src/core/quant/index.js';

// ---------------------------------------------------------------------------------------
// helpers

/** Flattens numbers and number arrays into bytes (each must be 0..255). */
function bytes(...parts: (number | readonly number[])[]): Uint8Array {
  const flat: number[] = [];
  for (const p of parts) {
    if (typeof p === 'number') flat.push(p);
    else flat.push(...p);
  }
  for (const b of flat) assert.ok(Number.isInteger(b) && b >= 0 && b <= 255, `byte ${b}`);
  return Uint8Array.from(flat);
}

/** A 16-bit value, little-endian. */
const le16 = (v: number): number[] => [v & 0xff, (v >>> 8) & 0xff];
/** A 32-bit value, little-endian. */
const le32 = (v: number): number[] => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
/** n bytes made by f(i). */
const fill = (n: number, f: (i: number) => number): number[] => Array.from({ length: n }, (_, i) => f(i));

// f16 bit patterns used as scales (worked out by hand: sign | exponent(5, bias 15) | mantissa(10))
const H = {
  ZERO: 0x0000,
  ONE: 0x3c00, //        0 01111 0000000000 = 1
  NEG_ONE: 0xbc00, //    1 01111 ...        = -1
  HALF: 0x3800, //       0 01110 ...        = 0.5
  NEG_HALF: 0xb800, //   1 01110 ...        = -0.5
  QUARTER: 0x3400, //    0 01101 ...        = 0.25
  TWO: 0x4000, //        0 10000 ...        = 2
  NEG_TWO: 0xc000, //    1 10000 ...        = -2
  NEG_THREE: 0xc200, //  1 10000 1000000000 = -(1.5 * 2) = -3
  NEG_FOUR: 0xc400, //   1 10001 ...        = -4
  TEN: 0x4900, //        0 10010 0100000000 = 1.25 * 8 = 10
  HUNDRED: 0x5640, //    0 10101 1001000000 = 1.5625 * 64 = 100
  MAX: 0x7bff, //        0 11110 1111111111 = (2 - 2^-10) * 2^15 = 65504
  NEG_MAX: 0xfbff, //    -65504
  MIN_SUB: 0x0001, //    0 00000 0000000001 = 2^-24 (smallest subnormal)
};

/** Asserts `actual[i]` is exactly the float32 nearest expected[i], telling -0 from 0. */
function assertValues(actual: Float32Array, expected: ArrayLike<number>, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    const want = Math.fround(expected[i]!);
    const got = actual[i]!;
    if (!Object.is(got, want)) assert.fail(`${what}: value ${i} is ${Object.is(got, -0) ? '-0' : got}, expected ${Object.is(want, -0) ? '-0' : want}`);
  }
}

/** Asserts the given spot values (index → exact value). */
function assertSpots(actual: Float32Array, spots: Record<number, number>, what: string): void {
  for (const [k, v] of Object.entries(spots)) {
    const i = Number(k);
    const got = actual[i]!;
    if (!Object.is(got, Math.fround(v))) assert.fail(`${what}: value ${i} is ${Object.is(got, -0) ? '-0' : got}, expected ${Object.is(v, -0) ? '-0' : v}`);
  }
}

/** Copies `b` to byte offset `offset` of a fresh buffer and returns that (unaligned) view. */
function atOffset(b: Uint8Array, offset: number): Uint8Array {
  const buf = new Uint8Array(b.length + offset + 3);
  buf.fill(0xee);
  buf.set(b, offset);
  return buf.subarray(offset, offset + b.length);
}

function expectError(f: () => unknown, code: string, pattern: RegExp): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof RullamaError, `expected a RullamaError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    assert.match(e.message, pattern);
    return true;
  });
}

const TWO_M24 = 2 ** -24;

// ---------------------------------------------------------------------------------------

describe('f16 / bf16 conversions', () => {
  test('f16ToF32: normal, subnormal, zero, inf, nan', () => {
    const cases: [number, number][] = [
      [0x0000, 0],
      [0x8000, -0],
      [0x3c00, 1],
      [0xbc00, -1],
      [0x4000, 2],
      [0x3555, 0.333251953125], // 2^-2 * (1 + 341/1024)
      [0x7bff, 65504],
      [0xfbff, -65504],
      [0x0400, 2 ** -14], // smallest normal
      [0x03ff, 1023 * 2 ** -24], // largest subnormal
      [0x0001, 2 ** -24], // smallest subnormal
      [0x8001, -(2 ** -24)],
      [0x0200, 2 ** -15],
      [0x7c00, Infinity],
      [0xfc00, -Infinity],
    ];
    for (const [h, v] of cases) assert.ok(Object.is(f16ToF32(h), v), `0x${h.toString(16)} → ${f16ToF32(h)}, expected ${v}`);
    for (const h of [0x7c01, 0x7e00, 0x7fff, 0xfc01, 0xfe00, 0xffff]) assert.ok(Number.isNaN(f16ToF32(h)), `0x${h.toString(16)} is NaN`);
  });

  test('f16ToF32 agrees with the binary16 definition for all 65,536 patterns', () => {
    for (let h = 0; h < 65536; h++) {
      const s = h & 0x8000 ? -1 : 1;
      const e = (h >> 10) & 31;
      const m = h & 1023;
      const want = e === 31 ? (m ? NaN : s * Infinity) : e === 0 ? s * m * 2 ** -24 : s * 2 ** (e - 15) * (1 + m / 1024);
      const got = f16ToF32(h);
      if (!Object.is(got, want)) assert.fail(`0x${h.toString(16)}: ${got} ≠ ${want}`);
    }
  });

  test('f32ToF16: exact values, overflow, inf, nan, signed zero', () => {
    const cases: [number, number][] = [
      [1, 0x3c00],
      [-2, 0xc000],
      [0, 0x0000],
      [-0, 0x8000],
      [65504, 0x7bff],
      [65519, 0x7bff], // below the halfway point 65520 → stays at max
      [65520, 0x7c00], // halfway between 65504 (odd mantissa) and 65536 → even → inf
      [1e6, 0x7c00],
      [-1e6, 0xfc00],
      [Infinity, 0x7c00],
      [-Infinity, 0xfc00],
      [0.333251953125, 0x3555],
      [2 ** -14, 0x0400],
    ];
    for (const [x, h] of cases) assert.equal(f32ToF16(x), h, `${x}`);
    const nan = f32ToF16(NaN);
    assert.equal(nan & 0x7fff, 0x7e00, 'NaN becomes the quiet NaN 0x7e00 (as ggml)');
    assert.ok(Number.isNaN(f16ToF32(nan)));
  });

  test('f32ToF16: round to nearest, ties to even', () => {
    // 1 + 2^-11 lies halfway between 0x3c00 (1, even) and 0x3c01 → 0x3c00
    assert.equal(f32ToF16(1 + 2 ** -11), 0x3c00);
    // 1 + 3*2^-11 lies halfway between 0x3c01 (odd) and 0x3c02 (even) → 0x3c02
    assert.equal(f32ToF16(1 + 3 * 2 ** -11), 0x3c02);
    // just above the halfway point → up
    assert.equal(f32ToF16(1 + 2 ** -11 + 2 ** -20), 0x3c01);
    // just below → down
    assert.equal(f32ToF16(1 + 2 ** -11 - 2 ** -20), 0x3c00);
    // 2 - 2^-11 lies halfway between 0x3bff (odd; 2 - 2^-10) and 0x4000 (2) → carries into the exponent
    assert.equal(f32ToF16(2 - 2 ** -11), 0x4000);
    assert.equal(f32ToF16(-(1 + 3 * 2 ** -11)), 0xbc02);
    // the argument is a float32 first: 1 + 2^-11 + 2^-30 is 1 + 2^-11 in float32 → a tie → 0x3c00
    assert.equal(f32ToF16(1 + 2 ** -11 + 2 ** -30), 0x3c00);
  });

  test('f32ToF16: subnormal results and underflow', () => {
    assert.equal(f32ToF16(2 ** -24), 0x0001);
    assert.equal(f32ToF16(-(2 ** -24)), 0x8001);
    assert.equal(f32ToF16(2 ** -25), 0x0000, '2^-25 is a tie between 0 and 2^-24 → 0');
    assert.equal(f32ToF16(-(2 ** -25)), 0x8000);
    assert.equal(f32ToF16(2 ** -25 + 2 ** -35), 0x0001, 'just above the tie → 2^-24');
    assert.equal(f32ToF16(3 * 2 ** -25), 0x0002, '1.5 units: tie → even 2');
    assert.equal(f32ToF16(5 * 2 ** -25), 0x0002, '2.5 units: tie → even 2');
    assert.equal(f32ToF16(7 * 2 ** -25), 0x0004, '3.5 units: tie → even 4');
    assert.equal(f32ToF16(1023 * 2 ** -24), 0x03ff);
    assert.equal(f32ToF16(2 ** -14 - 2 ** -25), 0x0400, '1023.5 units: tie → 1024, the smallest normal');
    assert.equal(f32ToF16(1e-10), 0x0000);
    assert.equal(f32ToF16(-1e-10), 0x8000);
    assert.equal(f32ToF16(2 ** -149), 0x0000, 'a float32 subnormal');
  });

  test('f32ToF16(f16ToF32(h)) === h for every non-NaN half', () => {
    for (let h = 0; h < 65536; h++) {
      if ((h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0) continue;
      const back = f32ToF16(f16ToF32(h));
      if (back !== h) assert.fail(`0x${h.toString(16)} → 0x${back.toString(16)}`);
    }
  });

  test('bf16ToF32', () => {
    const cases: [number, number][] = [
      [0x3f80, 1],
      [0xbf80, -1],
      [0x4049, 3.140625], // 2 * (1 + 73/128)
      [0x0000, 0],
      [0x8000, -0],
      [0x7f80, Infinity],
      [0xff80, -Infinity],
      [0x0001, 2 ** -133], // float32 bits 0x00010000: a subnormal, 2^16 * 2^-149
      [0x7f7f, (2 - 2 ** -7) * 2 ** 127],
    ];
    for (const [h, v] of cases) assert.ok(Object.is(bf16ToF32(h), v), `0x${h.toString(16)} → ${bf16ToF32(h)}, expected ${v}`);
    assert.ok(Number.isNaN(bf16ToF32(0x7fc0)));
    assert.ok(Number.isNaN(bf16ToF32(0xff81)));
  });

  test('f32ToBf16: ties to even, overflow, subnormals, nan', () => {
    assert.equal(f32ToBf16(1), 0x3f80);
    assert.equal(f32ToBf16(-0), 0x8000);
    assert.equal(f32ToBf16(Math.PI), 0x4049, 'float32 0x40490fdb: low half 0x0fdb < 0x8000 → down');
    assert.equal(f32ToBf16(1 + 2 ** -8), 0x3f80, 'halfway between 0x3f80 (even) and 0x3f81 → 0x3f80');
    assert.equal(f32ToBf16(1 + 3 * 2 ** -8), 0x3f82, 'halfway between 0x3f81 (odd) and 0x3f82 → 0x3f82');
    assert.equal(f32ToBf16(1 + 2 ** -8 + 2 ** -23), 0x3f81, 'just above the tie → up');
    assert.equal(f32ToBf16(-(1 + 3 * 2 ** -8)), 0xbf82);
    assert.equal(f32ToBf16(3.4028234663852886e38), 0x7f80, 'float32 max 0x7f7fffff rounds up to inf');
    assert.equal(f32ToBf16(Infinity), 0x7f80);
    assert.equal(f32ToBf16(-Infinity), 0xff80);
    assert.equal(f32ToBf16(2 ** -133), 0x0001, 'subnormals are rounded, not flushed');
    assert.equal(f32ToBf16(3 * 2 ** -134), 0x0002, 'float32 0x00018000: a tie → even 0x0002');
    assert.equal(f32ToBf16(2 ** -140), 0x0000);
    const nan = f32ToBf16(NaN);
    assert.ok(Number.isNaN(bf16ToF32(nan)), 'NaN stays NaN');
    assert.equal(nan & 0x40, 0x40, 'and is quiet');
  });
});

// ---------------------------------------------------------------------------------------

describe('dequantize: plain floats', () => {
  test('F32, including an unaligned source and NaN bits', () => {
    const b = bytes(
      [0x00, 0x00, 0xc0, 0x3f], // 0x3fc00000 = 1.5
      [0x00, 0x00, 0x00, 0xc0], // 0xc0000000 = -2
      [0x01, 0x00, 0x00, 0x00], // 0x00000001 = 2^-149
      [0x00, 0x00, 0x00, 0x80], // -0
      [0x00, 0x00, 0x80, 0xff], // -inf
      [0x01, 0x00, 0xc0, 0x7f], // a NaN with a payload
    );
    for (const off of [0, 1, 2, 3]) {
      const y = dequantize(GGMLType.F32, atOffset(b, off), 6);
      assertValues(y.subarray(0, 5), [1.5, -2, 2 ** -149, -0, -Infinity], `F32 at offset ${off}`);
      assert.equal(new Uint32Array(y.buffer, y.byteOffset, 6)[5], 0x7fc00001, 'NaN bits kept');
    }
  });

  test('F16', () => {
    const b = bytes(le16(0x3c00), le16(0xc000), le16(0x0001), le16(0x7bff), le16(0x7c00), le16(0x8000), le16(0x3555), le16(0x03ff));
    const want = [1, -2, 2 ** -24, 65504, Infinity, -0, 0.333251953125, 1023 * 2 ** -24];
    assertValues(dequantize(GGMLType.F16, b, 8), want, 'F16');
    assertValues(dequantize(GGMLType.F16, atOffset(b, 1), 8), want, 'F16 unaligned');
    assert.ok(Number.isNaN(dequantize(GGMLType.F16, bytes(le16(0x7e00)), 1)[0]));
  });

  test('BF16', () => {
    const b = bytes(le16(0x3f80), le16(0x4049), le16(0xff80), le16(0x0001), le16(0x8000), le16(0xc2c8));
    // 0xc2c8: sign 1, exponent 0x85 = 133 → 2^6, mantissa 0x48 = 72 → -(1 + 72/128) * 64 = -100
    const want = [1, 3.140625, -Infinity, 2 ** -133, -0, -100];
    assertValues(dequantize(GGMLType.BF16, b, 6), want, 'BF16');
    assertValues(dequantize(GGMLType.BF16, atOffset(b, 3), 6), want, 'BF16 unaligned');
    assert.ok(Number.isNaN(dequantize(GGMLType.BF16, bytes(le16(0x7fc1)), 1)[0]));
  });
});

describe('dequantize: 32-value blocks', () => {
  test('Q8_0: {f16 d; int8 qs[32]} = d*q, three blocks', () => {
    const b = bytes(
      // block 0: d = 0.5, q[j] = j - 16 (int8 two's complement), except q[0] = -128 and q[31] = 127
      le16(H.HALF), 0x80, fill(30, (j) => ((j + 1 - 16) + 256) & 0xff), 0x7f,
      // block 1: d = -2, q alternates +1, -1 (0xff), so values alternate -2, +2; q[5] = 0 → -0
      le16(H.NEG_TWO), fill(32, (j) => (j === 5 ? 0 : j % 2 === 0 ? 0x01 : 0xff)),
      // block 2: d = 65504 with q = 127 and -128; d = 2^-24 is the next block
      le16(H.MAX), 0x7f, 0x80, fill(30, () => 0),
      // block 3: d = 2^-24 (subnormal), q = 3 and -1
      le16(H.MIN_SUB), 0x03, 0xff, fill(30, () => 0),
    );
    const y = dequantize(GGMLType.Q8_0, b, 128);
    const want: number[] = [
      -64, ...fill(30, (j) => 0.5 * (j + 1 - 16)), 63.5, // 0.5 * -128 = -64, ..., 0.5 * 127 = 63.5
      ...fill(32, (j) => (j === 5 ? -0 : j % 2 === 0 ? -2 : 2)),
      8319008, -8384512, ...fill(30, () => 0), // 65504 * 127, 65504 * -128
      3 * TWO_M24, -TWO_M24, ...fill(30, () => 0),
    ];
    assertValues(y, want, 'Q8_0');
    assertSpots(y, { 1: -7.5, 16: 0, 31: 63.5, 32: -2, 33: 2, 37: -0 }, 'Q8_0 spots');
    assertValues(dequantize(GGMLType.Q8_0, atOffset(b, 1), 128), want, 'Q8_0 unaligned');
  });

  test('Q4_0: {f16 d; u8 qs[16]}: low nibbles are values 0..15, high nibbles 16..31, minus 8', () => {
    const b = bytes(
      // block 0: d = 2; qs[j] = j | (15-j) << 4 → y[j] = 2*(j-8), y[j+16] = 2*((15-j)-8) = 2*(7-j)
      le16(H.TWO), fill(16, (j) => j | ((15 - j) << 4)),
      // block 1: d = -0.5; qs = 0x0f → y[0..15] = -0.5*(15-8) = -3.5, y[16..31] = -0.5*(0-8) = 4;
      // qs[3] = 0x88 → y[3] = y[19] = -0.5*0 = -0
      le16(H.NEG_HALF), fill(16, (j) => (j === 3 ? 0x88 : 0x0f)),
    );
    const y = dequantize(GGMLType.Q4_0, b, 64);
    const want = [
      ...fill(16, (j) => 2 * (j - 8)), ...fill(16, (j) => 2 * (7 - j)),
      ...fill(16, (j) => (j === 3 ? -0 : -3.5)), ...fill(16, (j) => (j === 3 ? -0 : 4)),
    ];
    assertValues(y, want, 'Q4_0');
    assertSpots(y, { 0: -16, 15: 14, 16: 14, 31: -16, 32: -3.5, 48: 4, 35: -0, 51: -0 }, 'Q4_0 spots');
    assertValues(dequantize(GGMLType.Q4_0, atOffset(b, 3), 64), want, 'Q4_0 unaligned');
  });

  test('Q4_1: {f16 d; f16 m; u8 qs[16]} = d*q + m', () => {
    const b = bytes(
      // block 0: d = 0.5, m = -3; qs[j] = j | (15-j) << 4 → y[j] = 0.5j - 3, y[j+16] = 0.5(15-j) - 3
      le16(H.HALF), le16(H.NEG_THREE), fill(16, (j) => j | ((15 - j) << 4)),
      // block 1: d = -1, m = 10; qs = 0xf0 → y[0..15] = -0 + 10 = 10, y[16..31] = -15 + 10 = -5
      le16(H.NEG_ONE), le16(H.TEN), fill(16, () => 0xf0),
      // block 2: d = 2^-24, m = 65504; qs = 0x1f → 65504 + 15*2^-24 and 65504 + 2^-24, both round to 65504
      le16(H.MIN_SUB), le16(H.MAX), fill(16, () => 0x1f),
    );
    const y = dequantize(GGMLType.Q4_1, b, 96);
    const want = [
      ...fill(16, (j) => 0.5 * j - 3), ...fill(16, (j) => 0.5 * (15 - j) - 3),
      ...fill(16, () => 10), ...fill(16, () => -5),
      ...fill(32, () => 65504),
    ];
    assertValues(y, want, 'Q4_1');
    assertSpots(y, { 0: -3, 15: 4.5, 16: 4.5, 31: -3, 32: 10, 63: -5 }, 'Q4_1 spots');
    assertValues(dequantize(GGMLType.Q4_1, atOffset(b, 1), 96), want, 'Q4_1 unaligned');
  });

  // qh patterns: 0xff008001 sets bits 0, 15 and 24..31; 0x00ff7ffe is its complement, so across
  // the two blocks every one of the 32 bit positions is seen both set and clear.
  test('Q5_0: {f16 d; u32 qh; u8 qs[16]}: bit j of qh is value j\'s fifth bit; (q - 16) * d', () => {
    const b = bytes(
      // block 0: d = 1; qh = 0xff008001; qs[j] = j | (15-j) << 4
      //   y[j]    = (j | bit_j << 4) - 16:   y[0] = 16 - 16 = 0, y[1..14] = j - 16, y[15] = 31 - 16 = 15
      //   y[16+j] = ((15-j) | bit_{16+j} << 4) - 16: j < 8 (bits 16..23 clear) → -1 - j; j ≥ 8 → 15 - j
      le16(H.ONE), le32(0xff008001), fill(16, (j) => j | ((15 - j) << 4)),
      // block 1: d = -0.5; qh = 0x00ff7ffe; qs = 0 → a set bit gives (16-16)*-0.5 = -0, a clear one (0-16)*-0.5 = 8
      //   y[0] = 8, y[1..14] = -0, y[15] = 8; y[16..23] = -0, y[24..31] = 8
      le16(H.NEG_HALF), le32(0x00ff7ffe), fill(16, () => 0),
    );
    const y = dequantize(GGMLType.Q5_0, b, 64);
    const want = [
      0, ...fill(14, (j) => j + 1 - 16), 15, ...fill(8, (j) => -1 - j), ...fill(8, (j) => 15 - (j + 8)),
      8, ...fill(14, () => -0), 8, ...fill(8, () => -0), ...fill(8, () => 8),
    ];
    assertValues(y, want, 'Q5_0');
    assertSpots(y, { 0: 0, 1: -15, 15: 15, 16: -1, 23: -8, 24: 7, 31: 0, 32: 8, 33: -0, 56: 8 }, 'Q5_0 spots');
    assertValues(dequantize(GGMLType.Q5_0, atOffset(b, 1), 64), want, 'Q5_0 unaligned');
  });

  test('Q5_1: {f16 d; f16 m; u32 qh; u8 qs[16]} = d*q + m, q = nibble | high bit << 4', () => {
    const b = bytes(
      // block 0: d = 0.5, m = -4; qh = 0xff008001; qs[j] = j | (15-j) << 4 → y = 0.5*q - 4
      //   y[0] = 0.5*16 - 4 = 4; y[1..14] = 0.5j - 4; y[15] = 0.5*31 - 4 = 11.5
      //   y[16+j] = 0.5*(15-j) - 4 for j < 8, 0.5*(31-j) - 4 for j ≥ 8
      le16(H.HALF), le16(H.NEG_FOUR), le32(0xff008001), fill(16, (j) => j | ((15 - j) << 4)),
      // block 1: d = -1, m = 100; qh = 0x00ff7ffe; qs = 0xff → q = 31 (bit set) or 15 → 69 or 85
      le16(H.NEG_ONE), le16(H.HUNDRED), le32(0x00ff7ffe), fill(16, () => 0xff),
    );
    const y = dequantize(GGMLType.Q5_1, b, 64);
    const want = [
      4, ...fill(14, (j) => 0.5 * (j + 1) - 4), 11.5, ...fill(8, (j) => 0.5 * (15 - j) - 4), ...fill(8, (j) => 0.5 * (31 - (j + 8)) - 4),
      85, ...fill(14, () => 69), 85, ...fill(8, () => 69), ...fill(8, () => 85),
    ];
    assertValues(y, want, 'Q5_1');
    assertSpots(y, { 0: 4, 1: -3.5, 15: 11.5, 16: 3.5, 24: 7.5, 31: 4, 32: 85, 33: 69, 63: 85 }, 'Q5_1 spots');
    assertValues(dequantize(GGMLType.Q5_1, atOffset(b, 3), 64), want, 'Q5_1 unaligned');
  });
});

// ---------------------------------------------------------------------------------------
// K-quants. One set of 6-bit scales and mins, all different, with 0 and 63 among them and the
// high bits of sub-blocks 4..7 exercised, packed by hand as ggml's get_scale_min_k4 reads them:
//   sub-block j:   0   1   2   3   4   5   6   7
//   scale sc(j):   1  63   2   0  17  62  48  33
//   min   m(j):   63   0   5   7  60  20   1  49
// j < 4: scales[j] = sc(j) | (sc(j+4) >> 4) << 6, scales[j+4] = m(j) | (m(j+4) >> 4) << 6
// j ≥ 4: scales[j+4] = (sc(j) & 15) | (m(j) & 15) << 4
const SC = [1, 63, 2, 0, 17, 62, 48, 33];
const MN = [63, 0, 5, 7, 60, 20, 1, 49];
const K_SCALES = [
  0x41, // 1 | 1<<6         (sc4 = 17 = 0b01_0001)
  0xff, // 63 | 3<<6        (sc5 = 62 = 0b11_1110)
  0xc2, // 2 | 3<<6         (sc6 = 48 = 0b11_0000)
  0x80, // 0 | 2<<6         (sc7 = 33 = 0b10_0001)
  0xff, // 63 | 3<<6        (m4 = 60 = 0b11_1100)
  0x40, // 0 | 1<<6         (m5 = 20 = 0b01_0100)
  0x05, // 5 | 0<<6         (m6 = 1)
  0xc7, // 7 | 3<<6         (m7 = 49 = 0b11_0001)
  0xc1, // sc4 & 15 = 1,  m4 & 15 = 12
  0x4e, // sc5 & 15 = 14, m5 & 15 = 4
  0x10, // sc6 & 15 = 0,  m6 & 15 = 1
  0x11, // sc7 & 15 = 1,  m7 & 15 = 1
];
// 4-bit quants of the first K block: qs[32c + l] = (l & 15) | (15 - (l & 15)) << 4, so value i
// (sub-block sb = i >> 5, l = i & 31) has nibble (l & 15) in even sub-blocks, 15 - (l & 15) in odd ones.
const K_QS = fill(128, (i) => (i & 15) | ((15 - (i & 15)) << 4));
const kNibble = (i: number): number => ((i >> 5) % 2 === 0 ? i & 15 : 15 - (i & 15));

describe('dequantize: K-quants', () => {
  test('Q4_K: 8 sub-blocks with their own scale and min, three super-blocks', () => {
    const b = bytes(
      // block 0: d = 0.5, dmin = 0.25; y = 0.5*sc*q - 0.25*m
      le16(H.HALF), le16(H.QUARTER), K_SCALES, K_QS,
      // block 1: d = -65504, dmin = 2^-24, every sc = m = 63 (all scale bytes 0xff); qs = 0xf0
      //   low nibbles (even sub-blocks): -65504*63*0 - 63*2^-24 = -0 - 63*2^-24 = -63*2^-24
      //   high nibbles (odd sub-blocks): -65504*63*15 - 63*2^-24 = -61901280 (the tiny part rounds away)
      le16(H.NEG_MAX), le16(H.MIN_SUB), fill(12, () => 0xff), fill(128, () => 0xf0),
      // block 2: d = 2^-24, dmin = -1, sc = m = 63; qs = 0x5a (low 10, high 5)
      //   even: 2^-24*63*10 + 63 = 63 + 630*2^-24, odd: 63 + 315*2^-24 (each rounded once to float32)
      le16(H.MIN_SUB), le16(H.NEG_ONE), fill(12, () => 0xff), fill(128, () => 0x5a),
    );
    const y = dequantize(GGMLType.Q4_K, b, 768);
    // hand-worked spots of block 0
    assertSpots(y, {
      0: -15.75, //        sb0 q0:  0.5*1*0 - 0.25*63
      15: -8.25, //        sb0 q15: 7.5 - 15.75
      32: 472.5, //        sb1 q15: 0.5*63*15 - 0
      63: 0, //            sb1 q0:  0 - 0
      64: -1.25, //        sb2 q0:  -0.25*5
      81: -0.25, //        sb2 q1:  0.5*2*1 - 1.25
      96: -1.75, //        sb3 sc 0: -0.25*7 whatever q
      127: -1.75,
      128: -15, //         sb4 q0:  -0.25*60
      143: 112.5, //       sb4 q15: 0.5*17*15 - 15
      160: 460, //         sb5 q15: 0.5*62*15 - 0.25*20
      197: 119.75, //      sb6 q5:  0.5*48*5 - 0.25*1
      224: 235.25, //      sb7 q15: 0.5*33*15 - 0.25*49
      255: -12.25, //      sb7 q0:  -0.25*49
    }, 'Q4_K block 0');
    const want = [
      ...fill(256, (i) => 0.5 * SC[i >> 5]! * kNibble(i) - 0.25 * MN[i >> 5]!),
      ...fill(256, (i) => ((i >> 5) % 2 === 0 ? -63 * TWO_M24 : -61901280)),
      ...fill(256, (i) => ((i >> 5) % 2 === 0 ? 63 + 630 * TWO_M24 : 63 + 315 * TWO_M24)),
    ];
    assertValues(y, want, 'Q4_K');
    assertSpots(y, { 512: 63.000038146972656, 544: 63.0000190734863281 }, 'Q4_K block 2 rounding');
    assertValues(dequantize(GGMLType.Q4_K, atOffset(b, 1), 768), want, 'Q4_K unaligned');
  });

  test('Q5_K: high bit of chunk c at bits 2c (low half) and 2c+1 (high half) of qh[l]', () => {
    // block 0: d = 0.5, dmin = 0.25, the scales above, qh[l] = 1 << (l & 7): value i (sub-block
    //   sb = i >> 5, l = i & 31) has high bit (qh[l] >> sb) & 1, set exactly when (l & 7) == sb.
    // block 1: d = -2, dmin = 65504, sc = m = 63, qh[l] = ~(1 << (l & 7)), qs = 0xff: q = 31 unless
    //   (l & 7) == sb, where q = 15. y = -2*63*q - 65504*63 = -126q - 4126752 → -4130658 or -4128642.
    // Between them, each of the 8 bits of each of the 32 qh bytes is seen set and clear.
    const b = bytes(
      le16(H.HALF), le16(H.QUARTER), K_SCALES, fill(32, (l) => 1 << (l & 7)), K_QS,
      le16(H.NEG_TWO), le16(H.MAX), fill(12, () => 0xff), fill(32, (l) => ~(1 << (l & 7)) & 0xff), fill(128, () => 0xff),
    );
    const y = dequantize(GGMLType.Q5_K, b, 512);
    assertSpots(y, {
      0: -7.75, //   sb0 l0: nibble 0, qh[0] = 1 → bit0 set → q 16: 0.5*1*16 - 15.75
      1: -15.25, //  sb0 l1: nibble 1, qh[1] = 2 → bit0 clear → q 1: 0.5 - 15.75
      32: 472.5, //  sb1 l0: nibble 15, qh[0] bit1 clear → 0.5*63*15
      33: 945, //    sb1 l1: nibble 14, qh[1] = 2 → bit1 set → q 30: 0.5*63*30
      66: 16.75, //  sb2 l2: nibble 2, qh[2] = 4 → bit2 → q 18: 0.5*2*18 - 1.25
      99: -1.75, //  sb3 (scale 0): -0.25*7
      132: 155, //   sb4 l4: nibble 4, qh[4] = 16 → bit4 → q 20: 0.5*17*20 - 15
      165: 801, //   sb5 l5: nibble 10, qh[5] = 32 → bit5 → q 26: 0.5*62*26 - 5
      198: 527.75, // sb6 l6: nibble 6, qh[6] = 64 → bit6 → q 22: 0.5*48*22 - 0.25
      231: 383.75, // sb7 l7: nibble 8, qh[7] = 128 → bit7 → q 24: 0.5*33*24 - 12.25
      232: 103.25, // sb7 l8: nibble 7, qh[8] = 1 → bit7 clear → q 7: 115.5 - 12.25
      255: 251.75, // sb7 l31: nibble 0, qh[31] = 128 → q 16: 264 - 12.25
      256: -4128642, // block 1 sb0 l0: (0 & 7) == 0 → bit clear → q 15
      257: -4130658, // sb0 l1: bit0 of ~2 set → q 31
      511: -4128642, // sb7 l31: (31 & 7) == 7 → clear
    }, 'Q5_K spots');
    const want = [
      ...fill(256, (i) => {
        const sb = i >> 5;
        const q = kNibble(i) + ((i & 7) === sb ? 16 : 0);
        return 0.5 * SC[sb]! * q - 0.25 * MN[sb]!;
      }),
      ...fill(256, (i) => ((i & 7) === i >> 5 ? -4128642 : -4130658)),
    ];
    assertValues(y, want, 'Q5_K');
    assertValues(dequantize(GGMLType.Q5_K, atOffset(b, 3), 512), want, 'Q5_K unaligned');
  });

  test('Q6_K: {ql[128]; qh[64]; int8 scales[16]; f16 d}, 16 scales of 16 values each', () => {
    // block 0: d = 0.5 and 16 distinct scales with the int8 extremes 127 and -128.
    // In half n (values 128n..128n+127) and lane l (0..31), the four groups g = 0..3 are values
    // 128n + 32g + l, all using scale index i >> 4. Low 4 bits (written into ql below):
    //   g0: (l + n) & 15    → low nibble of ql[64n + l]
    //   g1: (3l + n) & 15   → low nibble of ql[64n + 32 + l]
    //   g2: (7l + n) & 15   → high nibble of ql[64n + l]
    //   g3: (5l + 2n) & 15  → high nibble of ql[64n + 32 + l]
    // High 2 bits: (l + g + n) & 3 in bits 2g..2g+1 of qh[32n + l] (so each 2-bit field takes all 4 values).
    const S6 = [1, -1, 2, -2, 127, -128, 3, 5, -7, 11, 13, -17, 19, 23, -29, 31];
    const lo = (g: number, l: number, n: number): number =>
      [(l + n) & 15, (3 * l + n) & 15, (7 * l + n) & 15, (5 * l + 2 * n) & 15][g]!;
    const hi = (g: number, l: number, n: number): number => (l + g + n) & 3;
    const ql: number[] = [];
    const qh: number[] = [];
    for (let n = 0; n < 2; n++) {
      for (let l = 0; l < 32; l++) ql.push(lo(0, l, n) | (lo(2, l, n) << 4));
      for (let l = 0; l < 32; l++) ql.push(lo(1, l, n) | (lo(3, l, n) << 4));
      for (let l = 0; l < 32; l++) qh.push(hi(0, l, n) | (hi(1, l, n) << 2) | (hi(2, l, n) << 4) | (hi(3, l, n) << 6));
    }
    const b = bytes(
      ql, qh, S6.map((s) => s & 0xff), le16(H.HALF),
      // block 1: d = -65504, every scale -128 (0x80), ql = qh = 0 → q = -32: -65504*-128*-32 = -268304384
      fill(128, () => 0), fill(64, () => 0), fill(16, () => 0x80), le16(H.NEG_MAX),
      // block 2: d = 2^-24, every scale 127, ql = qh = 0xff → q = 63 - 32 = 31: 127*31*2^-24 = 3937*2^-24
      fill(128, () => 0xff), fill(64, () => 0xff), fill(16, () => 0x7f), le16(H.MIN_SUB),
    );
    assert.equal(b.length, 630);
    const y = dequantize(GGMLType.Q6_K, b, 768);
    assertSpots(y, {
      0: -16, //     n0 g0 l0:  lo 0, hi 0 → q -32; scale[0] = 1: 0.5*1*-32
      17: 7.5, //    n0 g0 l17: lo 1, hi 1 → 17-32 = -15; scale[1] = -1: 0.5*-1*-15
      33: 3, //      n0 g1 l1:  lo 3, hi 2 → 35-32 = 3; scale[2] = 2
      63: 19, //     n0 g1 l31: lo 93&15 = 13, hi 0 → -19; scale[3] = -2
      66: -1143, //  n0 g2 l2:  lo 14, hi 0 → -18; scale[4] = 127: 0.5*127*-18
      95: 448, //    n0 g2 l31: lo 217&15 = 9, hi 1 → 25-32 = -7; scale[5] = -128
      99: 22.5, //   n0 g3 l3:  lo 15, hi 2 → 47-32 = 15; scale[6] = 3
      112: 40, //    n0 g3 l16: lo 80&15 = 0, hi 3 → 48-32 = 16; scale[7] = 5
      128: 52.5, //  n1 g0 l0:  lo 1, hi 1 → -15; scale[8] = -7
      159: -176, //  n1 g0 l31: lo 0, hi 0 → -32; scale[9] = 11
      164: 84.5, //  n1 g1 l4:  lo 13, hi 2 → 13; scale[10] = 13
      180: -110.5, // n1 g1 l20: lo 61&15 = 13, hi 2 → 13; scale[11] = -17
      197: -266, //  n1 g2 l5:  lo 36&15 = 4, hi 0 → -28; scale[12] = 19
      222: -149.5, // n1 g2 l30: lo 211&15 = 3, hi 1 → -13; scale[13] = 23
      230: -0, //    n1 g3 l6:  lo 32&15 = 0, hi 2 → 0; scale[14] = -29: (0.5*-29)*0 = -0
      255: 449.5, // n1 g3 l31: lo 157&15 = 13, hi 3 → 29; scale[15] = 31
      256: -268304384,
      767: 3937 * TWO_M24,
    }, 'Q6_K spots');
    const want = [
      ...fill(256, (i) => {
        const n = i >> 7, g = (i >> 5) & 3, l = i & 31;
        const q = (lo(g, l, n) | (hi(g, l, n) << 4)) - 32;
        return 0.5 * S6[i >> 4]! * q;
      }),
      ...fill(256, () => -268304384),
      ...fill(256, () => 3937 * TWO_M24),
    ];
    assertValues(y, want, 'Q6_K');
    assertValues(dequantize(GGMLType.Q6_K, atOffset(b, 1), 768), want, 'Q6_K unaligned');
  });
});

// ---------------------------------------------------------------------------------------

describe('dequantize: arguments', () => {
  test('canDequantize', () => {
    for (const t of [GGMLType.F32, GGMLType.F16, GGMLType.BF16, GGMLType.Q8_0, GGMLType.Q4_0, GGMLType.Q4_1,
      GGMLType.Q5_0, GGMLType.Q5_1, GGMLType.Q4_K, GGMLType.Q5_K, GGMLType.Q6_K]) {
      assert.equal(canDequantize(t), true, GGMLType[t]);
    }
    for (const t of [GGMLType.Q8_1, GGMLType.Q2_K, GGMLType.Q3_K, GGMLType.Q8_K, GGMLType.IQ4_NL, GGMLType.IQ2_XXS,
      GGMLType.I8, GGMLType.F64, GGMLType.MXFP4, 99 as GGMLType]) {
      assert.equal(canDequantize(t), false, String(t));
    }
  });

  test('unsupported types throw RullamaError(unsupported)', () => {
    expectError(() => dequantize(GGMLType.Q2_K, new Uint8Array(84), 256), 'unsupported', /^dequantising Q2_K is not supported$/);
    expectError(() => dequantize(GGMLType.IQ4_XS, new Uint8Array(136), 256), 'unsupported', /IQ4_XS/);
    expectError(() => dequantize(GGMLType.Q8_1, new Uint8Array(36), 32), 'unsupported', /Q8_1/);
    expectError(() => dequantize(99 as GGMLType, new Uint8Array(4), 1), 'unsupported', /unknown\(99\)/);
  });

  test('too few bytes, a bad count or a short output throw RullamaError(bad-argument)', () => {
    expectError(() => dequantize(GGMLType.Q4_K, new Uint8Array(143), 256), 'bad-argument', /144 bytes/);
    expectError(() => dequantize(GGMLType.Q8_0, new Uint8Array(67), 64), 'bad-argument', /68 bytes/);
    expectError(() => dequantize(GGMLType.F32, new Uint8Array(7), 2), 'bad-argument', /8 bytes/);
    expectError(() => dequantize(GGMLType.Q4_0, new Uint8Array(100), 33), 'bad-argument', /multiple of 32/);
    expectError(() => dequantize(GGMLType.Q6_K, new Uint8Array(420), 300), 'bad-argument', /multiple of 256/);
    expectError(() => dequantize(GGMLType.F16, new Uint8Array(8), -2), 'bad-argument', /count/);
    expectError(() => dequantize(GGMLType.F16, new Uint8Array(8), 1.5), 'bad-argument', /count/);
    expectError(() => dequantize(GGMLType.Q8_0, new Uint8Array(68), 64, new Float32Array(63)), 'bad-argument', /output/);
  });

  test('count 0, extra bytes, and writing into a given output', () => {
    assert.equal(dequantize(GGMLType.Q4_K, new Uint8Array(0), 0).length, 0);
    // one Q4_0 block (d = 1, all nibbles 9 → +1) followed by junk that must be ignored
    const b = bytes(le16(H.ONE), fill(16, () => 0x99), fill(18, () => 0x00));
    const out = new Float32Array(40).fill(7);
    const r = dequantize(GGMLType.Q4_0, b, 32, out);
    assert.equal(r, out, 'returns the given array');
    assertValues(out, [...fill(32, () => 1), ...fill(8, () => 7)], 'values past count untouched');
    // an output that is itself a view at an offset
    const backing = new Float32Array(10).fill(5);
    const view = backing.subarray(3, 6);
    dequantize(GGMLType.F32, bytes([0, 0, 0x80, 0x3f], [0, 0, 0, 0x40], [0, 0, 0x40, 0x40]), 3, view);
    assertValues(backing, [5, 5, 5, 1, 2, 3, 5, 5, 5, 5], 'F32 into a view');
    dequantize(GGMLType.BF16, bytes(le16(0x3f80), le16(0x4000), le16(0x4040)), 3, view);
    assertValues(backing, [5, 5, 5, 1, 2, 3, 5, 5, 5, 5], 'BF16 into a view');
  });
});

// ---------------------------------------------------------------------------------------
// ggml itself as an independent oracle, when its CPU library and python3 are at hand.

const GGML_LIB = new URL('../../node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/libggml-base.so', import.meta.url).pathname;

const ORACLE_PY = `
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
fn, n, src, dst = sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
data = open(src, 'rb').read()
inp = ctypes.create_string_buffer(data, len(data))
if fn in ('ggml_fp32_to_fp16_row', 'ggml_fp32_to_bf16_row'):
    out = ctypes.create_string_buffer(2 * n)
else:
    out = ctypes.create_string_buffer(4 * n)
getattr(lib, fn)(inp, out, ctypes.c_int64(n))
open(dst, 'wb').write(out.raw)
`;

function havePython(): boolean {
  if (process.platform !== 'linux' || process.arch !== 'x64' || !existsSync(GGML_LIB)) return false;
  const r = spawnSync('python3', ['-c', `import ctypes; ctypes.CDLL(${JSON.stringify(GGML_LIB)})`], { encoding: 'utf8' });
  return r.status === 0;
}

describe('dequantize agrees with ggml', { skip: havePython() ? false : 'libggml-base.so or python3 not available' }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'rullama-dequant-'));
  const oracle = (fn: string, input: Uint8Array, n: number): Uint8Array => {
    const src = join(dir, 'in.bin');
    const dst = join(dir, 'out.bin');
    writeFileSync(src, input);
    const r = spawnSync('python3', ['-c', ORACLE_PY, GGML_LIB, fn, String(n), src, dst], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    return new Uint8Array(readFileSync(dst));
  };
  // a small deterministic generator (xorshift32)
  let seed = 0x9e3779b9;
  const rnd = (): number => {
    seed ^= seed << 13; seed >>>= 0;
    seed ^= seed >>> 17;
    seed ^= seed << 5; seed >>>= 0;
    return seed;
  };
  const randomBytes = (n: number): Uint8Array => Uint8Array.from({ length: n }, () => rnd() & 0xff);

  const cases: [GGMLType, string, number, number][] = [
    [GGMLType.Q8_0, 'dequantize_row_q8_0', 32, 34],
    [GGMLType.Q4_0, 'dequantize_row_q4_0', 32, 18],
    [GGMLType.Q4_1, 'dequantize_row_q4_1', 32, 20],
    [GGMLType.Q5_0, 'dequantize_row_q5_0', 32, 22],
    [GGMLType.Q5_1, 'dequantize_row_q5_1', 32, 24],
    [GGMLType.Q4_K, 'dequantize_row_q4_K', 256, 144],
    [GGMLType.Q5_K, 'dequantize_row_q5_K', 256, 176],
    [GGMLType.Q6_K, 'dequantize_row_q6_K', 256, 210],
    [GGMLType.F16, 'ggml_fp16_to_fp32_row', 1, 2],
    [GGMLType.BF16, 'ggml_bf16_to_fp32_row', 1, 2],
  ];
  for (const [type, fn, blockSize, typeSize] of cases) {
    test(`${GGMLType[type]} on random blocks`, () => {
      const nb = blockSize === 1 ? 4096 : 64;
      const input = randomBytes(nb * typeSize);
      const want = new Float32Array(oracle(fn, input, nb * blockSize).buffer);
      const got = dequantize(type, atOffset(input, 1), nb * blockSize);
      for (let i = 0; i < want.length; i++) {
        const a = got[i]!, e = want[i]!;
        if (!(Object.is(a, e) || (Number.isNaN(a) && Number.isNaN(e)))) assert.fail(`${GGMLType[type]} value ${i}: ${a} vs ggml ${e}`);
      }
    });
  }

  test('f32ToF16 and f32ToBf16 on random float32 bit patterns', () => {
    const n = 1 << 16;
    const src = new Uint32Array(n);
    for (let i = 0; i < n; i++) src[i] = rnd();
    // include the interesting edges too
    src.set([0, 0x80000000, 0x7f800000, 0xff800000, 0x477ff000, 0x477fefff, 0x33000000, 0x33000001, 0x387fe000, 0x7f7fffff, 0x00018000, 0x3f808000, 0x3f818000]);
    const bytesIn = new Uint8Array(src.buffer);
    const h = new Uint16Array(oracle('ggml_fp32_to_fp16_row', bytesIn, n).buffer);
    const bf = new Uint16Array(oracle('ggml_fp32_to_bf16_row', bytesIn, n).buffer);
    const f = new Float32Array(src.buffer);
    for (let i = 0; i < n; i++) {
      const x = f[i]!;
      if (Number.isNaN(x)) continue; // NaN payloads are not worth comparing; NaN-ness is tested above
      assert.equal(f32ToF16(x), h[i], `f16 of 0x${src[i]!.toString(16)}`);
      assert.equal(f32ToBf16(x), bf[i], `bf16 of 0x${src[i]!.toString(16)}`);
    }
  });

  after(() => rmSync(dir, { recursive: true, force: true }));
});
