// The per-layer-embedding table on the GPU and chained decode (Gemma4Model.chainSample, used by
// generate when no penalty is on): the same logits as rows read on the CPU, the same tokens, text,
// stats and KV cache as step-by-step decoding, including a stop token fed ahead and a cancellation
// with a step in flight; and the refusals of steps that cannot be chained.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generate, type GenerateOptions, type GenerateStats } from '../../src/core/generate.js';
import { RullamaError } from '../../src/core/errors.js';
import { nodeFileSource } from '../../src/core/gguf/node-source.js';
import type { ByteSource } from '../../src/core/gguf/source.js';
import { Gemma4Model } from '../../src/core/model/model.js';
import { Tokenizer } from '../../src/core/tokenizer/tokenizer.js';
import { writeTinyModel } from '../fixtures/index.js';
import { openDawnDevice } from '../shared/dawn.js';

let device: GPUDevice;
let dir: string;
let source: ByteSource & { close(): Promise<void> };
let tokenizer: Tokenizer;
/** Per-layer rows read on the CPU: every step waits for the token before it. */
let stepwise: Gemma4Model;
/** The table on the GPU: generate chains the steps. */
let chained: Gemma4Model;

const CONTEXT = 64;
const PROMPT = 'The quick brown fox jumps over the lazy dog, and then it runs into the forest.';
const isCode = (code: string) => (e: unknown) => e instanceof RullamaError && e.code === code;

async function run(model: Gemma4Model, prompt: readonly number[], options: GenerateOptions): Promise<GenerateStats> {
  const it = generate(model, tokenizer, prompt, options);
  for (;;) {
    const step = await it.next();
    if (step.done) return step.value;
  }
}

before(async () => {
  device = (await openDawnDevice()).device;
  dir = await mkdtemp(join(tmpdir(), 'rullama-chained-'));
  source = await nodeFileSource((await writeTinyModel('tiny-e2b', dir)).path);
  stepwise = await Gemma4Model.load(device, source, { contextSize: CONTEXT, prefillChunk: 16, allLogits: true });
  chained = await Gemma4Model.load(device, source, { contextSize: CONTEXT, prefillChunk: 16, allLogits: true, perLayerTableOnGpu: true });
  tokenizer = Tokenizer.fromGGUF(stepwise.file);
});
after(async () => {
  stepwise.destroy();
  chained.destroy();
  await source.close();
  device.destroy();
  await rm(dir, { recursive: true, force: true });
});

