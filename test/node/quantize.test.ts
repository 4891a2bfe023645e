import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RullamaError } from '../../src/core/errors.js';
import { GGML_TYPES, GGMLType, typeName } from '../../src/core/gguf/types.js';
import { dequantize } from '../../src/core/quant/dequant.js';
import { f16ToF32, f32ToF16 } from '../../src/core/quant/float.js';
import { QUANTIZABLE_TYPES, canQuantize, quantize, quantizeInto, quantizedSize } from '../../src/core/quant/quantize.js';
import { Rng } from '../fixtures/random.js';

const N = 1 << 16;

/** Relative RMS error bound on N(0,1) data, per type (brief: Q8_0 0.5%, Q6_K 2%, Q5_K 4%, Q4_K 8%). */
const GAUSSIAN_BOUND: Record<number, number> = {
  [GGMLType.F32]: 0,
  [GGMLType.F16]: 0.0005,
  [GGMLType.BF16]: 0.003,
  [GGMLType.Q8_0]: 0.005,
  [GGMLType.Q6_K]: 0.02,
  [GGMLType.Q5_K]: 0.04,
  [GGMLType.Q4_K]: 0.08,
  [GGMLType.Q5_1]: 0.045,
  [GGMLType.Q5_0]: 0.05,
  [GGMLType.Q4_1]: 0.09,
  [GGMLType.Q4_0]: 0.1,
};

function gaussian(n: number, std = 1, seed = 7): Float32Array {
  const v = new Float32Array(n);
  new Rng(seed, 'gaussian').fillGaussian(v, std);
  return v;
}

function relRms(x: Float32Array, y: Float32Array): number {
  let e = 0;
  let s = 0;
  for (let i = 0; i < x.length; i++) {
    e += (y[i]! - x[i]!) ** 2;
    s += x[i]! ** 2;
  }
  return s === 0 ? Math.sqrt(e) : Math.sqrt(e / s);
}

function roundTrip(type: GGMLType, x: Float32Array): Float32Array {
  const q = quantize(type, x);
  assert.equal(q.byteLength, quantizedSize(type, x.length), `${typeName(type)} byte size`);
  const y = dequantize(type, q, x.length);
  for (let i = 0; i < y.length; i++) {
    if (Number.isNaN(y[i]!)) assert.fail(`${typeName(type)}: NaN at ${i} (input ${x[i]})`);
  }
  return y;
}

const blockOf = (type: GGMLType): number => GGML_TYPES.get(type)!.blockSize;
const isBlockType = (type: GGMLType): boolean => blockOf(type) > 1;

