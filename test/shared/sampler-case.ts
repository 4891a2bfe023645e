// GPU sampler checks (src/core/gpu/sampler.ts) against the CPU reference (src/core/sampling.ts),
// shared by the Node (Dawn) and browser (Chromium WebGPU) suites.
//
// compareWithCpu: seeded random logits (normal, peaky, and coarsely rounded so that many scores tie),
// a grid of options (greedy, temperature, top-k, top-p, min-p, combinations, penalties over a window
// with repeated tokens, logit bias), several r each. For every sample:
//   - the kept set's threshold must be the CPU's exactly, unless top-p's decision was within 1e-5
//     of another threshold (the GPU sums the mass in another order; counted as topPNearTie);
//   - the id must be the CPU's, unless r·W lies within 1e-5·W of the GPU token's bucket (counted
//     as nearBoundary; a GPU token whose bucket is farther from r fails);
//   - logprob within 1e-4 of the float64 log-softmax of the raw logits; total kept weight within 1e-4.
// distributionCheck: on a small vocabulary, N stratified draws r_j = (j + ½)/N; each token's
// frequency must be its CPU probability to within 2/N (stratified draws leave at most one of
// discretisation per bucket edge).
import { uploadStorage } from '../../src/core/gpu/buffers.js';
import { PipelineCache } from '../../src/core/gpu/pipelines.js';
import { GpuSampler, type GpuSample } from '../../src/core/gpu/sampler.js';
import { RullamaError } from '../../src/core/errors.js';
import { drawFrom, samplingDistribution, type SamplingDistribution, type SamplingOptions } from '../../src/core/sampling.js';

export const R_TOLERANCE = 1e-5;
export const LOGPROB_TOLERANCE = 1e-4;

export type LogitKind = 'normal' | 'peaky' | 'ties';

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 0.5) / 2 ** 32;
}

/** Seeded logits: normal (σ 2), peaky (σ 4, a few spikes) or ties (σ 2 rounded to quarters, the max repeated). */
export function sampleLogits(V: number, seed: number, kind: LogitKind): Float32Array<ArrayBuffer> {
  const u = lcg(seed);
  const sigma = kind === 'peaky' ? 4 : 2;
  const out = new Float32Array(V);
  for (let i = 0; i < V; i++) out[i] = sigma * Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  if (kind === 'peaky') for (let j = 0; j < 3; j++) out[Math.floor(u() * V)] = 12 + 4 * u();
  if (kind === 'ties') {
    let max = -Infinity;
    for (let i = 0; i < V; i++) max = Math.max(max, (out[i] = Math.round(out[i]! * 4) / 4));
    for (let j = 0; j < 2; j++) out[Math.floor(u() * V)] = max; // ties at the argmax
  }
  return out;
}

export interface OptionCase {
  readonly name: string;
  readonly options: SamplingOptions;
  readonly recent: readonly number[];
}

/** The ids of the n largest logits, largest first. */
function topIds(logits: Float32Array, n: number): number[] {
  return Array.from(logits.keys())
    .sort((a, b) => logits[b]! - logits[a]! || a - b)
    .slice(0, n);
}

