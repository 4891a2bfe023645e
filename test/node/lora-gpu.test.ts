// LoRA adapters on the GPU forward pass (Dawn; SwiftShader here): several adapters at once against
// the float64 reference with the same adapters (which test/node/lora.test.ts checks against
// llama.cpp), prefill and decode alike (decode takes the unfused MLP path when up is adapted),
// swapping and removing at run time without reloading, state snapshots tied to the adapters, and
// refused adapters changing nothing. The engine API on top: loading an adapter GGUF from a Blob,
// one conversation adapted while another on the same weights is not.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Engine } from '../../src/core/engine.js';
import { RullamaError } from '../../src/core/errors.js';
import { nodeFileSource } from '../../src/core/gguf/node-source.js';
import type { ByteSource } from '../../src/core/gguf/source.js';
import { readGGUF } from '../../src/core/gguf/read.js';
import type { GGUFFile } from '../../src/core/gguf/types.js';
import { writeLoraGGUF, type LoraAdapter } from '../../src/core/lora/adapter.js';
import { Gemma4Model } from '../../src/core/model/model.js';
import { ReferenceModel } from '../../src/core/reference/forward.js';
import { Tokenizer } from '../../src/core/tokenizer/tokenizer.js';
import { writeTinyModel } from '../fixtures/index.js';
import { openDawnDevice } from '../shared/dawn.js';
import { randomAdapter } from '../shared/random-adapter.js';

const PROMPT = 'The quick brown fox jumps over the lazy dog, and the old cat watches from the warm windowsill.';
const isCode = (code: string) => (e: unknown) => e instanceof RullamaError && e.code === code;

let device: GPUDevice;
let dir: string;
let source: ByteSource & { close(): Promise<void> };
let file: GGUFFile;
let tokens: number[];

