// Sampling: the CPU reference (src/core/sampling.ts) on hand-computed examples, and the GPU sampler
// (src/core/gpu/sampler.ts) against it on Dawn; the GPU checks also run in Chromium
// (test/browser/sampler.test.ts). On machines without a GPU, VK_ICD_FILENAMES points Dawn at
// SwiftShader (see package.json).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { create, globals } from 'webgpu';
import { RullamaError } from '../../src/core/errors.js';
import { openDevice } from '../../src/core/gpu/device.js';
import { PipelineCache } from '../../src/core/gpu/pipelines.js';
import { keyToFloat } from '../../src/core/gpu/sampler.js';
import {
  SeededRandom,
  checkSamplingOptions,
  drawFrom,
  sampleToken,
  sampleTokenAt,
  samplingDistribution,
  samplingEntries,
  type SamplingOptions,
} from '../../src/core/sampling.js';
import { BAD_SAMPLER_CODES, badSamplerCodes, compareWithCpu, describeReport, distributionCheck } from '../shared/sampler-case.js';

Object.assign(globalThis, globals);

const f32 = Math.fround;
const L = (xs: number[]) => Float32Array.from(xs);
/** log-softmax of float32 values in float64. */
const logSoftmax = (xs: number[], i: number) => {
  const v = xs.map(f32);
  const m = Math.max(...v);
  return v[i]! - m - Math.log(v.reduce((s, x) => s + Math.exp(x - m), 0));
};
const kept = (logits: Float32Array, options: SamplingOptions, recent: number[] = []) => [...samplingDistribution(logits, options, recent).ids];
const close = (a: number, b: number, tol = 1e-12) => assert.ok(Math.abs(a - b) <= tol, `${a} vs ${b}`);
/** Logits whose softmax at temperature 1 is p. */
const fromProbs = (p: number[]) => L(p.map(Math.log));