/** Options over one logits row: penalties and biases aim at its top tokens so that they change the outcome. */
export function optionGrid(logits: Float32Array, seed: number): OptionCase[] {
  const V = logits.length;
  const top = topIds(logits, 6);
  const u = lcg(seed ^ 0x5bd1e995);
  const randomIds = Array.from({ length: 12 }, () => Math.floor(u() * V));
  // A window with repeats: the top token three times, the second twice, some others.
  const window = [top[0]!, top[1]!, top[0]!, ...randomIds.slice(0, 6), top[0]!, top[1]!, top[3]!, randomIds[0]!, randomIds[0]!];
  const penalties = { repetitionPenalty: 1.3, presencePenalty: 0.4, frequencyPenalty: 0.25 };
  const bias = new Map<number, number>([
    [top[2]!, 1.5],
    [top[4]!, -50],
    [randomIds[7]!, 6],
  ]);
  return [
    { name: 'greedy', options: {}, recent: [] },
    { name: 'greedy + penalties + bias', options: { ...penalties, logitBias: bias }, recent: window },
    { name: 'temperature 1', options: { temperature: 1 }, recent: [] },
    { name: 'temperature 0.6', options: { temperature: 0.6 }, recent: [] },
    { name: 'top-k 40', options: { temperature: 0.8, topK: 40 }, recent: [] },
    { name: 'top-k 1', options: { temperature: 1.2, topK: 1 }, recent: [] },
    { name: 'top-k V-1', options: { temperature: 1, topK: V - 1 }, recent: [] },
    { name: 'top-k V+5', options: { temperature: 1, topK: V + 5 }, recent: [] },
    { name: 'top-p 0.9', options: { temperature: 1, topP: 0.9 }, recent: [] },
    { name: 'top-p 0.3 T1.5', options: { temperature: 1.5, topP: 0.3 }, recent: [] },
    { name: 'min-p 0.05', options: { temperature: 1, minP: 0.05 }, recent: [] },
    { name: 'min-p 1', options: { temperature: 0.7, minP: 1 }, recent: [] },
    { name: 'top-k 64 + top-p 0.95 + min-p 0.02', options: { temperature: 0.9, topK: 64, topP: 0.95, minP: 0.02 }, recent: [] },
    { name: 'all + penalties + bias', options: { temperature: 0.8, topK: 100, topP: 0.9, minP: 0.01, ...penalties, logitBias: bias }, recent: window },
    { name: 'frequency penalty', options: { temperature: 1, frequencyPenalty: 1.5 }, recent: [...window, ...window] },
    { name: 'repetition 2 + top-p', options: { temperature: 1, repetitionPenalty: 2, topP: 0.8 }, recent: window },
    { name: 'forcing bias', options: { temperature: 0.5, topP: 0.99, logitBias: { [randomIds[3]!]: 40 } }, recent: [] },
  ];
}

export interface CompareReport {
  samples: number;
  /** Samples where GPU and CPU chose the same id with the same threshold. */
  exact: number;
  /** Different ids with r·W within R_TOLERANCE·W of the GPU token's bucket. */
  nearBoundary: number;
  /** Different top-p thresholds where the CPU's top-p margin was below R_TOLERANCE. */
  topPNearTie: number;
  maxLogprobErr: number;
  maxTotalRelErr: number;
  failures: string[];
  /** Milliseconds per sample (encode, submit, read), GPU side only. */
  msPerSample: number;
}

/** The interval [start, end) / W of token id in the distribution's buckets, or null when not kept. */
function bucketOf(d: SamplingDistribution, id: number): [number, number] | null {
  let acc = 0;
  for (let j = 0; j < d.ids.length; j++) {
    const next = acc + d.weights[j]!;
    if (d.ids[j] === id) return [acc / d.total, next / d.total];
    acc = next;
  }
  return null;
}

/** Checks one GPU sample against the CPU; returns the failure message, or a category. */
function judge(d: SamplingDistribution, greedy: boolean, r: number, g: GpuSample, report: CompareReport): string | null {
  const lpErr = Math.abs(g.logprob - (g.id < d.scores.length ? d.logprob(g.id) : NaN));
  report.maxLogprobErr = Math.max(report.maxLogprobErr, Number.isNaN(lpErr) ? Infinity : lpErr);
  if (!(lpErr <= LOGPROB_TOLERANCE)) return `logprob ${g.logprob} vs ${d.logprob(g.id)} at id ${g.id}`;
  const cpuId = greedy ? d.argmax : drawFrom(d, r);
  if (g.threshold !== d.threshold) {
    if (d.topPMargin < R_TOLERANCE) {
      report.topPNearTie++;
      return null;
    }
    return `threshold ${g.threshold} vs CPU ${d.threshold} (top-p margin ${d.topPMargin})`;
  }
  if (!greedy) {
    const err = Math.abs(g.totalWeight - d.total) / d.total;
    report.maxTotalRelErr = Math.max(report.maxTotalRelErr, err);
    if (!(err <= LOGPROB_TOLERANCE)) return `total weight ${g.totalWeight} vs ${d.total}`;
  }
  if (g.id === cpuId) {
    report.exact++;
    return null;
  }
  if (greedy) return `greedy id ${g.id} vs ${cpuId}`;
  const bucket = bucketOf(d, g.id);
  if (!bucket) return `id ${g.id} is not kept (CPU ${cpuId})`;
  if (r >= bucket[0] - R_TOLERANCE && r <= bucket[1] + R_TOLERANCE) {
    report.nearBoundary++;
    return null;
  }
  return `id ${g.id} (bucket [${bucket[0]}, ${bucket[1]})) vs CPU ${cpuId} at r = ${r}`;
}