describe('chained decode', () => {
  test('per-layer rows gathered on the GPU give the logits of rows read on the CPU', async () => {
    assert.equal(stepwise.chainable, false);
    assert.equal(chained.chainable, true);
    assert.ok(chained.gpuBytes > stepwise.gpuBytes, 'the table is counted');
    const ids = tokenizer.encode(PROMPT).slice(0, 20);
    stepwise.reset();
    chained.reset();
    const want = await stepwise.feed(ids, { logits: 'all' });
    const got = await chained.feed(ids, { logits: 'all' });
    assert.equal(got.length, ids.length);
    for (let t = 0; t < ids.length; t++) assert.deepEqual(got[t], want[t], `token ${t}`);
  });

  test('chained generation gives the tokens, text, stats and KV cache of step-by-step generation', async () => {
    const prompt = tokenizer.encode(PROMPT);
    const cases: GenerateOptions[] = [
      { maxTokens: 10 },
      { maxTokens: 9, temperature: 1.3, topK: 40, topP: 0.95, seed: 11 },
      // Penalties need each token on the CPU: the chained model falls back to step by step.
      { maxTokens: 8, temperature: 0.9, repetitionPenalty: 1.4, seed: 3 },
    ];
    for (const options of cases) {
      stepwise.reset();
      chained.reset();
      const want = await run(stepwise, prompt, options);
      const got = await run(chained, prompt, options);
      assert.deepEqual(got.tokens, want.tokens, JSON.stringify(options));
      assert.equal(got.text, want.text);
      assert.equal(got.stoppedBy, want.stoppedBy);
      assert.deepEqual(chained.tokens, stepwise.tokens, 'the KV cache holds the same tokens');
      assert.ok(!chained.tokens.includes(-1));
    }

    // A stop token met mid-answer: the step chained after it fed it ahead; the model forgets it.
    stepwise.reset();
    const free = await run(stepwise, prompt, { maxTokens: 10, temperature: 1.1, seed: 5 });
    const stop = free.tokens[4]!;
    const first = free.tokens.indexOf(stop);
    const options = { maxTokens: 10, temperature: 1.1, seed: 5, stopTokens: [stop] };
    stepwise.reset();
    chained.reset();
    const want = await run(stepwise, prompt, options);
    const got = await run(chained, prompt, options);
    assert.equal(got.stoppedBy, 'stop-token');
    assert.deepEqual(got.tokens, free.tokens.slice(0, first));
    assert.deepEqual(got.tokens, want.tokens);
    assert.deepEqual(chained.tokens, stepwise.tokens);
    assert.equal(chained.position, prompt.length + first);

    // The next turn reuses the same cache and continues the same way.
    const more = [...prompt, ...got.tokens, ...tokenizer.encode(' And then', { addBos: false })];
    const wantMore = await run(stepwise, more, { maxTokens: 6 });
    const gotMore = await run(chained, more, { maxTokens: 6 });
    assert.equal(gotMore.reusedTokens, wantMore.reusedTokens);
    assert.deepEqual(gotMore.tokens, wantMore.tokens);
  });

  test('a chained generation reaches the end of the context as step-by-step does', async () => {
    const prompt = tokenizer.encode(PROMPT);
    stepwise.reset();
    chained.reset();
    const want = await run(stepwise, prompt, { maxTokens: 200 });
    const got = await run(chained, prompt, { maxTokens: 200 });
    assert.equal(want.stoppedBy, 'context-full');
    assert.equal(got.stoppedBy, 'context-full');
    assert.deepEqual(got.tokens, want.tokens);
    assert.deepEqual(chained.tokens, stepwise.tokens);
  });

  test('cancelling with a chained step in flight leaves a usable model with known tokens', async () => {
    const prompt = tokenizer.encode(PROMPT);
    stepwise.reset();
    const want = await run(stepwise, prompt, { maxTokens: 8 });
    chained.reset();
    const controller = new AbortController();
    const it = generate(chained, tokenizer, prompt, { maxTokens: 8, signal: controller.signal });
    const seen: number[] = [];
    await assert.rejects(async () => {
      for (;;) {
        const step = await it.next();
        if (step.done) break;
        seen.push(step.value.id);
        if (seen.length === 3) controller.abort();
      }
    }, isCode('aborted'));
    assert.deepEqual(seen, want.tokens.slice(0, 3));
    assert.ok(!chained.tokens.includes(-1));
    assert.deepEqual(chained.tokens, [...prompt, ...seen.slice(0, chained.position - prompt.length)]);
    // It carries on from what it holds.
    const again = await run(chained, prompt, { maxTokens: 8 });
    assert.deepEqual(again.tokens, want.tokens);
  });

  test('steps that cannot be chained are refused before any work', async () => {
    const prompt = tokenizer.encode(PROMPT).slice(0, 8);
    chained.reset();
    const first = await chained.startSample(prompt, {}, [], 0.5);
    await assert.rejects(chained.chainSample(first, { repetitionPenalty: 1.2 }, 0.5), isCode('bad-argument'));
    await assert.rejects(chained.chainSample(first, { temperature: -1 }, 0.5), isCode('bad-argument'));
    const second = await chained.chainSample(first, {}, 0.5);
    assert.equal(chained.position, prompt.length + 1);
    // Only the last sample may be chained from.
    await assert.rejects(chained.chainSample(first, {}, 0.5), isCode('bad-argument'));
    const a = await first.read();
    const b = await second.read();
    assert.deepEqual(chained.tokens, [...prompt, a.id]);
    // …and nothing may be fed in between.
    await chained.feed([b.id], { logits: 'none' });
    await assert.rejects(chained.chainSample(second, {}, 0.5), isCode('bad-argument'));
    stepwise.reset();
    const s = await stepwise.startSample(prompt, {}, [], 0.5);
    await assert.rejects(stepwise.chainSample(s, {}, 0.5), isCode('unsupported'));
    await s.read();
  });
});
