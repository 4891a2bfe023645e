// The public engine (src/core/engine.ts) on a tiny fixture through Dawn: generation and its
// stats, multi-turn reuse of the KV cache, dropping old turns, state snapshots (round trip and
// refusal of bad ones), cancellation during prefill and decode, a lost device, and dispose.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Engine, type ChatOptions } from '../../src/core/engine.js';
import { Gemma4Model } from '../../src/core/model/model.js';
import { RullamaError } from '../../src/core/errors.js';
import { nodeFileSource } from '../../src/core/gguf/node-source.js';
import { bytesSource, type ByteSource } from '../../src/core/gguf/source.js';
import type { ChatMessage } from '../../src/core/chat/index.js';
import { OllamaStore } from '../../src/core/ollama/index.js';
import { fromNodePath } from '../../src/core/ollama/node-dir.js';
import { writeOllamaStore, writeTinyModel } from '../fixtures/index.js';
import { openDawnDevice } from '../shared/dawn.js';

let device: GPUDevice;
let dir: string;
let source: ByteSource & { close(): Promise<void> };
let otherSource: ByteSource & { close(): Promise<void> };
let engine: Engine;

const CONTEXT = 96;
const PROMPT = 'The quick brown fox jumps over the lazy dog, and then it runs into the forest where the old oak trees grow tall.';
const isCode = (code: string) => (e: unknown) => e instanceof RullamaError && e.code === code;

async function tokensOf(g: AsyncIterable<{ id: number }>): Promise<number[]> {
  const ids: number[] = [];
  for await (const t of g) ids.push(t.id);
  return ids;
}

before(async () => {
  device = (await openDawnDevice()).device;
  dir = await mkdtemp(join(tmpdir(), 'rullama-engine-'));
  source = await nodeFileSource((await writeTinyModel('tiny-e2b', dir)).path);
  // Same shapes, other weights: its snapshots must not restore into the first model.
  const other = await mkdtemp(join(dir, 'other-'));
  otherSource = await nodeFileSource((await writeTinyModel('tiny-e2b', other, 2)).path);
  engine = await Engine.load(source, { device, contextSize: CONTEXT, prefillChunk: 16 });
});
after(async () => {
  await engine.dispose();
  await source.close();
  await otherSource.close();
  device.destroy();
  await rm(dir, { recursive: true, force: true });
});