export interface CompareSpec {
  vocabSize: number;
  kinds: readonly LogitKind[];
  /** Draws per (kind, option); at most the sampler's slots, all in one submit. */
  draws: number;
  seed: number;
  /** Only the option cases whose names pass this filter (default all). */
  only?: (name: string) => boolean;
}

/** GPU vs CPU over the option grid for one vocabulary size. */
export async function compareWithCpu(device: GPUDevice, pipelines: PipelineCache, spec: CompareSpec): Promise<CompareReport> {
  const V = spec.vocabSize;
  const report: CompareReport = { samples: 0, exact: 0, nearBoundary: 0, topPNearTie: 0, maxLogprobErr: 0, maxTotalRelErr: 0, failures: [], msPerSample: 0 };
  const logitsBuffer = uploadStorage(device, new Float32Array(V), `logits ${V}`);
  const sampler = await GpuSampler.create(device, pipelines, { logits: logitsBuffer, vocabSize: V, slots: Math.max(2, spec.draws) });
  let gpuMs = 0;
  try {
    const u = lcg(spec.seed);
    for (const [k, kind] of spec.kinds.entries()) {
      const logits = sampleLogits(V, spec.seed * 7 + k, kind);
      device.queue.writeBuffer(logitsBuffer, 0, logits);
      for (const c of optionGrid(logits, spec.seed + k)) {
        if (spec.only && !spec.only(c.name)) continue;
        const d = samplingDistribution(logits, c.options, c.recent);
        const greedy = (c.options.temperature ?? 0) === 0;
        const rs = Array.from({ length: spec.draws }, () => u());
        const start = performance.now();
        const encoder = device.createCommandEncoder();
        const tickets = rs.map((r) => sampler.encode(encoder, c.options, c.recent, r));
        device.queue.submit([encoder.finish()]);
        const results: GpuSample[] = [];
        for (const t of tickets) results.push(await sampler.read(t));
        gpuMs += performance.now() - start;
        for (const [j, g] of results.entries()) {
          report.samples++;
          const problem = judge(d, greedy, rs[j]!, g, report);
          if (problem) report.failures.push(`V=${V} ${kind} ${c.name} r=${rs[j]}: ${problem}`);
        }
      }
    }
  } finally {
    sampler.destroy();
    logitsBuffer.destroy();
  }
  report.msPerSample = gpuMs / Math.max(1, report.samples);
  return report;
}

export function describeReport(r: CompareReport): string {
  return (
    `${r.samples} samples: ${r.exact} exact, ${r.nearBoundary} near a bucket boundary, ${r.topPNearTie} top-p near-ties; ` +
    `max logprob error ${r.maxLogprobErr.toExponential(2)}, max total-weight error ${r.maxTotalRelErr.toExponential(2)}, ` +
    `${r.msPerSample.toFixed(1)} ms/sample` +
    (r.failures.length ? `\n  ${r.failures.slice(0, 12).join('\n  ')}` : '')
  );
}

export interface DistributionReport {
  draws: number;
  /** max over tokens of |frequency − probability|. */
  maxDeviation: number;
  bound: number;
  /** Tokens the GPU drew that the CPU gives probability 0. */
  outside: number;
  /** Tokens with positive probability. */
  support: number;
}

