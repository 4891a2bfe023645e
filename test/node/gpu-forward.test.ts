// The Gemma 4 forward pass on the GPU (Dawn; SwiftShader on machines without a GPU) against the
// float64 CPU reference, on every tiny fixture: prompts longer than twice the sliding window,
// prefilled in blocks that cross window and ring boundaries, then decoded token by token.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RullamaError } from '../../src/core/errors.js';
import { GGMLType } from '../../src/core/gguf/types.js';
import { nodeFileSource } from '../../src/core/gguf/node-source.js';
import { readGGUF } from '../../src/core/gguf/read.js';
import { Gemma4Model } from '../../src/core/model/model.js';
import { ReferenceModel } from '../../src/core/reference/forward.js';
import { Tokenizer } from '../../src/core/tokenizer/tokenizer.js';
import { TINY_CONFIG_NAMES, TINY_CONFIGS, writeGemma4Model, writeTinyModel, type Gemma4Config } from '../fixtures/index.js';
import { openDawnDevice } from '../shared/dawn.js';
import { randomAdapter } from '../shared/random-adapter.js';

let device: GPUDevice;
let dir: string;
const PROMPT =
  'The quick brown fox jumps over the lazy dog, and then it runs into the forest where the old oak trees grow tall, the river bends twice, and the evening light falls softly on the quiet hills.';

