import { expect } from '@open-wc/testing';
import { openDevice } from '../../src/core/gpu/device.js';
import { matvecMaxRelativeError } from '../shared/matvec-case.js';

describe('WebGPU in Chromium', () => {
  it('has an adapter (a GPU test fails, never skips, without one)', async () => {
    const { device, description } = await openDevice({ gpu: navigator.gpu });
    expect(description).to.be.a('string');
    device.destroy();
  });

  it('runs the f32 matrix-vector kernel and matches the CPU', async () => {
    const { maxRelErr } = await matvecMaxRelativeError(navigator.gpu);
    expect(maxRelErr).to.be.below(1e-5);
  });

  it('reports no-webgpu clearly when there is no GPU object', async () => {
    try {
      await openDevice({ gpu: undefined });
      expect.fail('expected an error');
    } catch (e) {
      expect((e as { code: string }).code).to.equal('no-webgpu');
    }
  });
});
