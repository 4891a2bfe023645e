// The int8 matmul (Q4_K and Q6_K weights, x rounded to 8 bits) on Dawn in Node; the same checks run in
// Chromium (test/browser/linear.test.ts).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LinearKernels } from '../../src/core/gpu/linear.js';
import { openDawnDevice } from '../shared/dawn.js';
import { typeName } from '../../src/core/gguf/types.js';
import { checkInt8MatMul, INT8_MATMUL_TOLERANCE, INT8_TYPES } from '../shared/int8-matmul-case.js';

describe('int8 matmul on Dawn', () => {
  let device: GPUDevice;
  let kernels: LinearKernels;
  let adapter = '';

  before(async () => {
    ({ device, description: adapter } = await openDawnDevice());
    kernels = new LinearKernels(device);
  });

  after(() => {
    kernels.destroy();
    device.destroy();
  });

  for (const type of INT8_TYPES) {
    it(`${typeName(type)} times x rounded to 8 bits matches float64, split over K or not`, async (t) => {
      const checks = await checkInt8MatMul(kernels, type);
      const report = checks.map((c) => `${c.name} (${c.splits} splits): ${c.excess.toExponential(2)} past one rounding step, ${c.vsUnrounded.toExponential(2)} from unrounded x${c.untouched ? '' : ' (wrote outside its outputs)'}`).join('\n  ');
      t.diagnostic(report);
      for (const c of checks) {
        assert.ok(c.excess <= INT8_MATMUL_TOLERANCE && c.untouched, `on ${adapter}:\n  ${report}`);
        // The rounding is at the 8-bit scale: visible, and small.
        assert.ok(c.vsUnrounded > 1e-4 && c.vsUnrounded < 2e-2, `on ${adapter}:\n  ${report}`);
      }
      assert.equal(checks[0]!.splits, 1);
      assert.ok(checks.at(-1)!.splits > 1, report);
    });
  }
});
