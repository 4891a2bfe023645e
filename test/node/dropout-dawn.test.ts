// LoRA dropout's kernel pair (src/wgsl/lora_dropout.wgsl) on Dawn: the forward keeps about 1 − p
// of the values, scaled by 1/(1 − p), with a mask that depends on seed and salt only; the backward
// is the forward's exact derivative (checked against central differences of L = Σ r·forward(x)) and
// leaves its scratch gradient zeroed; evaluation (training off) copies exactly.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readBack, uploadStorage } from '../../src/core/gpu/buffers.js';
import { DropoutKernels } from '../../src/core/gpu/dropout.js';
import type { Dispatch } from '../../src/core/gpu/linear.js';
import { RullamaError } from '../../src/core/errors.js';
import { Rng } from '../fixtures/random.js';
import { openDawnDevice } from '../shared/dawn.js';

let device: GPUDevice;
let kernels: DropoutKernels;
before(async () => {
  device = (await openDawnDevice()).device;
  kernels = new DropoutKernels(device);
});
after(() => {
  kernels.destroy();
  device.destroy();
});

const T = 7;
const WIDTH = 96;
const P = 0.3;

async function run(dispatch: Dispatch, tokens = T): Promise<void> {
  const encoder = device.createCommandEncoder();
  const pass = encoder.beginComputePass();
  dispatch.encode(pass, tokens);
  pass.end();
  device.queue.submit([encoder.finish()]);
  await device.queue.onSubmittedWorkDone();
}

const read = async (b: GPUBuffer) => new Float32Array(await readBack(device, b));

describe('LoRA dropout kernels', () => {
  test('forward masks and scales; backward is its exact derivative and zeroes its scratch', async () => {
    const rng = new Rng(4, 'dropout');
    const x = Float32Array.from({ length: T * WIDTH }, () => rng.gaussian());
    const r = Float32Array.from({ length: T * WIDTH }, () => rng.gaussian());
    const xBuf = uploadStorage(device, x, 'x');
    const out = uploadStorage(device, new Float32Array(T * WIDTH), 'out');
    const g = uploadStorage(device, r, 'g');
    const base = Float32Array.from({ length: T * WIDTH }, () => rng.gaussian());
    const dx = uploadStorage(device, base, 'dx');
    const forward = await kernels.bindForward({ width: WIDTH, maxTokens: T, p: P, salt: 3, from: xBuf, to: out });
    const backward = await kernels.bindBackward({ width: WIDTH, maxTokens: T, p: P, salt: 3, from: g, to: dx });
    try {
      kernels.setSeed(77);
      await run(forward);
      const y = await read(out);
      let kept = 0;
      for (let i = 0; i < y.length; i++) {
        if (y[i] !== 0) {
          kept++;
          assert.ok(Math.abs(y[i]! - x[i]! / (1 - P)) <= 1e-6 * Math.abs(y[i]!), `value ${i}`);
        }
      }
      const fraction = kept / y.length;
      assert.ok(Math.abs(fraction - (1 - P)) < 0.06, `kept ${fraction}`);

      // The forward is linear in x, so L = Σ r·y has dL/dx = Σ_i r_i ∂y_i/∂x exactly; central differences confirm it per coordinate.
      await run(backward);
      const grad = await read(dx);
      for (const i of [0, 5, 17, 100, 333, T * WIDTH - 1]) {
        const eps = 0.5;
        const fd = (r[i]! * ((x[i]! + eps) * (y[i] === 0 ? 0 : 1 / (1 - P))) - r[i]! * ((x[i]! - eps) * (y[i] === 0 ? 0 : 1 / (1 - P)))) / (2 * eps);
        assert.ok(Math.abs(grad[i]! - base[i]! - fd) <= 1e-5 * (1 + Math.abs(fd)), `dx[${i}]: ${grad[i]! - base[i]!} vs ${fd}`);
      }
      assert.ok((await read(g)).every((v) => v === 0), 'the scratch gradient is zeroed');

      // The same seed gives the same mask; another seed or salt another; training off copies exactly.
      await run(forward);
      assert.deepEqual(await read(out), y);
      kernels.setSeed(78);
      await run(forward);
      assert.notDeepEqual(await read(out), y);
      kernels.setSeed(77, false);
      await run(forward);
      assert.deepEqual(await read(out), x);
      // Tokens beyond the count are left alone.
      kernels.setSeed(77);
      device.queue.writeBuffer(out, 0, new Float32Array(T * WIDTH).fill(9));
      await run(forward, 2);
      assert.ok((await read(out)).subarray(2 * WIDTH).every((v) => v === 9));
    } finally {
      forward.destroy();
      backward.destroy();
      for (const b of [xBuf, out, g, dx]) b.destroy();
    }
  });

  test('refuses bad bindings', async () => {
    const b = uploadStorage(device, new Float32Array(16), 'small');
    const c = uploadStorage(device, new Float32Array(16), 'small2');
    const isBad = (e: unknown) => e instanceof RullamaError && e.code === 'bad-argument';
    await assert.rejects(kernels.bindForward({ width: 4, maxTokens: 4, p: 1, salt: 0, from: b, to: c }), isBad);
    await assert.rejects(kernels.bindForward({ width: 4, maxTokens: 4, p: 0.1, salt: 0, from: b, to: b }), isBad);
    await assert.rejects(kernels.bindForward({ width: 8, maxTokens: 4, p: 0.1, salt: 0, from: b, to: c }), isBad);
    b.destroy();
    c.destroy();
  });
});