describe('Engine', () => {
  test('load from an Ollama store reports progress; generate streams tokens and ends with stats', async () => {
    const phases: string[] = [];
    const { root } = await writeOllamaStore(join(dir, 'ollama'));
    const store = new OllamaStore(fromNodePath(root));
    const e = await Engine.load({ ollama: store, model: 'gemma4-tiny' }, { device, contextSize: 48, onProgress: (p) => phases.push(p.phase) });
    assert.deepEqual([...new Set(phases)], ['open', 'weights', 'kernels', 'ready']);
    // The same text weights as the file the shared engine loaded (the store's blob also holds a vision tower).
    engine.reset();
    assert.deepEqual((await e.generate(PROMPT, { maxTokens: 3 }).result).tokens, (await engine.generate(PROMPT, { maxTokens: 3 }).result).tokens);
    e.reset();
    const g = e.generate(PROMPT, { maxTokens: 6 });
    const events = [];
    for await (const t of g) events.push(t);
    const { stats, text, tokens } = await g.result;
    assert.equal(events.length, 6);
    assert.deepEqual(tokens, events.map((t) => t.id));
    assert.equal(text, events.map((t) => t.text).join(''));
    assert.ok(events.every((t) => t.logprob <= 0 && Number.isFinite(t.logprob)));
    assert.equal(stats.stoppedBy, 'max-tokens');
    assert.equal(stats.reusedTokens, 0);
    assert.equal(stats.prefilledTokens, stats.promptTokens);
    assert.ok(stats.prefillTokensPerSecond > 0 && stats.decodeTokensPerSecond > 0 && stats.timeToFirstTokenMs > 0);
    // `result` alone runs a generation to its end; a seed makes sampling repeatable.
    const sampled = { maxTokens: 8, temperature: 1.5, topK: 40, seed: 7 };
    const a = await e.generate(PROMPT, sampled).result;
    e.reset();
    const b = await e.generate(PROMPT, sampled).result;
    assert.deepEqual(a.tokens, b.tokens);
    assert.notDeepEqual(a.tokens, (await e.generate(PROMPT, { ...sampled, seed: 8 }).result).tokens);
    await e.dispose();
    assert.throws(() => e.generate(PROMPT), isCode('bad-argument'));
    // A cut or damaged file is a typed error, and nothing is left on the GPU or open.
    const head = await source.read(0, 4096);
    // (The reader sees a 4 KiB file whose vocabulary cannot fit: a bad GGUF, or truncated if cut elsewhere.)
    await assert.rejects(Engine.load(bytesSource(head), { device }), (e) => isCode('truncated')(e) || isCode('bad-gguf')(e));
    const damaged = head.slice();
    damaged.set([0xff, 0xff, 0xff, 0x7f], 8); // an absurd tensor count
    await assert.rejects(Engine.load(bytesSource(damaged), { device }), isCode('bad-gguf'));
    // Buffers beyond the device's limits are refused up front (here every-token logits of a 129-token block).
    const limit = Math.min(device.limits.maxStorageBufferBindingSize, device.limits.maxBufferSize);
    const chunk = Math.floor(limit / (262144 * 4)) + 1;
    await assert.rejects(Gemma4Model.load(device, source, { contextSize: chunk, prefillChunk: chunk, allLogits: true }), isCode('oom'));
  });

  test('a follow-up turn prefills only its new tokens and answers as a fresh engine would', async () => {
    const options: ChatOptions = { maxTokens: 5 };
    engine.reset();
    const turn1: ChatMessage[] = [{ role: 'user', content: 'Tell me about the fox.' }];
    const first = await engine.chat(turn1, options).result;
    assert.equal(first.stats.reusedTokens, 0);
    const turn2: ChatMessage[] = [...turn1, { role: 'assistant', content: first.text }, { role: 'user', content: 'And the dog?' }];
    const second = await engine.chat(turn2, options).result;
    assert.ok(second.stats.reusedTokens >= first.stats.promptTokens, `reused ${second.stats.reusedTokens} of ${first.stats.promptTokens}`);
    assert.equal(second.stats.prefilledTokens, second.stats.promptTokens - second.stats.reusedTokens);
    engine.reset();
    const fresh = await engine.chat(turn2, options).result;
    assert.equal(fresh.stats.reusedTokens, 0);
    assert.deepEqual(second.tokens, fresh.tokens);
  });

  test('conversations share the weights, keep their own caches and take turns on the GPU', async () => {
    engine.reset();
    const expectedA = await engine.generate(PROMPT, { maxTokens: 5 }).result;
    const turn: ChatMessage[] = [{ role: 'user', content: 'Hello there' }];
    const expectedB = await engine.chat(turn, { maxTokens: 5 }).result;
    engine.reset();
    const second = await engine.createConversation({ contextSize: 48 });
    assert.equal(engine.gpuBytes, engine.model.gpuBytes + second.model.sessionBytes, 'one copy of the weights');
    // Both at once: the steps interleave (each waits for the other's token), the results do not mix.
    const order: string[] = [];
    const run = async (g: AsyncIterable<{ id: number }>, tag: string) => {
      const ids: number[] = [];
      for await (const t of g) {
        ids.push(t.id);
        order.push(tag);
      }
      return ids;
    };
    const [a, b] = await Promise.all([run(engine.generate(PROMPT, { maxTokens: 5 }), 'a'), run(second.chat(turn, { maxTokens: 5 }), 'b')]);
    assert.deepEqual(a, expectedA.tokens);
    assert.deepEqual(b, expectedB.tokens);
    assert.ok(order.slice(0, 6).includes('a') && order.slice(0, 6).includes('b'), `turns: ${order.join('')}`);
    await second.dispose();
    assert.throws(() => second.generate(PROMPT), isCode('bad-argument'));
    assert.deepEqual((await engine.generate(PROMPT, { maxTokens: 5 }).result).tokens, expectedA.tokens);
  });

  test('a conversation that outgrows the context is refused, or loses its oldest turns', async () => {
    const long: ChatMessage[] = [{ role: 'system', content: 'Be brief.' }];
    for (let i = 0; i < 6; i++) {
      long.push({ role: 'user', content: `Question ${i}: what do foxes and dogs eat in the forest?` }, { role: 'assistant', content: `Answer ${i}: mostly small animals and berries.` });
    }
    long.push({ role: 'user', content: 'Last question?' });
    assert.throws(() => engine.chat(long, { maxTokens: 4 }), isCode('context-overflow'));
    const g = engine.chat(long, { maxTokens: 4, overflow: 'drop-oldest' });
    const result = await g.result;
    assert.ok(result.droppedMessages >= 2 && result.droppedMessages % 2 === 0, `dropped ${result.droppedMessages}`);
    assert.ok(result.stats.promptTokens + 4 <= CONTEXT);
    assert.equal(result.tokens.length, 4);
    // Generation that reaches the end of the context stops there.
    engine.reset();
    const full = await engine.generate(PROMPT, { maxTokens: 200 }).result;
    assert.equal(full.stats.stoppedBy, 'context-full');
    assert.equal(full.stats.promptTokens + full.tokens.length, CONTEXT);
  });

  test('a snapshot restores exactly: continuing gives the tokens an uninterrupted run gives', async () => {
    for (const sampling of [{}, { temperature: 1.2, topP: 0.9, seed: 11, repetitionPenalty: 1.3 }]) {
      engine.reset();
      const whole = await engine.generate(PROMPT, { ...sampling, maxTokens: 16 }).result;
      engine.reset();
      const head = await engine.generate(PROMPT, { ...sampling, maxTokens: 8 }).result;
      assert.deepEqual(head.tokens, whole.tokens.slice(0, 8));
      const state = await engine.saveState();
      engine.reset();
      // Restore into another engine with another context size and prefill chunk.
      const other = await Engine.load(source, { device, contextSize: 64, prefillChunk: 8 });
      await other.loadState(state);
      const prompt = [...other.tokenize(PROMPT), ...head.tokens];
      const tail = await other.generate(prompt, { ...sampling, maxTokens: 8 }).result;
      assert.equal(tail.stats.prefilledTokens, 1, 'only the last generated token is new');
      assert.deepEqual(tail.tokens, whole.tokens.slice(8), JSON.stringify(sampling));
      await other.dispose();
    }
  });

  test('bad snapshots are refused and leave the state untouched', async () => {
    engine.reset();
    const head = await engine.generate(PROMPT, { maxTokens: 4 }).result;
    const good = await engine.saveState();
    const expected = await engine.generate([...engine.tokenize(PROMPT), ...head.tokens], { maxTokens: 4 }).result;
    // Back to the saved state, then try every bad kind of snapshot on it.
    await engine.loadState(good);
    const otherEngine = await Engine.load(otherSource, { device, contextSize: CONTEXT });
    await otherEngine.generate(PROMPT, { maxTokens: 2 }).result;
    const foreign = await otherEngine.saveState();
    await otherEngine.dispose();
    const corrupt = good.slice();
    corrupt[Math.floor(corrupt.length / 2)]! ^= 0x10;
    const version = good.slice();
    version[4] = 9;
    const cases: [string, Uint8Array][] = [
      ['from another model', foreign],
      ['truncated', good.slice(0, good.length - 100)],
      ['corrupted', corrupt],
      ['of another version', version],
      ['not a snapshot', new TextEncoder().encode('GGUF and some other bytes, long enough to pass the size check')],
      ['empty', new Uint8Array(0)],
    ];
    for (const [what, bytes] of cases) {
      await assert.rejects(engine.loadState(bytes), isCode('bad-snapshot'), what);
    }
    const small = await Engine.load(source, { device, contextSize: 16 });
    await assert.rejects(small.loadState(good), isCode('context-overflow'));
    await small.dispose();
    const after = await engine.generate([...engine.tokenize(PROMPT), ...head.tokens], { maxTokens: 4 }).result;
    assert.equal(after.stats.prefilledTokens, 1);
    assert.deepEqual(after.tokens, expected.tokens);
  });

  test('cancellation stops prefill within a layer and decode at once; the engine stays usable', async () => {
    engine.reset();
    const expected = await engine.generate(PROMPT, { maxTokens: 6 }).result;
    engine.reset();
    // Prefill: the prompt is several blocks; abort as soon as the first block starts.
    const controller = new AbortController();
    const g = engine.generate(PROMPT, { maxTokens: 6, signal: controller.signal });
    setTimeout(() => controller.abort(), 0);
    await assert.rejects(tokensOf(g), isCode('aborted'));
    assert.ok(engine.model.position < engine.tokenize(PROMPT).length, `prefill went on to ${engine.model.position}`);
    // Decode: abort after the third token.
    const decode = new AbortController();
    const seen: number[] = [];
    await assert.rejects(async () => {
      for await (const t of engine.generate(PROMPT, { maxTokens: 6, signal: decode.signal })) {
        seen.push(t.id);
        if (seen.length === 3) decode.abort();
      }
    }, isCode('aborted'));
    assert.deepEqual(seen, expected.tokens.slice(0, 3));
    // And a normal generation afterwards is unchanged.
    assert.deepEqual((await engine.generate(PROMPT, { maxTokens: 6 }).result).tokens, expected.tokens);
  });

  test('a lost device gives a typed error; loading again on a new device recovers', async () => {
    const own = (await openDawnDevice()).device;
    const e = await Engine.load(source, { device: own, contextSize: 48 });
    const expected = await e.generate(PROMPT, { maxTokens: 3 }).result;
    own.destroy();
    await own.lost;
    await assert.rejects(e.generate(PROMPT, { maxTokens: 3 }).result, isCode('device-lost'));
    await assert.rejects(e.saveState(), isCode('device-lost'));
    await e.dispose();
    const fresh = (await openDawnDevice()).device;
    const again = await Engine.load(source, { device: fresh, contextSize: 48 });
    assert.deepEqual((await again.generate(PROMPT, { maxTokens: 3 }).result).tokens, expected.tokens);
    await again.dispose();
    fresh.destroy();
  });
});
