// The backward kernels of the non-linear ops (rms_norm, gelu_mul, rope, attention) on Dawn in Node:
// float64 gradients proven by finite differences, then the GPU against them. On machines without
// a GPU, VK_ICD_FILENAMES points Dawn at SwiftShader (see package.json), so the shapes stay small.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { OpBackwardKernels } from '../../src/core/gpu/ops-backward.js';
import { openDawnDevice } from '../shared/dawn.js';
import { BACKWARD_CASES, BAD_BACKWARD_BINDING_CODES, badBackwardBindingCodes, reportBackwardChecks } from '../shared/backward-ops-case.js';

describe('backward ops on Dawn', () => {
  let device: GPUDevice;
  let ops: OpBackwardKernels;
  let adapter = '';

  before(async () => {
    ({ device, description: adapter } = await openDawnDevice());
    ops = new OpBackwardKernels(device);
  });

  after(() => {
    ops.destroy();
    device.destroy();
  });

  for (const c of BACKWARD_CASES) {
    it(`${c.name} match float64 and finite differences`, async () => {
      const checks = await c.run(ops);
      assert.ok(checks.length > 0);
      if (process.env.RULLAMA_REPORT) console.log(`  ${reportBackwardChecks(checks)}`);
      for (const check of checks) {
        assert.ok(check.maxRelErr <= check.tolerance && check.untouched, `${check.name} on ${adapter}:\n  ${reportBackwardChecks(checks)}`);
      }
    });
  }

  it('refuses bad bindings before any GPU work', async () => {
    assert.deepEqual(await badBackwardBindingCodes(ops), BAD_BACKWARD_BINDING_CODES);
  });
});
