import { expect } from '@open-wc/testing';
import { Engine } from '../../src/core/engine.js';
import { RullamaError } from '../../src/core/errors.js';

// Written by scripts/test-fixtures.ts before the browser suite runs; served with HTTP Range.
const MODEL = '/test-output/fixtures/tiny-e2b.gguf';
const PROMPT = 'The fishermen pull their boats onto the sand and mend the nets after the storm.';

async function rejection(p: Promise<unknown>): Promise<RullamaError> {
  try {
    await p;
  } catch (e) {
    return e as RullamaError;
  }
  throw new Error('expected a rejection');
}

describe('Engine on Chromium WebGPU', () => {
  it('loads from a URL, generates, restores a snapshot exactly, and cancels', async () => {
    const phases = new Set<string>();
    const engine = await Engine.load(MODEL, { gpu: navigator.gpu, contextSize: 64, prefillChunk: 16, onProgress: (p) => phases.add(p.phase) });
    try {
      expect([...phases]).to.deep.equal(['open', 'weights', 'kernels', 'ready']);
      const whole = await engine.generate(PROMPT, { maxTokens: 8, temperature: 0.8, seed: 3 }).result;
      expect(whole.tokens).to.have.length(8);

      engine.reset();
      const head = await engine.generate(PROMPT, { maxTokens: 4, temperature: 0.8, seed: 3 }).result;
      const state = await engine.saveState();
      engine.reset();
      await engine.loadState(state);
      const tail = await engine.generate([...engine.tokenize(PROMPT), ...head.tokens], { maxTokens: 4, temperature: 0.8, seed: 3 }).result;
      expect(tail.stats.prefilledTokens).to.equal(1);
      expect([...head.tokens, ...tail.tokens]).to.deep.equal(whole.tokens);

      const corrupt = state.slice();
      corrupt[100]! ^= 1;
      expect((await rejection(engine.loadState(corrupt))).code).to.equal('bad-snapshot');

      engine.reset();
      const controller = new AbortController();
      const g = engine.generate(PROMPT, { maxTokens: 8, signal: controller.signal });
      setTimeout(() => controller.abort(), 0);
      expect((await rejection(g.result)).code).to.equal('aborted');
      const after = await engine.generate(PROMPT, { maxTokens: 8, temperature: 0.8, seed: 3 }).result;
      expect(after.tokens).to.deep.equal(whole.tokens);
    } finally {
      await engine.dispose();
    }
  });

  it('chains decode steps on the GPU with the per-layer table there, and answers as step by step', async () => {
    const stepwise = await Engine.load(MODEL, { gpu: navigator.gpu, contextSize: 64, prefillChunk: 16 });
    const chained = await Engine.load(MODEL, { gpu: navigator.gpu, contextSize: 64, prefillChunk: 16, perLayerTableOnGpu: true });
    try {
      expect(stepwise.model.chainable).to.equal(false);
      expect(chained.model.chainable).to.equal(true);
      for (const options of [{ maxTokens: 8 }, { maxTokens: 8, temperature: 0.8, topK: 20, seed: 3 }]) {
        stepwise.reset();
        chained.reset();
        const want = await stepwise.generate(PROMPT, options).result;
        const got = await chained.generate(PROMPT, options).result;
        expect(got.tokens).to.deep.equal(want.tokens);
        expect(chained.model.tokens).to.deep.equal(stepwise.model.tokens);
      }
      // A stop token met mid-answer: the step fed ahead is forgotten.
      stepwise.reset();
      const free = await stepwise.generate(PROMPT, { maxTokens: 8 }).result;
      const stop = free.tokens[3]!;
      stepwise.reset();
      chained.reset();
      const want = await stepwise.generate(PROMPT, { maxTokens: 8, stopTokens: [stop] }).result;
      const got = await chained.generate(PROMPT, { maxTokens: 8, stopTokens: [stop] }).result;
      expect(got.stats.stoppedBy).to.equal('stop-token');
      expect(got.tokens).to.deep.equal(want.tokens);
      expect(chained.model.tokens).to.deep.equal(stepwise.model.tokens);
    } finally {
      await stepwise.dispose();
      await chained.dispose();
    }
  });

  it('reports a lost device as device-lost', async () => {
    const adapter = await navigator.gpu.requestAdapter();
    const device = await adapter!.requestDevice();
    const engine = await Engine.load(MODEL, { device, contextSize: 32 });
    device.destroy();
    await device.lost;
    expect((await rejection(engine.generate(PROMPT, { maxTokens: 2 }).result)).code).to.equal('device-lost');
    await engine.dispose();
  });
});