describe('CPU sampler semantics', () => {
  it('greedy: the lowest index of the max score, logprob of the raw logits', () => {
    const x = [1, 3, 3, 2];
    const t = sampleTokenAt(L(x), {}, [], 0.99);
    assert.equal(t.id, 1);
    close(t.logprob, logSoftmax(x, 1));
  });

  it('greedy draws no random number; sampling draws one per token', () => {
    const a = new SeededRandom(7);
    const b = new SeededRandom(7);
    sampleToken(L([1, 2]), {}, a);
    assert.equal(a.next(), b.next());
    const c = new SeededRandom(7);
    const d = new SeededRandom(7);
    sampleToken(L([1, 2]), { temperature: 1 }, c);
    d.next();
    assert.equal(c.next(), d.next());
  });

  it('SeededRandom is deterministic and uniform enough', () => {
    const a = new SeededRandom(123);
    const b = new SeededRandom(123);
    let sum = 0;
    for (let i = 0; i < 10000; i++) {
      const x = a.next();
      assert.equal(x, b.next());
      assert.ok(x >= 0 && x < 1);
      sum += x;
    }
    close(sum / 10000, 0.5, 0.02);
  });

  it('logit bias is added before everything; logprob ignores it', () => {
    const x = [1, 3, 2];
    const t = sampleTokenAt(L(x), { logitBias: { 0: 2.5 } }, [], 0);
    assert.equal(t.id, 0);
    close(t.logprob, logSoftmax(x, 0));
    assert.equal(sampleTokenAt(L(x), { logitBias: new Map([[1, -1.5]]) }, [], 0).id, 2);
    // Scores: 3 − 1.5 = 1.5 for token 1.
    assert.equal(samplingDistribution(L(x), { logitBias: { 1: -1.5 } }).scores[1], 1.5);
  });

  it('repetition penalty divides positive and multiplies negative scores of window tokens, once per distinct token', () => {
    const d = samplingDistribution(L([2, 1.9, -1, -1.5, 4]), { repetitionPenalty: 2 }, [0, 0, 2, 2, 2]);
    assert.deepEqual([...d.scores], [1, 1.9, -2, -1.5, 4].map(f32));
    assert.equal(sampleTokenAt(L([2, 1.9]), { repetitionPenalty: 2 }, [0], 0).id, 1);
    assert.equal(sampleTokenAt(L([-1, -1.5]), { repetitionPenalty: 2 }, [0], 0).id, 1);
  });

  it('presence and frequency penalties subtract c·frequency + presence after the repetition penalty', () => {
    const d = samplingDistribution(L([3, 2.5, 0, 1]), { presencePenalty: 0.25, frequencyPenalty: 0.5, repetitionPenalty: 1.5 }, [0, 0, 3]);
    // token 0: 3 / 1.5 − (2·0.5 + 0.25) = 0.75; token 3: 1 / 1.5 − 0.75
    assert.equal(d.scores[0], f32(f32(2) - 1.25));
    assert.equal(d.scores[3], f32(f32(f32(1) / f32(1.5)) - 0.75));
    assert.equal(d.scores[1], 2.5);
    assert.equal(d.argmax, 1);
  });

  it('bias applies before the repetition penalty', () => {
    // (−1 + 3) = 2 > 0 → 2 / 2 = 1
    assert.equal(samplingDistribution(L([-1, 0]), { logitBias: { 0: 3 }, repetitionPenalty: 2 }, [0]).scores[0], 1);
  });

  it('penalty entries: distinct window tokens with counts plus biased tokens, sorted by id', () => {
    const o = checkSamplingOptions({ presencePenalty: 1, logitBias: { 9: 1, 2: -1 } }, 10);
    assert.deepEqual(samplingEntries(o, [5, 2, 5, 5], 10), [
      { id: 2, count: 1, bias: -1 },
      { id: 5, count: 3, bias: 0 },
      { id: 9, count: 0, bias: 1 },
    ]);
    // Without a penalty the window changes nothing.
    assert.deepEqual(samplingEntries(checkSamplingOptions({}, 10), [5, 2], 10), []);
  });

  it('temperature scales the weights exp((s − max)/T)', () => {
    const d = samplingDistribution(L([0, Math.log(3)]), { temperature: 2 });
    assert.deepEqual([...d.ids], [0, 1]);
    close(d.weights[1]!, 1);
    close(d.weights[0]!, Math.exp(-f32(Math.log(3)) / 2));
  });

  it('the draw walks kept tokens in index order: first running weight above r·W', () => {
    const x = fromProbs([0.25, 0.75]);
    const d = samplingDistribution(x, { temperature: 1 });
    assert.equal(drawFrom(d, 0.2), 0);
    assert.equal(drawFrom(d, 0.3), 1);
    assert.equal(drawFrom(d, 0.999), 1);
    assert.equal(drawFrom(d, 0), 0);
    assert.equal(sampleTokenAt(x, { temperature: 1 }, [], 0.2).id, 0);
  });

  it('top-k keeps the k largest, with every tie at the k-th', () => {
    assert.deepEqual(kept(L([0, 1, 2, 3]), { temperature: 1, topK: 2 }), [2, 3]);
    assert.deepEqual(kept(L([1, 2, 2, 0]), { temperature: 1, topK: 2 }), [1, 2]);
    assert.deepEqual(kept(L([1, 2, 2, 0]), { temperature: 1, topK: 1 }), [1, 2]);
    assert.deepEqual(kept(L([1, 2, 2, 0]), { temperature: 1, topK: 3 }), [0, 1, 2]);
    assert.deepEqual(kept(L([1, 2, 2, 0]), { temperature: 1, topK: 9 }), [0, 1, 2, 3]);
    const d = samplingDistribution(L([0, 1, 2, 3]), { temperature: 1, topK: 2 });
    close(d.weights[0]!, Math.exp(-1));
    close(d.total, 1 + Math.exp(-1));
  });

  it('min-p keeps p ≥ minP · p_max', () => {
    const x = fromProbs([0.5, 0.3, 0.15, 0.05]);
    assert.deepEqual(kept(x, { temperature: 1, minP: 0.2 }), [0, 1, 2]);
    assert.deepEqual(kept(x, { temperature: 1, minP: 0.5 }), [0, 1]);
    assert.deepEqual(kept(x, { temperature: 1, minP: 1 }), [0]);
    // At temperature 2 the probabilities flatten: p ∝ sqrt(p1), 0.05 → sqrt(0.1) = 0.316 of the max.
    assert.deepEqual(kept(x, { temperature: 2, minP: 0.3 }), [0, 1, 2, 3]);
  });

  it('top-p keeps the largest tokens until their mass reaches p', () => {
    const x = fromProbs([0.15, 0.5, 0.05, 0.3]);
    assert.deepEqual(kept(x, { temperature: 1, topP: 0.45 }), [1]);
    assert.deepEqual(kept(x, { temperature: 1, topP: 0.75 }), [1, 3]);
    assert.deepEqual(kept(x, { temperature: 1, topP: 0.9 }), [0, 1, 3]);
    assert.deepEqual(kept(x, { temperature: 1, topP: 0.99 }), [0, 1, 2, 3]);
    // Ties enter together.
    assert.deepEqual(kept(fromProbs([0.3, 0.3, 0.4]), { temperature: 1, topP: 0.5 }), [0, 1, 2]);
  });

  it('top-p renormalises over what top-k and min-p kept', () => {
    const x = fromProbs([0.4, 0.3, 0.2, 0.1]);
    assert.deepEqual(kept(x, { temperature: 1, topP: 0.5 }), [0, 1]);
    // top-k 2: 0.4/0.7 = 0.57 ≥ 0.5
    assert.deepEqual(kept(x, { temperature: 1, topK: 2, topP: 0.5 }), [0]);
    // min-p 0.4 keeps p ≥ 0.16: 0.4/0.9 = 0.44 < 0.5
    assert.deepEqual(kept(x, { temperature: 1, minP: 0.4, topP: 0.5 }), [0, 1]);
  });

  it('filters combine as the intersection, and the draw and logprob follow', () => {
    const x = fromProbs([0.1, 0.4, 0.2, 0.3]);
    const o = { temperature: 1, topK: 3, topP: 0.65 };
    assert.deepEqual(kept(x, o), [1, 3]);
    // Weights 0.4, 0.3 (relative 1, 0.75): r < 1/1.75 → 1, else 3.
    assert.equal(sampleTokenAt(x, o, [], 0.5).id, 1);
    const t = sampleTokenAt(x, o, [], 0.6);
    assert.equal(t.id, 3);
    close(t.logprob, Math.log(0.3), 1e-6);
  });

  it('rejects bad options with bad-argument', () => {
    const bad: SamplingOptions[] = [
      { temperature: -1 },
      { temperature: NaN },
      { temperature: Infinity },
      { topK: 1.5 },
      { topK: -1 },
      { topP: 0 },
      { topP: 1.5 },
      { minP: -0.1 },
      { minP: 2 },
      { repetitionPenalty: 0 },
      { repetitionPenalty: -1 },
      { presencePenalty: Infinity },
      { frequencyPenalty: NaN },
      { logitBias: { 0: NaN } },
      { logitBias: { 4: 1 } },
      { logitBias: new Map([[-1, 1]]) },
      { logitBias: new Map([[1.5, 1]]) },
      { logitBias: { abc: 1 } as unknown as Record<number, number> },
    ];
    for (const o of bad) {
      assert.throws(() => sampleToken(L([1, 2, 3, 4]), { temperature: 1, ...o }, new SeededRandom(1)), (e: unknown) => e instanceof RullamaError && e.code === 'bad-argument', JSON.stringify(o));
    }
    assert.throws(() => sampleTokenAt(L([1, 2]), { presencePenalty: 1 }, [2], 0.5), (e: unknown) => e instanceof RullamaError && e.code === 'bad-argument');
    assert.throws(() => sampleTokenAt(L([1, 2]), { temperature: 1 }, [], 1), (e: unknown) => e instanceof RullamaError && e.code === 'bad-argument');
  });

  it('GPU threshold keys decode to floats', () => {
    assert.equal(keyToFloat(0), -Infinity);
    assert.equal(keyToFloat(0x80000000), 0);
    assert.equal(keyToFloat(0x80000000 | 0x3f800000), 1);
    assert.equal(keyToFloat(~0xbf800000 >>> 0), -1);
  });
});