describe('quantize', () => {
  it('lists the types the loader supports', () => {
    assert.deepEqual(
      QUANTIZABLE_TYPES.map(typeName).sort(),
      ['BF16', 'F16', 'F32', 'Q4_0', 'Q4_1', 'Q4_K', 'Q5_0', 'Q5_1', 'Q5_K', 'Q6_K', 'Q8_0'],
    );
    assert.equal(canQuantize(GGMLType.Q2_K), false);
    assert.throws(() => quantize(GGMLType.Q2_K, new Float32Array(256)), (e: unknown) => e instanceof RullamaError && e.code === 'unsupported');
  });

  for (const type of QUANTIZABLE_TYPES) {
    const name = typeName(type);
    describe(name, () => {
      it(`Gaussian data round-trips within ${(GAUSSIAN_BOUND[type]! * 100).toFixed(2)}% relative RMS`, () => {
        const x = gaussian(N);
        const q = quantize(type, x);
        const err = relRms(x, dequantize(type, q, N));
        if (type === GGMLType.F32) assert.equal(err, 0);
        else assert.ok(err < GAUSSIAN_BOUND[type]!, `${name}: relative RMS ${(err * 100).toFixed(3)}%`);
        // Scale invariance: a tensor with std 0.02 (a real weight) quantises just as well.
        const small = gaussian(N, 0.02, 8);
        const errSmall = relRms(small, roundTrip(type, small));
        assert.ok(errSmall <= GAUSSIAN_BOUND[type]! * 1.05 + 1e-9, `${name} at std 0.02: ${(errSmall * 100).toFixed(3)}%`);
        console.log(`# ${name.padEnd(5)} relative RMS error on N(0,1): ${(err * 100).toFixed(3)}%`);
      });

      it('uniform data round-trips', () => {
        const x = new Float32Array(N);
        new Rng(3, 'uniform').fillUniform(x, -1, 1);
        const err = relRms(x, roundTrip(type, x));
        assert.ok(err <= GAUSSIAN_BOUND[type]!, `${name}: ${(err * 100).toFixed(3)}%`);
        // Non-negative data (all blocks one-signed) too.
        const pos = new Float32Array(N);
        new Rng(4, 'uniform+').fillUniform(pos, 0.5, 2);
        const errPos = relRms(pos, roundTrip(type, pos));
        assert.ok(errPos <= GAUSSIAN_BOUND[type]!, `${name} positive: ${(errPos * 100).toFixed(3)}%`);
      });

      it('all-zero input gives zeros', () => {
        const y = roundTrip(type, new Float32Array(1024));
        assert.ok(y.every((v) => v === 0));
      });

      it('constant input is reproduced', () => {
        for (const c of [0.37, -2.5, 1e-3, 1000]) {
          const x = new Float32Array(1024).fill(c);
          const y = roundTrip(type, x);
          for (let i = 0; i < y.length; i++) {
            assert.ok(Math.abs(y[i]! - c) <= Math.abs(c) * 0.01, `${name}: constant ${c} came back as ${y[i]}`);
          }
        }
      });

      it('extreme inputs stay finite and keep their outliers', () => {
        // Large values within the f16 range of every type's scales.
        const big = gaussian(4096, 3000, 11);
        const errBig = relRms(big, roundTrip(type, big));
        assert.ok(errBig <= GAUSSIAN_BOUND[type]! * 1.05 + 1e-9, `${name} std 3000: ${(errBig * 100).toFixed(3)}%`);
        // Tiny values (block scales below the f16 normal range, down to flushing to zero, as in
        // ggml): finite, and no error larger than the values themselves.
        const tiny = gaussian(4096, 1e-6, 12);
        const yTiny = roundTrip(type, tiny);
        for (let i = 0; i < yTiny.length; i++) assert.ok(Math.abs(yTiny[i]! - tiny[i]!) < 1e-5, `${name} tiny value ${tiny[i]} → ${yTiny[i]}`);
        // One outlier per block among small values: the outlier survives within 1%.
        const mixed = gaussian(4096, 1e-3, 13);
        const step = Math.max(32, blockOf(type));
        for (let i = 5; i < mixed.length; i += step) mixed[i] = i % 2 ? 200 : -200;
        const yMixed = roundTrip(type, mixed);
        for (let i = 5; i < mixed.length; i += step) assert.ok(Math.abs(yMixed[i]! - mixed[i]!) <= 2, `${name}: outlier ${mixed[i]} → ${yMixed[i]}`);
        // Values far beyond f16 scales (1e8): block scales saturate instead of overflowing.
        if (isBlockType(type)) {
          const huge = gaussian(1024, 1e8, 14);
          const yHuge = roundTrip(type, huge);
          assert.ok(yHuge.every((v) => Number.isFinite(v)), `${name}: non-finite output for 1e8 inputs`);
        }
      });

      it('is deterministic and quantizeInto writes at an offset', () => {
        const x = gaussian(2048, 1, 21);
        const a = quantize(type, x);
        assert.deepEqual(quantize(type, x), a);
        const buf = new Uint8Array(a.byteLength + 10).fill(0xaa);
        assert.equal(quantizeInto(type, x, buf, 7), a.byteLength);
        assert.deepEqual(buf.subarray(7, 7 + a.byteLength), a);
        assert.equal(buf[6], 0xaa);
        assert.equal(buf[7 + a.byteLength], 0xaa);
      });

      if (isBlockType(type)) {
        it('rejects partial blocks and non-finite values', () => {
          const bs = blockOf(type);
          assert.throws(() => quantize(type, new Float32Array(bs + 1)), (e: unknown) => e instanceof RullamaError && e.code === 'bad-argument');
          for (const bad of [NaN, Infinity, -Infinity]) {
            const x = gaussian(bs * 2, 1, 5);
            x[bs + 3] = bad;
            assert.throws(() => quantize(type, x), (e: unknown) => e instanceof RullamaError && e.code === 'bad-argument', `${name} accepted ${bad}`);
          }
          assert.throws(() => quantizeInto(type, new Float32Array(bs), new Uint8Array(4), 0), RullamaError);
        });
      }
    });
  }

  it('F16 and BF16 round to nearest even like ggml', () => {
    const x = Float32Array.from([1, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 65504, 65520, 2 ** -24, 2 ** -26, -0]);
    const q = new DataView(quantize(GGMLType.F16, x).buffer);
    for (let i = 0; i < x.length; i++) assert.equal(q.getUint16(i * 2, true), f32ToF16(x[i]!), `f16 of ${x[i]}`);
    assert.equal(f16ToF32(q.getUint16(2, true)), 1); // tie → even
    assert.equal(f16ToF32(q.getUint16(4, true)), 1 + 2 ** -9); // tie → even (up)
    assert.equal(f16ToF32(q.getUint16(8, true)), Infinity); // 65520 rounds up to inf, as in IEEE
    const b = new DataView(quantize(GGMLType.BF16, Float32Array.from([1 + 2 ** -8, 1 + 3 * 2 ** -8])).buffer);
    assert.equal(b.getUint16(0, true), 0x3f80);
    assert.equal(b.getUint16(2, true), 0x3f82);
  });

  it('writes ggml block layouts (hand-checked Q8_0, Q4_0 and Q6_K blocks)', () => {
    // Q8_0: d = scale in f16 at bytes 0-1, then 32 int8.
    const x8 = Float32Array.from({ length: 32 }, (_, j) => (j - 16) / 16);
    const q8 = quantize(GGMLType.Q8_0, x8);
    const d8 = f16ToF32(q8[0]! | (q8[1]! << 8));
    assert.ok(Math.abs(d8 - 1 / 127) / (1 / 127) < 0.05);
    assert.equal((q8[2]! << 24) >> 24, Math.round(-1 / d8)); // x[0] = -1
    assert.equal(q8[2 + 16], 0); // x[16] = 0
    // Q4_0: value j in the low nibble of byte j, value j+16 in the high nibble.
    const x4 = Float32Array.from({ length: 32 }, (_, j) => (j === 0 ? -8 : j === 16 ? 7 : 0));
    const q4 = quantize(GGMLType.Q4_0, x4);
    assert.equal(f16ToF32(q4[0]! | (q4[1]! << 8)), 1); // d = max / -8 = 1
    assert.equal(q4[2]! & 15, 0); // -8 → q 0
    assert.equal(q4[2]! >> 4, 15); // +7 → q 15
    assert.equal(q4[3], 0x88); // zeros → q 8
    // Q6_K: d (f16) is the last 2 bytes of the 210-byte block, int8 scales before it.
    const x6 = gaussian(256, 1, 31);
    const q6 = quantize(GGMLType.Q6_K, x6);
    assert.equal(q6.byteLength, 210);
    assert.notEqual(q6[208]! | (q6[209]! << 8), 0);
  });
});
