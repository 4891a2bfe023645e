// The GPU training step (src/core/train/graph.ts: forward with per-layer recomputation, the
// chunked loss over the vocabulary and the backward to every LoRA parameter) against the float64
// reference backward (src/core/reference/backward.ts, itself checked against finite differences in
// lora-gradients.test.ts): loss and every LoRA gradient, on tiny models covering quantised
// weights, sliding and global attention, KV-shared layers and per-layer embeddings; masked
// labels; the layer-by-layer (cancellable) submission gives the same gradients.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RullamaError } from '../../src/core/errors.js';
import { readBack, uploadStorage } from '../../src/core/gpu/buffers.js';
import { nodeFileSource } from '../../src/core/gguf/node-source.js';
import { readGGUF } from '../../src/core/gguf/read.js';
import { Gemma4Model } from '../../src/core/model/model.js';
import { ReferenceModel } from '../../src/core/reference/forward.js';
import { Tokenizer } from '../../src/core/tokenizer/tokenizer.js';
import { TrainingGraph } from '../../src/core/train/graph.js';
import { LoraLayout } from '../../src/core/train/lora-params.js';
import { writeTinyModel, type TinyConfigName } from '../fixtures/index.js';
import { Rng } from '../fixtures/random.js';
import { openDawnDevice } from '../shared/dawn.js';

const TEXT = 'The quick brown fox jumps over the lazy dog, and then it runs into the forest where the old oak trees grow tall, the river bends twice, and the evening light falls softly on the quiet hills.';

let device: GPUDevice;
let dir: string;
before(async () => {
  device = (await openDawnDevice()).device;
  dir = await mkdtemp(join(tmpdir(), 'rullama-train-graph-'));
});
after(async () => {
  device.destroy();
  await rm(dir, { recursive: true, force: true });
});

/** ‖a − b‖ / ‖b‖ */
function relativeL2(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return Math.sqrt(num / den);
}