before(async () => {
  device = (await openDawnDevice()).device;
  dir = await mkdtemp(join(tmpdir(), 'rullama-gpu-'));
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

describe('GPU forward pass', () => {
  for (const name of TINY_CONFIG_NAMES) {
    test(`${name}: GPU logits match the float64 reference; prefill equals decode`, async () => {
      const { path } = await writeTinyModel(name, dir);
      const source = await nodeFileSource(path);
      try {
        const file = await readGGUF(source);
        const tokens = Tokenizer.fromGGUF(file).encode(PROMPT);
        const window = file.metadata.get('gemma4.attention.sliding_window') as number;
        assert.ok(tokens.length > 2 * window, `${tokens.length} tokens for a window of ${window}`);

        const prefill = await Gemma4Model.load(device, source, { contextSize: 64, prefillChunk: 16, allLogits: true });
        const gpuLogits = await prefill.feed(tokens, { logits: 'all' });
        prefill.destroy();
        const reference = await (await ReferenceModel.load(source, file)).forward(tokens);
        const precision = Math.max(...tokens.map((_, p) => relativeL2(gpuLogits[p]!, reference[p]!)));
        console.log(`# ${name}: ${tokens.length} tokens, worst relative L2 vs float64 ${precision.toExponential(2)}`);
        assert.ok(precision <= 1e-3, `relative L2 ${precision}`);

        const decode = await Gemma4Model.load(device, source, { contextSize: 64, prefillChunk: 16 });
        let worst = 0;
        for (const [p, token] of tokens.entries()) {
          const [logits] = await decode.feed([token]);
          worst = Math.max(worst, relativeL2(logits!, gpuLogits[p]!));
        }
        console.log(`# ${name}: decode vs prefill ${worst.toExponential(2)}`);
        assert.ok(worst <= 1e-4, `decode differs from prefill by ${worst}`);

        // The GPU's one-token kernels (q/k/v and gate/up+GELU as one matvec each, head-group
        // attention), which a software device leaves off by default, on the first tokens.
        const fused = await Gemma4Model.load(device, source, { contextSize: 64, prefillChunk: 16, kernelProfile: 'gpu' });
        let worstFused = 0;
        for (const [p, token] of tokens.slice(0, 12).entries()) {
          const [logits] = await fused.feed([token]);
          worstFused = Math.max(worstFused, relativeL2(logits!, gpuLogits[p]!));
        }
        fused.destroy();
        console.log(`# ${name}: fused decode vs prefill ${worstFused.toExponential(2)}`);
        assert.ok(worstFused <= 1e-4, `fused decode differs from prefill by ${worstFused}`);

        // The context is full after 64 tokens: the next feed overflows, and a bad id is refused.
        await assert.rejects(decode.feed(new Array(64 - tokens.length + 1).fill(2)), (e: RullamaError) => e.code === 'context-overflow');
        await assert.rejects(decode.feed([262144]), (e: RullamaError) => e.code === 'bad-token');
        assert.ok(decode.gpuBytes > 0);
        decode.destroy();
      } finally {
        await source.close();
      }
    });
  }

  // tiny-kquant with per-layer embeddings and a Q4_K attn_q: d = 256 and Q4_K gate/up/inp_gate,
  // so the 'gpu' decode path folds two residual norms of each layer into the gate+up and inp_gate
  // matvecs, and the norm that ends layers 1 and 2 into the q of the KV-shared layers 2 and 3
  // (E2B's decode chain; none of the tiny fixtures reaches it otherwise).
  test('folded residual norms (tiny-kquant with PLE): GPU decode matches the float64 reference and prefill', async () => {
    const base = TINY_CONFIGS['tiny-kquant'] as Gemma4Config;
    const config: Gemma4Config = {
      ...base, name: 'tiny-kquant-ple', ple: 32,
      types: { ...base.types, byKind: { ...base.types.byKind, attn_q: GGMLType.Q4_K } },
    };
    const path = join(dir, 'tiny-kquant-ple.gguf');
    await writeGemma4Model(config, path, { seed: 3 });
    const source = await nodeFileSource(path);
    try {
      const file = await readGGUF(source);
      const tokens = Tokenizer.fromGGUF(file).encode(PROMPT).slice(0, 24);
      const prefill = await Gemma4Model.load(device, source, { contextSize: 64, prefillChunk: 16, allLogits: true });
      const gpuLogits = await prefill.feed(tokens, { logits: 'all' });
      prefill.destroy();
      const reference = await (await ReferenceModel.load(source, file)).forward(tokens);
      const precision = Math.max(...tokens.map((_, p) => relativeL2(gpuLogits[p]!, reference[p]!)));
      assert.ok(precision <= 1e-3, `prefill vs float64: relative L2 ${precision}`);
      const folded = await Gemma4Model.load(device, source, { contextSize: 64, prefillChunk: 16, kernelProfile: 'gpu' });
      let worst = 0;
      let worstRef = 0;
      for (const [p, token] of tokens.entries()) {
        const [logits] = await folded.feed([token]);
        worst = Math.max(worst, relativeL2(logits!, gpuLogits[p]!));
        worstRef = Math.max(worstRef, relativeL2(logits!, reference[p]!));
      }
      // LoRA terms on q (and gate) turn the folds off for those layers: layer 2's q then reads the
      // input that layer 1's end norm wrote, which must run again; layer 3's q (no terms) still folds.
      const some = randomAdapter(file, 2, 4, 7, ['attn_q', 'ffn_gate']);
      const adapter = { ...some, tensors: new Map([...some.tensors].filter(([name]) => name !== 'blk.3.attn_q.weight')) };
      const applied = [{ adapter, scale: 0.8 }];
      const reference2 = await ReferenceModel.load(source, file);
      reference2.setAdapters(applied);
      const adaptedRef = await reference2.forward(tokens);
      await folded.setAdapters(applied);
      let worstLora = 0;
      for (const [p, token] of tokens.entries()) {
        const [logits] = await folded.feed([token]);
        worstLora = Math.max(worstLora, relativeL2(logits!, adaptedRef[p]!));
      }
      const loraMoves = Math.max(...tokens.map((_, p) => relativeL2(adaptedRef[p]!, reference[p]!)));
      folded.destroy();
      console.log(`# tiny-kquant-ple: prefill vs float64 ${precision.toExponential(2)}, folded decode vs prefill ${worst.toExponential(2)}, vs float64 ${worstRef.toExponential(2)}; with LoRA on q and gate ${worstLora.toExponential(2)} (LoRA moves the logits by ${loraMoves.toFixed(3)})`);
      assert.ok(worst <= 1e-4, `folded decode differs from prefill by ${worst}`);
      assert.ok(worstRef <= 1e-3, `folded decode vs float64: ${worstRef}`);
      assert.ok(loraMoves > 0.05, `the adapter barely moves the logits (${loraMoves})`);
      assert.ok(worstLora <= 1e-3, `decode with LoRA on q vs float64: ${worstLora}`);
    } finally {
      await source.close();
    }
  });

  // int8Prefill: the block's Q4_K and Q6_K matmuls round their input to 8 bits (as llama.cpp does),
  // so a prompt's logits move by that rounding, not more; decode after it reads the KV cache the
  // int8 block wrote. tiny-kquant has Q4_K, Q5_K (left in f32) and Q6_K matrices.
  test('int8 prefill (tiny-kquant): logits within 8-bit rounding of f32 prefill, and decode continues from its cache', async () => {
    const { path } = await writeTinyModel('tiny-kquant', dir);
    const source = await nodeFileSource(path);
    try {
      const file = await readGGUF(source);
      const tokens = Tokenizer.fromGGUF(file).encode(PROMPT).slice(0, 40);
      const f32 = await Gemma4Model.load(device, source, { contextSize: 64, prefillChunk: 16, allLogits: true });
      const int8 = await Gemma4Model.load(device, source, { contextSize: 64, prefillChunk: 16, allLogits: true, int8Prefill: true });
      assert.equal(int8.int8Prefill, true);
      assert.equal(f32.int8Prefill, false);
      const want = await f32.feed(tokens, { logits: 'all' });
      const got = await int8.feed(tokens, { logits: 'all' });
      const moved = Math.max(...tokens.map((_, p) => relativeL2(got[p]!, want[p]!)));
      const argmax = (v: ArrayLike<number>) => {
        let best = 0;
        for (let i = 1; i < v.length; i++) if (v[i]! > v[best]!) best = i;
        return best;
      };
      const agree = tokens.filter((_, p) => argmax(got[p]!) === argmax(want[p]!)).length;
      // One more token on each: the decode step (f32 either way) attends over the cache the block wrote.
      const [nextF32] = await f32.feed([tokens[0]!]);
      const [nextInt8] = await int8.feed([tokens[0]!]);
      const after = relativeL2(nextInt8!, nextF32!);
      const session = await int8.newSession({ contextSize: 32 });
      assert.equal(session.int8Prefill, false, 'a new session takes its own options');
      session.destroy();
      f32.destroy();
      int8.destroy();
      console.log(`# tiny-kquant int8 prefill: logits vs f32 prefill ${moved.toExponential(2)} (worst of ${tokens.length}), same top token at ${agree}; next decode step ${after.toExponential(2)}`);
      assert.ok(moved > 1e-5, `int8 prefill gave the f32 logits (${moved}): did it run?`);
      assert.ok(moved <= 5e-2, `int8 prefill moved the logits by ${moved}`);
      assert.ok(agree >= tokens.length - 2, `top token agrees at ${agree} of ${tokens.length}`);
      assert.ok(after > 1e-6 && after <= 5e-2, `decode after int8 prefill vs after f32 prefill: ${after}`);
    } finally {
      await source.close();
    }
  });
});
