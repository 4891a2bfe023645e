// The linear kernels (GGUF-layout weights, matvec and matmul) on Dawn in Node; the same checks
// run in Chromium (test/browser/linear.test.ts). On machines without a GPU, VK_ICD_FILENAMES points
// Dawn at SwiftShader (see package.json), so the shapes stay small.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LINEAR_TYPES, LinearKernels } from '../../src/core/gpu/linear.js';
import { typeName } from '../../src/core/gguf/types.js';
import { openDawnDevice } from '../shared/dawn.js';
import { badBindingCodes, brokenShaderMessage, checkLinearType, checkMatVecVariants, checkResidualInput, LINEAR_TOLERANCE, MATVEC_VARIANT_TYPES, RESIDUAL_INPUT_ERROR_CODES, residualInputErrorCodes } from '../shared/linear-case.js';

describe('linear kernels on Dawn', () => {
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

  for (const type of LINEAR_TYPES) {
    it(`${typeName(type)} matvec and matmul match the CPU`, async () => {
      const checks = await checkLinearType(kernels, type);
      const report = checks.map((c) => `${c.name}: ${c.maxRelErr.toExponential(2)}${c.untouched ? '' : ' (wrote outside its outputs)'}`).join('\n  ');
      for (const c of checks) {
        assert.ok(c.maxRelErr <= LINEAR_TOLERANCE && c.untouched, `${typeName(type)} on ${adapter}:\n  ${report}`);
      }
    });
  }

  for (const type of MATVEC_VARIANT_TYPES) {
    it(`${typeName(type)} matvec long rows and GELU epilogues match the CPU`, async () => {
      const checks = await checkMatVecVariants(kernels, type);
      const report = checks.map((c) => `${c.name}: ${c.maxRelErr.toExponential(2)}${c.untouched ? '' : ' (wrote outside its outputs)'}`).join('\n  ');
      for (const c of checks) assert.ok(c.maxRelErr <= LINEAR_TOLERANCE && c.untouched, `${typeName(type)} on ${adapter}:\n  ${report}`);
    });
  }

  it('Q4_K matvecs that form their input from the residual stream match float64, and refuse bad bindings', async () => {
    const checks = await checkResidualInput(kernels);
    const report = checks.map((c) => `${c.name}: ${c.maxRelErr.toExponential(2)}${c.untouched ? '' : ' (wrote outside its outputs)'}`).join('\n  ');
    for (const c of checks) assert.ok(c.maxRelErr <= LINEAR_TOLERANCE && c.untouched, `on ${adapter}:\n  ${report}`);
    assert.deepEqual(await residualInputErrorCodes(kernels), RESIDUAL_INPUT_ERROR_CODES);
  });

  it('matvec variants without subgroups (the shared-memory lane sum) match the CPU', async (t) => {
    const plain = new LinearKernels(device, { subgroups: false });
    try {
      t.diagnostic(`this device's matvecs use subgroups: ${await kernels.useSubgroups()}`);
      assert.equal(await plain.useSubgroups(), false);
      const checks = await checkMatVecVariants(plain, MATVEC_VARIANT_TYPES[0]!);
      const report = checks.map((c) => `${c.name}: ${c.maxRelErr.toExponential(2)}${c.untouched ? '' : ' (wrote outside its outputs)'}`).join('\n  ');
      for (const c of checks) assert.ok(c.maxRelErr <= LINEAR_TOLERANCE && c.untouched, `without subgroups on ${adapter}:\n  ${report}`);
    } finally {
      plain.destroy();
    }
  });

  it('reports WGSL compile errors with the part and line', async () => {
    const r = await brokenShaderMessage(device);
    assert.ok(r.isCompileError, r.message);
    assert.equal(r.part, 'body.wgsl');
    assert.equal(r.line, 3);
    assert.match(r.message, /undefined_thing/);
  });

  it('refuses bad bindings before any GPU work', async () => {
    assert.deepEqual(await badBindingCodes(kernels), ['bad-argument', 'bad-argument', 'bad-argument', 'bad-argument', 'unsupported']);
  });
});