before(async () => {
  device = (await openDawnDevice()).device;
  dir = await mkdtemp(join(tmpdir(), 'rullama-lora-gpu-'));
  // tiny-e2b: sliding and global layers, KV sharing (no k/v adapters there), per-layer embeddings.
  source = await nodeFileSource((await writeTinyModel('tiny-e2b', dir)).path);
  file = await readGGUF(source);
  tokens = Tokenizer.fromGGUF(file).encode(PROMPT);
});
after(async () => {
  await source?.close();
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

const worstOver = (a: Float32Array[] | Float64Array[], b: Float32Array[] | Float64Array[]) => Math.max(...a.map((x, p) => relativeL2(x, b[p]!)));

describe('LoRA on the GPU', () => {
  test('two adapters at their scales match the float64 reference, in prefill and decode; removing them restores the base model', async () => {
    const all = randomAdapter(file, 4, 8, 5); // every target, scale 0.7·8/4
    const some = randomAdapter(file, 3, 0, 6, ['attn_q', 'ffn_up', 'ffn_down']); // alpha 0: the scale alone
    const applied = [{ adapter: all, scale: 0.7 }, { adapter: some, scale: 0.5 }];

    const reference = await ReferenceModel.load(source, file);
    const base = await reference.forward(tokens);
    reference.reset();
    reference.setAdapters(applied);
    const expected = await reference.forward(tokens);
    const change = worstOver(expected, base);
    assert.ok(change > 0.05, `the adapters change the logits by only ${change}: the comparison would mean nothing`);

    const model = await Gemma4Model.load(device, source, { file, contextSize: 64, prefillChunk: 16, allLogits: true });
    try {
      const plain = await model.feed(tokens, { logits: 'all' });
      await model.setAdapters(applied);
      assert.equal(model.position, 0, 'applying adapters starts the conversation afresh');
      assert.equal(model.adapters.length, 2);
      const prefill = await model.feed(tokens, { logits: 'all' });
      const precision = worstOver(prefill, expected);
      model.reset();
      const decode: Float32Array[] = [];
      for (const t of tokens) decode.push((await model.feed([t]))[0]!);
      const decodeVsPrefill = worstOver(decode, prefill);
      console.log(`# tiny-e2b + 2 adapters: ${tokens.length} tokens, GPU vs float64 ${precision.toExponential(2)} (adapters move the logits by ${change.toFixed(3)}); decode vs prefill ${decodeVsPrefill.toExponential(2)}`);
      assert.ok(precision <= 1e-3, `relative L2 ${precision}`);
      assert.ok(decodeVsPrefill <= 1e-4, `decode differs from prefill by ${decodeVsPrefill}`);

      // Swap to one adapter, then remove all: the same session follows without a reload.
      await model.setAdapters([{ adapter: some, scale: 0.5 }]);
      reference.reset();
      reference.setAdapters([{ adapter: some, scale: 0.5 }]);
      const swapped = worstOver(await model.feed(tokens, { logits: 'all' }), await reference.forward(tokens));
      assert.ok(swapped <= 1e-3, `after a swap: relative L2 ${swapped}`);
      await model.setAdapters([]);
      assert.deepEqual(await model.feed(tokens, { logits: 'all' }), plain, 'without adapters the logits are the base model\'s, bit for bit');
    } finally {
      model.destroy();
    }
  });

  test('snapshots belong to their adapters; misfit adapters are refused and change nothing', async () => {
    const adapter = randomAdapter(file, 2, 4, 7);
    const model = await Gemma4Model.load(device, source, { file, contextSize: 64, prefillChunk: 16 });
    const other = await model.newSession({ contextSize: 64, prefillChunk: 8 });
    try {
      await model.setAdapters([{ adapter, scale: 1 }]);
      const k = tokens.length - 3;
      await model.feed(tokens.slice(0, k));
      const state = await model.saveState();
      const [next] = await model.feed(tokens.slice(k, k + 1));
      // Another session without the adapter refuses the state; with it (same file, new object) it continues identically.
      assert.throws(() => other.loadState(state), isCode('bad-snapshot'));
      await other.setAdapters([{ adapter: { ...adapter, tensors: new Map(adapter.tensors) }, scale: 1 }]);
      other.loadState(state);
      assert.deepEqual((await other.feed(tokens.slice(k, k + 1)))[0], next);
      // At another scale the state does not fit either.
      await other.setAdapters([{ adapter, scale: 0.5 }]);
      assert.throws(() => other.loadState(state), isCode('bad-snapshot'));

      // Refused: a tensor the forward pass cannot adapt, a misshapen one, another architecture, a bad scale.
      const embd = file.tensors.find((t) => t.name === 'token_embd.weight')!;
      const [d, vocab] = embd.dims as [number, number];
      const onEmbedding: LoraAdapter = {
        ...adapter,
        tensors: new Map([['token_embd.weight', { base: 'token_embd.weight', rank: 1, inFeatures: d, outFeatures: vocab, a: new Float32Array(d), b: new Float32Array(vocab) }]]),
      };
      const q = adapter.tensors.get('blk.0.attn_q.weight')!;
      const misshapen: LoraAdapter = { ...adapter, tensors: new Map([[q.base, { ...q, inFeatures: q.inFeatures / 2, a: q.a.subarray(0, q.a.length / 2) }]]) };
      const before = (await model.feed(tokens.slice(k + 1, k + 2)))[0]!;
      model.rewind(k + 1);
      await assert.rejects(model.setAdapters([{ adapter: onEmbedding }]), isCode('unsupported'));
      await assert.rejects(model.setAdapters([{ adapter: misshapen }]), isCode('bad-argument'));
      await assert.rejects(model.setAdapters([{ adapter: { ...adapter, architecture: 'llama' } }]), isCode('wrong-arch'));
      await assert.rejects(model.setAdapters([{ adapter, scale: Number.NaN }]), isCode('bad-argument'));
      assert.equal(model.position, k + 1, 'a refused adapter keeps the conversation');
      assert.deepEqual((await model.feed(tokens.slice(k + 1, k + 2)))[0], before, 'and the adapters applied before');
    } finally {
      other.destroy();
      model.destroy();
    }
  });

  test('engine: an adapter GGUF from a Blob adapts one conversation, not the others on the same weights', async () => {
    const adapter = randomAdapter(file, 4, 8, 8);
    const engine = await Engine.load(source, { device, contextSize: 64, prefillChunk: 16 });
    try {
      const greedy = { maxTokens: 6, temperature: 0 };
      const baseText = (await engine.generate(PROMPT, greedy).result).text;
      const loaded = await engine.loadAdapter(new Blob([(await writeLoraGGUF(adapter)).slice()]));
      assert.equal(loaded.tensors.size, adapter.tensors.size);
      const adapted = await engine.createConversation();
      await adapted.setAdapters([{ adapter: loaded, scale: 1 }]);
      const adaptedIds = (await adapted.generate(PROMPT, greedy).result).tokens;
      engine.reset();
      assert.equal((await engine.generate(PROMPT, greedy).result).text, baseText, 'the main conversation is unaffected');

      // The adapted greedy tokens are the argmax of the float64 reference with the same adapter.
      const reference = await ReferenceModel.load(source, file);
      reference.setAdapters([{ adapter: loaded, scale: 1 }]);
      const ids = [...engine.tokenize(PROMPT)];
      let checked = 0;
      for (const id of adaptedIds) {
        const logits = (await reference.forward(ids)).at(-1)!;
        reference.reset();
        const order = [...logits.keys()].sort((i, j) => logits[j]! - logits[i]!);
        // A near tie could go either way in f32; the rest must agree.
        if (logits[order[0]!]! - logits[order[1]!]! > 1e-3) {
          assert.equal(id, order[0]);
          checked++;
        }
        ids.push(id);
      }
      assert.ok(adaptedIds.length >= 4 && checked >= adaptedIds.length - 1, `${checked} of ${adaptedIds.length} tokens checked`);
      await assert.rejects(engine.loadAdapter(new Blob([new Uint8Array(64)])), isCode('bad-gguf'));
      await adapted.dispose();
    } finally {
      await engine.dispose();
    }
  });
});
