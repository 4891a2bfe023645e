// The non-matmul forward ops (embed, rms_norm, ple_combine, rope, kv_store, attention, elementwise)
// on Dawn in Node; the same checks run in Chromium (test/browser/ops.test.ts). On machines without
// a GPU, VK_ICD_FILENAMES points Dawn at SwiftShader (see package.json), so the shapes stay small.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { OpKernels } from '../../src/core/gpu/ops.js';
import { openDawnDevice } from '../shared/dawn.js';
import { BAD_BINDING_CODES, badOpBindingCodes, OP_CASES, OPS_TOLERANCE, reportChecks } from '../shared/ops-case.js';

describe('forward ops on Dawn', () => {
  let device: GPUDevice;
  let ops: OpKernels;
  let adapter = '';

  before(async () => {
    ({ device, description: adapter } = await openDawnDevice());
    ops = new OpKernels(device);
  });

  after(() => {
    ops.destroy();
    device.destroy();
  });

  for (const c of OP_CASES) {
    it(`${c.name} match float64`, async () => {
      const checks = await c.run(ops);
      assert.ok(checks.length > 0);
      for (const check of checks) {
        assert.ok(check.maxRelErr <= OPS_TOLERANCE && check.untouched, `${check.name} on ${adapter}:\n  ${reportChecks(checks)}`);
      }
    });
  }

  it('refuses bad bindings before any GPU work', async () => {
    assert.deepEqual(await badOpBindingCodes(ops), BAD_BINDING_CODES);
  });
});
