// The core on Dawn in Node (the `webgpu` package): the same kernel check as in Chromium.
// On machines without a GPU, VK_ICD_FILENAMES points Dawn at Chromium's SwiftShader (see package.json).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { create, globals } from 'webgpu';
import { matvecMaxRelativeError } from '../shared/matvec-case.js';

Object.assign(globalThis, globals);

test('f32 matrix-vector kernel on Dawn matches the CPU', async () => {
  const gpu = create([]);
  const { maxRelErr, adapter } = await matvecMaxRelativeError(gpu);
  assert.ok(maxRelErr < 1e-5, `max relative error ${maxRelErr} on ${adapter}`);
});
