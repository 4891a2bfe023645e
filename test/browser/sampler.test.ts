// The GPU sampler (src/core/gpu/sampler.ts) against the CPU reference (src/core/sampling.ts) in
// Chromium's WebGPU; the same checks run on Dawn in Node (test/node/sampler-dawn.test.ts), which
// also holds the CPU sampler's own unit tests.
import { expect } from '@open-wc/testing';
import { openDevice } from '../../src/core/gpu/device.js';
import { PipelineCache } from '../../src/core/gpu/pipelines.js';
import { BAD_SAMPLER_CODES, badSamplerCodes, compareWithCpu, describeReport, distributionCheck } from '../shared/sampler-case.js';

describe('GPU sampler in Chromium', () => {
  let device: GPUDevice;
  let pipelines: PipelineCache;

  before(async () => {
    ({ device } = await openDevice({ gpu: navigator.gpu }));
    pipelines = new PipelineCache(device);
  });

  after(() => {
    device.destroy();
  });

  for (const [V, kinds, draws] of [
    [1000, ['normal', 'ties', 'peaky'], 3],
    [50257, ['normal', 'ties'], 2],
  ] as const) {
    it(`matches the CPU at V = ${V}`, async () => {
      const report = await compareWithCpu(device, pipelines, { vocabSize: V, kinds, draws, seed: V + 17 });
      expect(report.samples).to.be.above(0);
      expect(report.failures, describeReport(report)).to.deep.equal([]);
      expect(report.exact, describeReport(report)).to.be.at.least(0.9 * report.samples);
    });
  }

  it('matches the CPU at V = 262144 (Gemma 4)', async () => {
    const wanted = new Set(['greedy', 'top-k 40', 'all + penalties + bias']);
    const report = await compareWithCpu(device, pipelines, { vocabSize: 262144, kinds: ['peaky'], draws: 2, seed: 31, only: (n) => wanted.has(n) });
    expect(report.samples).to.equal(6);
    expect(report.failures, describeReport(report)).to.deep.equal([]);
  });

  it('draws each token as often as the CPU distribution says (stratified r)', async () => {
    const r = await distributionCheck(device, pipelines);
    expect(r.support).to.be.at.least(5);
    expect(r.outside).to.equal(0);
    expect(r.maxDeviation).to.be.at.most(r.bound);
  });

  it('refuses bad arguments', async () => {
    expect(await badSamplerCodes(device, pipelines)).to.deep.equal(BAD_SAMPLER_CODES);
  });
});
