// The training kernels on Dawn in Node: the input gradient through GGUF weights of every dtype,
// the LoRA gradients, the soft-capped cross-entropy and AdamW with global-norm clipping, each
// against float64 (and the float64 gradients against finite differences). On machines without a
// GPU, VK_ICD_FILENAMES points Dawn at SwiftShader (see package.json), so the shapes stay small.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LinearBackwardKernels } from '../../src/core/gpu/linear-backward.js';
import { LINEAR_TYPES } from '../../src/core/gpu/linear.js';
import { LossKernels } from '../../src/core/gpu/loss.js';
import { PipelineCache } from '../../src/core/gpu/pipelines.js';
import { typeName } from '../../src/core/gguf/types.js';
import { openDawnDevice } from '../shared/dawn.js';
import { badBindingCodes, checkAdamW, checkCrossEntropy, checkLoraBackward, checkMatMulBackward, failures, report, type Check } from '../shared/backward-linear-case.js';

describe('training kernels on Dawn', () => {
  let device: GPUDevice;
  let linear: LinearBackwardKernels;
  let loss: LossKernels;
  let adapter = '';

  before(async () => {
    ({ device, description: adapter } = await openDawnDevice());
    const pipelines = new PipelineCache(device);
    linear = new LinearBackwardKernels(device, { pipelines });
    loss = new LossKernels(device, { pipelines });
  });

  after(() => {
    linear.destroy();
    loss.destroy();
    device.destroy();
  });

  const expectAll = (what: string, checks: readonly Check[]) => {
    const failed = failures(checks);
    assert.deepEqual(failed, [], `${what} on ${adapter}:\n  ${report(checks)}`);
    if (process.env.RULLAMA_TEST_VERBOSE) console.log(`${what}:\n  ${report(checks)}`);
  };

  for (const type of LINEAR_TYPES) {
    it(`${typeName(type)}: dx = Wᵀ·dy matches float64 (whole, row tiles, firstRow, accumulate)`, async () => {
      expectAll(typeName(type), await checkMatMulBackward(linear, type));
    });
  }

  it('LoRA gradients (dA, dB, dt, dx) match float64', async () => {
    expectAll('lora', await checkLoraBackward(linear));
  });

  it('cross-entropy with the soft-cap: loss and gradient match float64, masks hold', async () => {
    expectAll('cross entropy', await checkCrossEntropy(loss));
  });

  it('AdamW with global-norm clipping follows the CPU AdamW', async () => {
    expectAll('adamw', await checkAdamW(device));
  });

  it('refuses bad bindings before any GPU work', async () => {
    assert.deepEqual(await badBindingCodes(device, linear, loss), [
      'bad-argument', 'bad-argument', 'bad-argument', 'unsupported', 'bad-argument', 'bad-argument',
      'bad-argument', 'bad-argument', 'bad-argument', 'bad-argument', 'bad-argument',
    ]);
  });
});