describe('GPU training step vs the float64 reference', () => {
  for (const name of ['tiny-e2b', 'tiny-kquant'] as TinyConfigName[]) {
    test(`${name}: loss and every LoRA gradient`, async () => {
      const source = await nodeFileSource((await writeTinyModel(name, dir)).path);
      try {
        const file = await readGGUF(source);
        const tokens = Tokenizer.fromGGUF(file).encode(TEXT);
        const window = file.metadata.get('gemma4.attention.sliding_window') as number;
        assert.ok(tokens.length > 2 * window, `${tokens.length} tokens for a window of ${window}`);
        // The first five positions learn nothing, as a prompt would.
        const labels = tokens.map((_, t) => (t < 5 || t + 1 >= tokens.length ? -1 : tokens[t + 1]!));
        const count = labels.filter((l) => l >= 0).length;

        const model = await Gemma4Model.load(device, source, { file, contextSize: 64, prefillChunk: 16 });
        const layout = LoraLayout.plan(model.config, file, { rank: 4, alpha: 6 });
        // A and B both random (B = 0 would give dA = 0 and test nothing).
        const rng = new Rng(3, name);
        const values = layout.initialValues(11);
        for (const s of layout.slots) for (let i = 0; i < s.outFeatures * s.rank; i++) values[s.bOffset + i] = (0.2 * rng.gaussian()) / Math.sqrt(s.rank);
        const params = uploadStorage(device, values, 'params');
        const grads = uploadStorage(device, new Float32Array(layout.size), 'grads');
        const graph = await TrainingGraph.create(model, layout, params, grads, { maxTokens: tokens.length + 3, lossChunk: 16 });
        try {
          const phases: string[] = [];
          await graph.run(tokens, labels, count, { onPhase: (p, l) => phases.push(`${p}${l}`) });
          const gpuGrads = new Float32Array(await readBack(device, grads));
          const losses = new Float32Array(await readBack(device, graph.lossPerToken, tokens.length * 4));
          const gpuLoss = losses.reduce((s, x) => s + x, 0) / count;
          assert.deepEqual(phases.slice(0, 2), ['forward0', 'forward1']);
          assert.ok(phases.includes('backward0'));

          const reference = await ReferenceModel.load(source, file);
          const lora = layout.slots.map((s) => ({
            base: s.base, rank: s.rank, scale: layout.scale,
            a: values.subarray(s.aOffset, s.aOffset + s.rank * s.inFeatures), b: values.subarray(s.bOffset, s.bOffset + s.outFeatures * s.rank),
          }));
          const expected = await reference.lossAndGradients(tokens, lora, labels);
          assert.equal(expected.count, count);
          let worst = 0;
          let worstName = '';
          for (const s of layout.slots) {
            const g = expected.gradients.get(s.base)!;
            for (const [part, offset, ref] of [['A', s.aOffset, g.a], ['B', s.bOffset, g.b]] as const) {
              const err = relativeL2(gpuGrads.subarray(offset, offset + ref.length), ref);
              if (err > worst) [worst, worstName] = [err, `${s.base} ${part}`];
            }
          }
          const lossErr = Math.abs(gpuLoss - expected.loss) / expected.loss;
          console.log(`# ${name}: ${tokens.length} tokens, ${layout.slots.length} LoRA pairs; loss ${gpuLoss.toFixed(6)} vs ${expected.loss.toFixed(6)} (rel ${lossErr.toExponential(2)}); worst gradient relative L2 ${worst.toExponential(2)} (${worstName})`);
          assert.ok(lossErr <= 1e-5, `loss ${gpuLoss} vs ${expected.loss}`);
          assert.ok(worst <= 1e-3, `gradient of ${worstName}: relative L2 ${worst}`);

          // Layer by layer (with a signal): the same gradients, accumulated onto the first ones.
          await graph.run(tokens, labels, count, { signal: new AbortController().signal });
          const twice = new Float32Array(await readBack(device, grads));
          assert.ok(relativeL2(twice, gpuGrads.map((g) => 2 * g)) <= 1e-6, 'a second run adds the same gradients');

          // A cancelled run stops between layers.
          const controller = new AbortController();
          await assert.rejects(
            graph.run(tokens, labels, count, { signal: controller.signal, onPhase: (p, l) => p === 'forward' && l === 1 && controller.abort() }),
            (e: RullamaError) => e.code === 'aborted',
          );
          await assert.rejects(graph.run(tokens, labels.slice(1), count), (e: RullamaError) => e.code === 'bad-argument');
          await assert.rejects(graph.run([...tokens.slice(0, -1), 1 << 20], labels, count), (e: RullamaError) => e.code === 'bad-token');
        } finally {
          graph.destroy();
          params.destroy();
          grads.destroy();
          model.destroy();
        }
      } finally {
        await source.close();
      }
    });
  }

  test('LoRA dropout: evaluation sees the whole input; each seed its own masks, the same every time', async () => {
    const source = await nodeFileSource((await writeTinyModel('tiny-e2b', dir)).path);
    const model = await Gemma4Model.load(device, source, { contextSize: 64, prefillChunk: 16 });
    const file = model.file;
    const tokens = Tokenizer.fromGGUF(file).encode(TEXT).slice(0, 24);
    const labels = [...tokens.slice(1), -1];
    const layout = LoraLayout.plan(model.config, file, { rank: 2, targets: ['q', 'down'] });
    const values = layout.initialValues(5);
    for (const s of layout.slots) for (let i = 0; i < s.outFeatures * s.rank; i++) values[s.bOffset + i] = 0.05 * Math.sin(i + s.layer);
    const params = uploadStorage(device, values, 'params');
    const grads = uploadStorage(device, new Float32Array(layout.size), 'grads');
    const plain = await TrainingGraph.create(model, layout, params, grads, { maxTokens: tokens.length });
    const dropped = await TrainingGraph.create(model, layout, params, grads, { maxTokens: tokens.length, dropout: 0.4 });
    const lossOf = async (g: TrainingGraph) => new Float32Array(await readBack(device, g.lossPerToken, 4 * tokens.length)).reduce((a, b) => a + b, 0);
    const gradientsOf = async (g: TrainingGraph, seed: number) => {
      const clear = device.createCommandEncoder();
      clear.clearBuffer(grads);
      device.queue.submit([clear.finish()]);
      await g.run(tokens, labels, tokens.length - 1, { dropoutSeed: seed });
      return { grads: new Float32Array(await readBack(device, grads)), loss: await lossOf(g) };
    };
    try {
      await plain.run(tokens, labels, 1, { backward: false });
      const evalPlain = await lossOf(plain);
      await dropped.run(tokens, labels, 1, { backward: false, dropoutSeed: 9 });
      assert.equal(await lossOf(dropped), evalPlain, 'no dropout in evaluation');
      const base = await gradientsOf(plain, 1);
      const a = await gradientsOf(dropped, 1);
      const again = await gradientsOf(dropped, 1);
      const other = await gradientsOf(dropped, 2);
      assert.deepEqual(again.grads, a.grads, 'the same seed gives the same masks');
      assert.notEqual(a.loss, base.loss, 'dropout changes the training loss');
      assert.ok(relativeL2(a.grads, base.grads) > 1e-3 && relativeL2(other.grads, a.grads) > 1e-3, 'masks change with the seed');
    } finally {
      plain.destroy();
      dropped.destroy();
      params.destroy();
      grads.destroy();
      model.destroy();
      await source.close();
    }
  });
});