describe('GPU sampler on Dawn', () => {
  // Kept referenced for the whole suite: if the GPU object is collected, Dawn's instance goes with it.
  let gpu: GPU;
  let device: GPUDevice;
  let pipelines: PipelineCache;
  let adapter = '';

  before(async () => {
    gpu = create([]);
    const opened = await openDevice({ gpu });
    device = opened.device;
    adapter = opened.description;
    pipelines = new PipelineCache(device);
  });

  after(() => {
    device.destroy();
    void gpu;
  });

  for (const [V, kinds, draws] of [
    [1000, ['normal', 'ties', 'peaky'], 4],
    [50257, ['normal', 'ties', 'peaky'], 2],
  ] as const) {
    it(`matches the CPU at V = ${V}`, async () => {
      const report = await compareWithCpu(device, pipelines, { vocabSize: V, kinds, draws, seed: V });
      console.log(`  V=${V} on ${adapter}: ${describeReport(report)}`);
      assert.ok(report.samples > 0);
      assert.deepEqual(report.failures, [], describeReport(report));
      assert.ok(report.exact >= 0.9 * report.samples, describeReport(report));
    });
  }

  it('matches the CPU at V = 262144 (Gemma 4)', async () => {
    const wanted = new Set(['greedy + penalties + bias', 'temperature 1', 'top-k 40', 'top-k V-1', 'top-p 0.9', 'min-p 0.05', 'all + penalties + bias']);
    const report = await compareWithCpu(device, pipelines, { vocabSize: 262144, kinds: ['normal'], draws: 2, seed: 9, only: (n) => wanted.has(n) });
    console.log(`  V=262144 on ${adapter}: ${describeReport(report)}`);
    assert.equal(report.samples, 14);
    assert.deepEqual(report.failures, [], describeReport(report));
  });

  it('draws each token as often as the CPU distribution says (stratified r)', async () => {
    const r = await distributionCheck(device, pipelines);
    assert.ok(r.support >= 5, `support ${r.support}`);
    assert.equal(r.outside, 0);
    assert.ok(r.maxDeviation <= r.bound, `max deviation ${r.maxDeviation} > ${r.bound}`);
  });

  it('refuses bad arguments', async () => {
    assert.deepEqual(await badSamplerCodes(device, pipelines), BAD_SAMPLER_CODES);
  });
});
