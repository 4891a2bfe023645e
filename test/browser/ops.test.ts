// The non-matmul forward ops (embed, rms_norm, ple_combine, rope, kv_store, attention, elementwise)
// in Chromium's WebGPU; the same checks run on Dawn in Node (test/node/ops-dawn.test.ts).
import { expect } from '@open-wc/testing';
import { openDevice } from '../../src/core/gpu/device.js';
import { OpKernels } from '../../src/core/gpu/ops.js';
import { BAD_BINDING_CODES, badOpBindingCodes, OP_CASES, OPS_TOLERANCE, reportChecks } from '../shared/ops-case.js';

describe('forward ops in Chromium', () => {
  let device: GPUDevice;
  let ops: OpKernels;

  before(async () => {
    ({ device } = await openDevice({ gpu: navigator.gpu }));
    ops = new OpKernels(device);
  });

  after(() => {
    ops.destroy();
    device.destroy();
  });

  for (const c of OP_CASES) {
    it(`${c.name} match float64`, async () => {
      const checks = await c.run(ops);
      expect(checks.length).to.be.above(0);
      for (const check of checks) {
        expect(check.maxRelErr, `${check.name}\n  ${reportChecks(checks)}`).to.be.at.most(OPS_TOLERANCE);
        expect(check.untouched, `${check.name} wrote outside its outputs`).to.equal(true);
      }
    });
  }

  it('refuses bad bindings before any GPU work', async () => {
    expect(await badOpBindingCodes(ops)).to.deep.equal(BAD_BINDING_CODES);
  });
});