/** Stratified draws on a small vocabulary with every filter and penalty on. */
export async function distributionCheck(device: GPUDevice, pipelines: PipelineCache, draws = 512): Promise<DistributionReport> {
  const V = 40;
  const logits = sampleLogits(V, 4242, 'normal');
  const options: SamplingOptions = {
    temperature: 0.9,
    topK: 24,
    topP: 0.97,
    minP: 0.005,
    repetitionPenalty: 1.2,
    presencePenalty: 0.2,
    frequencyPenalty: 0.1,
    logitBias: { 3: 1, 5: -2 },
  };
  const recent = [...topIds(logits, 3), 7, 7, 9];
  const d = samplingDistribution(logits, options, recent);
  const buffer = uploadStorage(device, logits, 'logits 40');
  const batch = 16;
  const sampler = await GpuSampler.create(device, pipelines, { logits: buffer, vocabSize: V, slots: batch });
  const counts = new Float64Array(V);
  try {
    for (let j0 = 0; j0 < draws; j0 += batch) {
      const encoder = device.createCommandEncoder();
      const tickets: number[] = [];
      for (let j = j0; j < Math.min(draws, j0 + batch); j++) tickets.push(sampler.encode(encoder, options, recent, (j + 0.5) / draws));
      device.queue.submit([encoder.finish()]);
      for (const t of tickets) {
        const { id } = await sampler.read(t);
        counts[id] = counts[id]! + 1;
      }
    }
  } finally {
    sampler.destroy();
    buffer.destroy();
  }
  const p = new Float64Array(V);
  d.ids.forEach((id, j) => (p[id] = d.weights[j]! / d.total));
  let maxDeviation = 0;
  let outside = 0;
  for (let i = 0; i < V; i++) {
    maxDeviation = Math.max(maxDeviation, Math.abs(counts[i]! / draws - p[i]!));
    if (p[i] === 0 && counts[i]! > 0) outside++;
  }
  return { draws, maxDeviation, bound: 2 / draws, outside, support: d.ids.length };
}

/** The error codes (or 'ok') of bad calls to a sampler; see BAD_SAMPLER_CODES. */
export async function badSamplerCodes(device: GPUDevice, pipelines: PipelineCache): Promise<string[]> {
  const V = 100;
  const buffer = uploadStorage(device, new Float32Array(V), 'logits 100');
  const codes: string[] = [];
  const code = async (f: () => unknown) => {
    try {
      await f();
      codes.push('ok');
    } catch (e) {
      codes.push(e instanceof RullamaError ? e.code : String(e));
    }
  };
  await code(() => GpuSampler.create(device, pipelines, { logits: buffer, vocabSize: 200 })); // buffer too small
  await code(() => GpuSampler.create(device, pipelines, { logits: buffer, vocabSize: 0 }));
  const sampler = await GpuSampler.create(device, pipelines, { logits: buffer, vocabSize: V, maxEntries: 4 });
  const encoder = device.createCommandEncoder();
  await code(() => sampler.read()); // nothing encoded
  await code(() => sampler.encode(encoder, { temperature: -1 }, [], 0.5));
  await code(() => sampler.encode(encoder, { temperature: 1, topK: 2.5 }, [], 0.5));
  await code(() => sampler.encode(encoder, { temperature: 1, topP: 0 }, [], 0.5));
  await code(() => sampler.encode(encoder, { temperature: 1, logitBias: { [V]: 1 } }, [], 0.5));
  await code(() => sampler.encode(encoder, { temperature: 1, presencePenalty: 0.5 }, [V + 3], 0.5));
  await code(() => sampler.encode(encoder, { temperature: 1, presencePenalty: 0.5 }, [1, 2, 3, 4, 5], 0.5)); // 5 entries > 4
  await code(() => sampler.encode(encoder, { temperature: 1 }, [], 1));
  await code(() => sampler.encode(encoder, { temperature: 1, presencePenalty: 0.5 }, [1, 2, 3, 4], 0.25));
  device.queue.submit([encoder.finish()]);
  await code(() => sampler.read());
  await code(() => sampler.read()); // already read
  sampler.destroy();
  buffer.destroy();
  return codes;
}

export const BAD_SAMPLER_CODES = [
  'bad-argument',
  'bad-argument',
  'bad-argument',
  'bad-argument',
  'bad-argument',
  'bad-argument',
  'bad-argument',
  'bad-argument',
  'bad-argument',
  'bad-argument',
  'ok',
  'ok',
  'bad-argument',
];
