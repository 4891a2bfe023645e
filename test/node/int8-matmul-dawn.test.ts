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
      const report = checks.map((c) => `${c.name} (${c.splits} splits, ${c.tileTokens} tokens): ${c.excess.toExponential(2)} past one rounding step, ${c.vsUnrounded.toExponential(2)} from unrounded x${c.untouched ? '' : ' (wrote outside its outputs)'}`).join('\n  ');
      t.diagnostic(report);
      for (const c of checks) {
        assert.ok(c.excess <= INT8_MATMUL_TOLERANCE && c.untouched, `on ${adapter}:\n  ${report}`);
        // The rounding is at the 8-bit scale: visible, and small.
        assert.ok(c.vsUnrounded > 1e-4 && c.vsUnrounded < 2e-2, `on ${adapter}:\n  ${report}`);
      }
      const byName = (part: string) => checks.filter((c) => c.name.includes(part));
      assert.ok(byName('200x512').every((c) => c.splits === 1), report);
      assert.ok(byName('K split').every((c) => c.splits > 1), report);
      assert.deepEqual([...new Set(checks.map((c) => c.tileTokens))].sort(), [128, 64], report);
      // The default rule gives the tall split matrix 128 tokens a workgroup where the device has 21 KiB of workgroup memory.
      assert.equal(byName('1100x1024')[0]!.tileTokens, device.limits.maxComputeWorkgroupStorageSize >= 21 * 1024 ? 128 : 64, report);
    });
  }
});
