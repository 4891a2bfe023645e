// The core on Dawn in Node (the `webgpu` package): the same kernel check as in Chromium.
// On machines without a GPU, VK_ICD_FILENAMES points Dawn at Chromium's SwiftShader (see package.json).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dawnGPU } from '../shared/dawn.js';
import { matvecMaxRelativeError } from '../shared/matvec-case.js';

test('f32 matrix-vector kernel on Dawn matches the CPU', async () => {
  const { maxRelErr, adapter } = await matvecMaxRelativeError(dawnGPU);
  assert.ok(maxRelErr < 1e-5, `max relative error ${maxRelErr} on ${adapter}`);
});
