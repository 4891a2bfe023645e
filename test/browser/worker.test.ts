import { expect } from '@open-wc/testing';
import { RullamaClient, type RemoteConversation } from '../../src/client/client.js';
import { BOS_TEXT, renderChat } from '../../src/core/chat/index.js';
import type { LoadProgressDetail } from '../../src/worker/protocol.js';

// Written by scripts/test-fixtures.ts before the browser suite runs; served with HTTP Range.
const MODEL = '/test-output/fixtures/tiny-e2b.gguf';
const ASK = [{ role: 'user' as const, content: 'Name three colours of the sea.' }];
// LoRA adapters for it (scripts/test-fixtures.ts): one that fits, one made for wider weights.
const ADAPTER = '/test-output/fixtures/tiny-e2b-lora.gguf';
const MISFIT = '/test-output/fixtures/tiny-e2b-lora-misfit.gguf';

async function rejection(p: Promise<unknown>): Promise<{ code?: string; message: string }> {
  try {
    await p;
  } catch (e) {
    return e as { code?: string; message: string };
  }
  throw new Error('expected a rejection');
}

describe('the engine worker (RullamaClient)', () => {
  it('loads a model in the worker, streams tokens, shares the weights between conversations (each with its own LoRA adapters) and frees them on the last release', async () => {
    const client = new RullamaClient();
    try {
      const phases: string[] = [];
      const a = client.acquire(MODEL, { contextSize: 64 });
      a.onProgress((p: LoadProgressDetail) => {
        if (phases[phases.length - 1] !== p.phase) phases.push(p.phase);
      });
      const b = client.acquire(new URL(MODEL, location.href));
      expect(client.loadedModels).to.deep.equal([{ key: `url:${new URL(MODEL, location.href).href}`, refs: 2, state: 'loading' }]);
      const info = await a.ready;
      expect(await b.ready).to.deep.equal(info);
      expect(phases.slice(-5)).to.deep.equal(['cached', 'open', 'weights', 'kernels', 'ready']);
      expect(info).to.include({ name: 'tiny-e2b.gguf', architecture: 'gemma4', contextSize: 64 });
      expect(info.gpuBytes).to.be.above(1e6);

      const one = await a.openConversation();
      const two = await b.openConversation({ contextSize: 48 });
      expect([one.contextSize, two.contextSize]).to.deep.equal([64, 48]);
      const tokens: string[] = [];
      const g = one.chat(ASK, { maxTokens: 3, temperature: 0.8, seed: 7 });
      for await (const t of g) tokens.push(t.text);
      const first = await g.result;
      expect(first.tokens).to.have.length(3);
      expect(tokens.join('')).to.equal(first.text);
      expect(first.stats.prefilledTokens).to.equal(first.stats.promptTokens);

      // The other conversation, same seed: the same answer, computed in its own KV cache.
      const second = await two.chat(ASK, { maxTokens: 3, temperature: 0.8, seed: 7 }).result;
      expect(second.tokens).to.deep.equal(first.tokens);
      // The first conversation's cache was untouched: asking again reuses all but one token.
      const again = await one.chat(ASK, { maxTokens: 3, temperature: 0.8, seed: 7 }).result;
      expect(again.tokens).to.deep.equal(first.tokens);
      expect(again.stats.reusedTokens).to.equal(again.stats.promptTokens - 1);

      // A snapshot crosses as bytes and restores into another conversation of the same size.
      const state = await one.saveState();
      expect(state.byteLength).to.be.above(100);
      // `one` holds the prompt and the first two answer tokens (the third was never fed).
      const fed = [...(await a.tokenize(renderChat(ASK).slice(BOS_TEXT.length))), ...again.tokens.slice(0, 2)];
      expect(fed.length).to.equal(again.stats.promptTokens + 2);
      const three = await b.openConversation();
      await three.loadState(state);
      const next = [...fed, again.tokens[2]!];
      const resumed = await three.generate(next, { maxTokens: 2, temperature: 0.8, seed: 5 }).result;
      expect(resumed.stats.reusedTokens).to.equal(fed.length);
      expect(resumed.stats.prefilledTokens).to.equal(1);
      expect(resumed.tokens).to.deep.equal((await one.generate(next, { maxTokens: 2, temperature: 0.8, seed: 5 }).result).tokens);

      expect(await a.tokenize('hello world')).to.deep.equal([2, 23391, 1902]);

      // LoRA adapters per conversation: a file is read once per model, the weights stay shared and untouched.
      const greedy = async (c: RemoteConversation) => (await c.chat(ASK, { maxTokens: 4, temperature: 0 }).result).tokens;
      const base = await greedy(one);
      expect(await one.setAdapters([{ source: ADAPTER }])).to.deep.equal({ read: 1 });
      expect(await three.setAdapters([{ source: new URL(ADAPTER, location.href) }])).to.deep.equal({ read: 0 });
      const tuned = await greedy(one);
      expect(tuned).to.not.deep.equal(base);
      expect((await one.chat(ASK, { maxTokens: 4, temperature: 0 }).result).stats.reusedTokens).to.be.above(0);
      expect(await greedy(three)).to.deep.equal(tuned);
      expect(await greedy(two)).to.deep.equal(base);
      // Refused with the core's code, changing nothing.
      expect((await rejection(three.setAdapters([{ source: MISFIT }]))).code).to.equal('bad-argument');
      expect((await rejection(three.setAdapters([{ source: '/test-output/fixtures/no-such-adapter.gguf' }]))).code).to.equal('not-found');
      expect(await greedy(three)).to.deep.equal(tuned);
      // A change asked for right before a generation applies to it; [] removes the adapters.
      void three.setAdapters([]);
      expect(await greedy(three)).to.deep.equal(base);
      // Once no conversation uses the file, it is forgotten (read again next time).
      expect(await one.setAdapters([])).to.deep.equal({ read: 0 });
      expect(await one.setAdapters([{ source: ADAPTER, scale: 0.5 }])).to.deep.equal({ read: 1 });

      a.release();
      expect(client.loadedModels[0]!.refs).to.equal(1);
      b.release();
      expect(client.loadedModels).to.deep.equal([]);
      expect((await rejection(one.chat(ASK, { maxTokens: 1 }).result)).code).to.equal('bad-argument');
    } finally {
      client.terminate();
    }
  });

  it('loads with the per-layer table on the GPU when asked, and answers the same', async () => {
    const plain = new RullamaClient();
    const table = new RullamaClient();
    try {
      const a = plain.acquire(MODEL, { contextSize: 64 });
      const b = table.acquire(MODEL, { contextSize: 64, perLayerTableOnGpu: true });
      const [infoA, infoB] = await Promise.all([a.ready, b.ready]);
      // tiny-e2b's table: 6 layers × 32 values × 262,144 tokens, uploaded as stored.
      expect(infoB.gpuBytes).to.be.above(infoA.gpuBytes + 1e6);
      const ask = async (ref: typeof a) => (await (await ref.openConversation()).chat(ASK, { maxTokens: 5 }).result).tokens;
      expect(await ask(b)).to.deep.equal(await ask(a));
    } finally {
      plain.terminate();
      table.terminate();
    }
  });

  it('loads with int8 prefill when asked, and answers greedily as with f32 prefill', async () => {
    const plain = new RullamaClient();
    const int8 = new RullamaClient();
    try {
      const a = plain.acquire(MODEL, { contextSize: 64 });
      const b = int8.acquire(MODEL, { contextSize: 64, int8Prefill: true });
      if (!navigator.gpu.wgslLanguageFeatures.has('packed_4x8_integer_dot_product')) {
        // Without dot4I8Packed the int8 matmuls do not compile: the load says so.
        expect((await rejection(b.ready)).code).to.equal('unsupported');
        return;
      }
      const [infoA, infoB] = await Promise.all([a.ready, b.ready]);
      expect([infoA.int8Prefill, infoB.int8Prefill]).to.deep.equal([false, true]);
      // tiny-e2b's K-quant matmuls (rows of 256: its wide layers' ffn_down) now take an 8-bit x: the prompt's logits
      // move by that rounding (the top one by about 1e-3 on SwiftShader, its lead over the
      // runner-up is 0.3), so the first greedy token agrees; later ones are not compared, as the
      // rounding may tip a near tie of a random model.
      const ask = async (ref: typeof a) => (await (await ref.openConversation()).chat(ASK, { maxTokens: 5, temperature: 0 }).result).tokens;
      const [want, got] = [await ask(a), await ask(b)];
      expect(got).to.have.length(5);
      expect(got[0]).to.equal(want[0]);
    } finally {
      plain.terminate();
      int8.terminate();
    }
  });

  it('cancels a load and a generation from the page', async () => {
    const client = new RullamaClient();
    try {
      const loading = client.acquire(MODEL, { contextSize: 64 });
      const failed = rejection(loading.ready);
      loading.release();
      expect((await failed).code).to.equal('aborted');

      // The file is in the OPFS cache now: no request, straight to the GPU.
      const ref = client.acquire(MODEL, { contextSize: 64 });
      const phases: string[] = [];
      ref.onProgress((p) => phases[phases.length - 1] !== p.phase && phases.push(p.phase));
      const conversation = await ref.openConversation();
      expect(phases).to.deep.equal(['cached', 'open', 'weights', 'kernels', 'ready']);
      const controller = new AbortController();
      const g = conversation.chat(ASK, { maxTokens: 50, signal: controller.signal });
      let n = 0;
      const error = await rejection(
        (async () => {
          for await (const _ of g) if (++n === 1) controller.abort();
        })(),
      );
      expect(error.code).to.equal('aborted');
      expect(n).to.be.below(4);
      // Still usable.
      expect((await conversation.chat(ASK, { maxTokens: 2 }).result).tokens).to.have.length(2);
      ref.release();
    } finally {
      client.terminate();
    }
  });

  it('reports a worker that cannot be loaded as an io error', async () => {
    const client = new RullamaClient({ workerUrl: '/no/such/worker.js' });
    const ref = client.acquire(MODEL);
    const error = await rejection(ref.ready);
    expect(error.code).to.equal('io');
    expect(error.message).to.match(/worker/);
  });
});
