// The linear kernels (GGUF-layout weights, matvec and matmul) in Chromium's WebGPU; the same checks
// run on Dawn in Node (test/node/linear-dawn.test.ts).
import { expect } from '@open-wc/testing';
import { openDevice } from '../../src/core/gpu/device.js';
import { LINEAR_TYPES, LinearKernels } from '../../src/core/gpu/linear.js';
import { typeName } from '../../src/core/gguf/types.js';
import { checkInt8MatMul, INT8_MATMUL_TOLERANCE, INT8_TYPES } from '../shared/int8-matmul-case.js';
import { badBindingCodes, brokenShaderMessage, checkLinearType, checkMatVecVariants, checkResidualInput, LINEAR_TOLERANCE, MATVEC_VARIANT_TYPES, RESIDUAL_INPUT_ERROR_CODES, residualInputErrorCodes } from '../shared/linear-case.js';

describe('linear kernels in Chromium', () => {
  let device: GPUDevice;
  let kernels: LinearKernels;

  before(async () => {
    ({ device } = await openDevice({ gpu: navigator.gpu }));
    kernels = new LinearKernels(device);
  });

  after(() => {
    kernels.destroy();
    device.destroy();
  });

  for (const type of LINEAR_TYPES) {
    it(`${typeName(type)} matvec and matmul match the CPU`, async () => {
      const checks = await checkLinearType(kernels, type);
      for (const c of checks) {
        expect(c.maxRelErr, `${typeName(type)} ${c.name}`).to.be.at.most(LINEAR_TOLERANCE);
        expect(c.untouched, `${typeName(type)} ${c.name} wrote outside its outputs`).to.equal(true);
      }
    });
  }

  for (const type of INT8_TYPES) {
    it(`${typeName(type)} int8 matmul (x rounded to 8 bits) matches float64, split over K or not`, async () => {
      const checks = await checkInt8MatMul(kernels, type);
      for (const c of checks) {
        expect(c.excess, `${c.name} past one rounding step`).to.be.at.most(INT8_MATMUL_TOLERANCE);
        expect(c.vsUnrounded, `${c.name} from unrounded x`).to.be.within(1e-4, 2e-2);
        expect(c.untouched, `${c.name} wrote outside its outputs`).to.equal(true);
      }
      expect(checks.filter((c) => c.name.includes('200x512')).every((c) => c.splits === 1)).to.equal(true);
      expect(checks.filter((c) => c.name.includes('K split')).every((c) => c.splits > 1)).to.equal(true);
      expect([...new Set(checks.map((c) => c.tileTokens))].sort()).to.deep.equal([128, 64]);
    });
  }

  it('Q4_K matvecs that form their input from the residual stream match float64, and refuse bad bindings', async () => {
    for (const c of await checkResidualInput(kernels)) {
      expect(c.maxRelErr, c.name).to.be.at.most(LINEAR_TOLERANCE);
      expect(c.untouched, `${c.name} wrote outside its outputs`).to.equal(true);
    }
    expect(await residualInputErrorCodes(kernels)).to.deep.equal(RESIDUAL_INPUT_ERROR_CODES);
  });

  for (const type of MATVEC_VARIANT_TYPES) {
    it(`${typeName(type)} matvec long rows and GELU epilogues match the CPU`, async () => {
      const checks = await checkMatVecVariants(kernels, type);
      for (const c of checks) {
        expect(c.maxRelErr, `${typeName(type)} ${c.name}`).to.be.at.most(LINEAR_TOLERANCE);
        expect(c.untouched, `${typeName(type)} ${c.name} wrote outside its outputs`).to.equal(true);
      }
    });
  }

  it('reports WGSL compile errors with the part and line', async () => {
    const r = await brokenShaderMessage(device);
    expect(r.isCompileError, r.message).to.equal(true);
    expect(r.part).to.equal('body.wgsl');
    expect(r.line).to.equal(3);
    expect(r.message).to.contain('undefined_thing');
  });

  it('refuses bad bindings before any GPU work', async () => {
    expect(await badBindingCodes(kernels)).to.deep.equal(['bad-argument', 'bad-argument', 'bad-argument', 'bad-argument', 'unsupported']);
  });
});
