/**
 * Inference benchmark at E2B shapes (Node + Dawn), the harness of the speed issue: on a
 * random-weight E2B-shaped GGUF it reports load time, prefill tokens/s for 512- and 4,096-token
 * prompts, time to first token, greedy decode tokens/s at short context (after the 512-token
 * prompt) and at 4,096 tokens of context, CPU time per decoded token spent in JavaScript (PLE row
 * fetch, recording + submitting the chain, waiting for the 16-byte sampled result), the pipelined
 * GPU-bound step time, and per-kernel GPU time breakdowns of a decode step and of a prefill block
 * from timestamp queries (when the adapter has 'timestamp-query'). Every figure: min / median / max over --runs runs after a warm-up.
 *
 * It drives the pieces Gemma4Model is made of (GpuWeights, GpuForward, PleRows, GpuSampler)
 * directly, so it can time them one by one; greedy sampling runs on the GPU as in the engine.
 *
 * Built into one file by bench/rollup.bench.mjs (bench/dist/e2b.mjs, `webgpu` left external):
 *   node bench/dist/e2b.mjs --model-out /tmp/e2b.gguf [--runs 5] [--gen 128] [--chunk 512]
 * Options:
 *   --model FILE       measure this GGUF (skip writing)
 *   --model-out FILE   write the E2B-shaped model here first (unless it already exists)
 *   --write-only       only write the model (for `rullama bench --model FILE`)
 *   --vocab FILE       vocabulary GGUF for the writer (default: vocab.gguf beside this bundle)
 *   --prompt N         short prompt (default 512)     --long N    long prompt (default 4096; 0 skips)
 *   --gen N            decode tokens per run (default 128)
 *   --chunk N          prefill block (default 512)    --runs N    timed runs (default 5)
 *   --all-steps        also list every step's GPU time in the kernel profiles
 *   --int8-prefill     prefill's Q4_K/Q6_K matmuls in 8-bit integers (GpuForwardOptions.int8Prefill)
 * Prints one JSON object on stdout; progress goes to stderr.
 */
import { existsSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { openDevice } from '../src/core/gpu/device.js';
import { nodeFileSource } from '../src/core/gguf/node-source.js';
import { readGGUF } from '../src/core/gguf/read.js';
import { readTensorBytes } from '../src/core/gguf/read.js';
import { GpuSampler } from '../src/core/gpu/sampler.js';
import { PipelineCache } from '../src/core/gpu/pipelines.js';
import { readGemma4Config } from '../src/core/model/config.js';
import { forwardCpu, GpuForward, type StepTime } from '../src/core/model/gpu-forward.js';
import { PleRows, pleCpu } from '../src/core/model/ple-rows.js';
import { resolveTensors } from '../src/core/model/tensors.js';
import { GpuWeights } from '../src/core/model/weights.js';
import { dequantize } from '../src/core/quant/dequant.js';
import { E2B_CONFIG, writeGemma4Model } from '../test/fixtures/index.js';

/** Dawn aborts the process if its GPU, adapter or device is collected while work is pending. */
const keep: unknown[] = [];

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
const num = (name: string, dflt: number): number => {
  const v = arg(name);
  return v === undefined ? dflt : Number(v);
};
const log = (s: string) => process.stderr.write(`# ${s}\n`);
const now = () => performance.now();

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const r1 = (x: number) => Math.round(x * 10) / 10;
const r3 = (x: number) => Math.round(x * 1000) / 1000;
const stats = (xs: number[], round = r1) => ({ min: round(Math.min(...xs)), median: round(median(xs)), max: round(Math.max(...xs)), runs: xs.map(round) });

const promptTokens = num('prompt', 512);
const longTokens = num('long', 4096);
const genTokens = num('gen', 128);
const runs = num('runs', 5);
const chunk = num('chunk', 512);
/** --all-steps: the kernel profiles also list every step's median time (label, ms). */
const allSteps = process.argv.includes('--all-steps');
const contextSize = Math.max(promptTokens, longTokens) + genTokens + 1;

let modelPath = arg('model');
let writeS: number | undefined;
let modelBytes: number;
if (modelPath && existsSync(modelPath)) {
  modelBytes = statSync(modelPath).size;
} else {
  modelPath = arg('model-out') ?? modelPath;
  if (!modelPath) throw new Error('give --model FILE or --model-out FILE');
  if (existsSync(modelPath)) {
    modelBytes = statSync(modelPath).size;
  } else {
    const beside = fileURLToPath(new URL('./vocab.gguf', import.meta.url));
    const vocabPath = arg('vocab') ?? (existsSync(beside) ? beside : undefined);
    log(`writing E2B-shaped model to ${modelPath} (vocab ${vocabPath ?? 'fixtures default'})`);
    // Same as writeE2BShapedModel(path, {seed: 1}), which takes no vocabulary path.
    const w = await writeGemma4Model(E2B_CONFIG, modelPath, { seed: 1, values: 'pool', hash: false, vocabPath });
    writeS = w.ms / 1000;
    modelBytes = w.bytes;
    log(`wrote ${(w.bytes / 1e9).toFixed(3)} GB in ${writeS.toFixed(1)} s`);
  }
}

if (process.argv.includes('--write-only')) process.exit(0);


const webgpu = await import('webgpu');
Object.assign(globalThis, webgpu.globals);
// Full-resolution timestamps (Dawn rounds them to ~65 µs by default).
const gpu = webgpu.create(['disable-dawn-features=timestamp_quantization']);
keep.push(gpu);
const opened = await openDevice({
  gpu,
  preferredLimits: { maxStorageBufferBindingSize: 2 ** 31, maxBufferSize: 2 ** 31 },
  optionalFeatures: ['timestamp-query' as GPUFeatureName],
});
keep.push(opened, opened.adapter, opened.device);
const { device } = opened;
const info = opened.adapter.info as GPUAdapterInfo & Record<string, unknown>;
log(`adapter: ${opened.description}; features granted: ${[...opened.features].join(',') || 'none'}; adapter has: ${[...opened.adapter.features].join(',')}`);
device.lost.then((l) => log(`device lost: ${l.reason} ${l.message}`));

// Load: header, weights (from the page cache: the file was just written), kernels.
const t0 = now();
const source = await nodeFileSource(modelPath);
const file = await readGGUF(source);
const config = readGemma4Config(file);
const tensors = resolveTensors(file, config);
const weights = await GpuWeights.upload(device, source, tensors);
const ropeFactors = tensors.ropeFreqs ? dequantize(tensors.ropeFreqs.type, await readTensorBytes(source, tensors.ropeFreqs), tensors.ropeFreqs.elementCount) : null;
const ple = tensors.pleTokenEmbd ? new PleRows(source, tensors.pleTokenEmbd) : null;
const pipelines = new PipelineCache(device);
const forward = await GpuForward.create(device, config, tensors, weights, ropeFactors, { contextSize, maxTokens: chunk, int8Prefill: process.argv.includes('--int8-prefill') }, pipelines);
const sampler = await GpuSampler.create(device, pipelines, { logits: forward.logits, vocabSize: config.vocabSize });
await device.queue.onSubmittedWorkDone();
const loadMs = now() - t0;
// Deterministic pseudo-random prompt: ids in the vocabulary, not special tokens, and inside the
// per-layer table (the demo model's has 4,096 rows; E2B's covers the vocabulary).
const idRange = Math.min(200000, Math.min(config.vocabSize, tensors.pleTokenEmbd?.dims[1] ?? Infinity) - 1000);
const prompt: number[] = [];
let s = 12345;
for (let i = 0; i < Math.max(promptTokens, longTokens); i++) {
  s = (Math.imul(s, 1103515245) + 12345) >>> 0;
  prompt.push(1000 + (s % idRange));
}
log(`loaded in ${loadMs.toFixed(0)} ms; weights ${(weights.bytes / 2 ** 30).toFixed(2)} GiB, session ${(forward.bytes / 2 ** 30).toFixed(2)} GiB`);

/** Where the last prefill's time went (ms): PLE rows (file read + BF16 dequant), recording + submitting, waiting for the result. */
const prefillSplit = { ple: 0, run: 0, wait: 0 };

/** Runs `tokens` from position `start` in prefill blocks and samples greedily after the last; returns the token. */
async function prefill(tokens: readonly number[], start: number): Promise<number> {
  let ticket = 0;
  Object.assign(prefillSplit, { ple: 0, run: 0, wait: 0 });
  for (let i = 0; i < tokens.length; i += chunk) {
    const block = tokens.slice(i, i + chunk);
    const t0 = now();
    const rows = ple ? ((await ple.rows(block)) as Float32Array<ArrayBuffer>) : null;
    const t1 = now();
    const last = i + chunk >= tokens.length;
    await forward.run(Uint32Array.from(block), start + i, rows, { after: last ? (e) => (ticket = sampler.encode(e, { temperature: 0 }, [], 0)) : undefined });
    prefillSplit.ple += t1 - t0;
    prefillSplit.run += now() - t1;
  }
  const t2 = now();
  const id = (await sampler.read(ticket)).id;
  prefillSplit.wait = now() - t2;
  return id;
}

interface DecodeRun {
  tok_s: number;
  ple_ms: number;
  record_ms: number;
  wait_ms: number;
  tokens: number[];
}

/** Greedy decode of genTokens tokens after position `start` (whose sampled token is `first`). */
async function decode(first: number, start: number): Promise<DecodeRun> {
  let tok = first;
  const out: number[] = [];
  let pleMs = 0;
  let recordMs = 0;
  let waitMs = 0;
  const a = now();
  for (let i = 0; i < genTokens; i++) {
    const p0 = now();
    const rows = ple ? ((await ple.rows([tok])) as Float32Array<ArrayBuffer>) : null;
    const p1 = now();
    let ticket = 0;
    await forward.run(Uint32Array.of(tok), start + i, rows, { after: (e) => (ticket = sampler.encode(e, { temperature: 0 }, [], 0)) });
    const p2 = now();
    tok = (await sampler.read(ticket)).id;
    const p3 = now();
    pleMs += p1 - p0;
    recordMs += p2 - p1;
    waitMs += p3 - p2;
    out.push(tok);
  }
  const ms = now() - a;
  return { tok_s: (genTokens * 1000) / ms, ple_ms: pleMs / genTokens, record_ms: recordMs / genTokens, wait_ms: waitMs / genTokens, tokens: out };
}

/** Decode steps submitted back to back at one position without waiting: the GPU-bound (or record-bound) step time. */
async function pipelined(start: number, steps: number): Promise<{ ms_per_step: number; record_ms_per_step: number }> {
  const rows = ple ? ((await ple.rows([prompt[0]!])) as Float32Array<ArrayBuffer>) : null;
  await device.queue.onSubmittedWorkDone();
  const c0 = forwardCpu.ms;
  const a = now();
  for (let i = 0; i < steps; i++) await forward.run(Uint32Array.of(prompt[0]!), start, rows);
  await device.queue.onSubmittedWorkDone();
  return { ms_per_step: r3((now() - a) / steps), record_ms_per_step: r3((forwardCpu.ms - c0) / steps) };
}

/** Per-kernel GPU time of one decode step at `start`, summed by kernel kind (labels without the layer prefix). */
async function kernelProfile(start: number): Promise<{ total_ms: number; steps: number; by_kind: { kind: string; ms: number; count: number }[]; top: StepTime[]; all_steps?: StepTime[] } | null> {
  if (!device.features.has('timestamp-query')) return null;
  const rows = ple ? ((await ple.rows([prompt[0]!])) as Float32Array<ArrayBuffer>) : null;
  const all: StepTime[][] = [];
  for (let r = 0; r < 1 + runs; r++) {
    const times = await forward.profile(Uint32Array.of(prompt[0]!), start, rows, 10);
    if (r > 0) all.push(times);
  }
  // Median per step over the runs.
  const steps = all[0]!.map((st, i) => ({ label: st.label, ms: median(all.map((t) => t[i]!.ms)) }));
  const kinds = new Map<string, { ms: number; count: number }>();
  for (const st of steps) {
    const kind = st.label.replace(/^layer\d+\./, '').replace(/\[\d+\]$/, '');
    const k = kinds.get(kind) ?? { ms: 0, count: 0 };
    k.ms += st.ms;
    k.count++;
    kinds.set(kind, k);
  }
  const byKind = [...kinds.entries()].map(([kind, v]) => ({ kind, ms: r3(v.ms), count: v.count })).sort((x, y) => y.ms - x.ms);
  const top = [...steps].sort((x, y) => y.ms - x.ms).slice(0, 12).map((st) => ({ label: st.label, ms: r3(st.ms) }));
  const every = allSteps ? { all_steps: steps.map((st) => ({ label: st.label, ms: r3(st.ms) })) } : {};
  return { total_ms: r3(steps.reduce((n, st) => n + st.ms, 0)), steps: steps.length, by_kind: byKind, top, ...every };
}

/** Per-kernel GPU time of one prefill block of `n` tokens from position 0 (repeats 3), by kind. */
async function prefillProfile(n: number): Promise<{ total_ms: number; by_kind: { kind: string; ms: number; count: number }[]; all_steps?: StepTime[] } | null> {
  if (!device.features.has('timestamp-query')) return null;
  const ids = Uint32Array.from(prompt.slice(0, n));
  const rows = ple ? ((await ple.rows([...ids])) as Float32Array<ArrayBuffer>) : null;
  const all: StepTime[][] = [];
  for (let r = 0; r < 3; r++) all.push(await forward.profile(ids, 0, rows, 3));
  const steps = all[0]!.map((st, i) => ({ label: st.label, ms: median(all.map((t) => t[i]!.ms)) }));
  const kinds = new Map<string, { ms: number; count: number }>();
  for (const st of steps) {
    const kind = st.label.replace(/^layer\d+\./, '').replace(/\[\d+\]$/, '');
    const k = kinds.get(kind) ?? { ms: 0, count: 0 };
    k.ms += st.ms;
    k.count++;
    kinds.set(kind, k);
  }
  const byKind = [...kinds.entries()].map(([kind, v]) => ({ kind, ms: r3(v.ms), count: v.count })).sort((x, y) => y.ms - x.ms);
  const every = allSteps ? { all_steps: steps.map((st) => ({ label: st.label, ms: r3(st.ms) })) } : {};
  return { total_ms: r3(steps.reduce((a, st) => a + st.ms, 0)), by_kind: byKind, ...every };
}

async function prefillBench(n: number): Promise<{ tok_s: ReturnType<typeof stats>; ttft_ms: ReturnType<typeof stats>; cold_ms: number; first: number; ms_split: Record<string, ReturnType<typeof stats>> }> {
  const ms: number[] = [];
  const split = { ple: [] as number[], run: [] as number[], wait: [] as number[] };
  let cold = 0;
  let first = 0;
  for (let r = 0; r < 1 + runs; r++) {
    const a = now();
    first = await prefill(prompt.slice(0, n), 0);
    const b = now() - a;
    if (r === 0) cold = b;
    else {
      ms.push(b);
      split.ple.push(prefillSplit.ple);
      split.run.push(prefillSplit.run);
      split.wait.push(prefillSplit.wait);
    }
    log(`prefill ${n}: run ${r}${r === 0 ? ' (warm-up)' : ''}: ${b.toFixed(1)} ms (ple ${prefillSplit.ple.toFixed(1)} record+submit ${prefillSplit.run.toFixed(1)} wait ${prefillSplit.wait.toFixed(1)})`);
  }
  return {
    tok_s: stats(ms.map((x) => (n * 1000) / x)), ttft_ms: stats(ms), cold_ms: r1(cold), first,
    ms_split: { ple_rows: stats(split.ple), record_submit: stats(split.run), wait_result: stats(split.wait) },
  };
}

async function decodeBench(n: number): Promise<Record<string, unknown>> {
  const first = await prefill(prompt.slice(0, n), 0);
  const rs: DecodeRun[] = [];
  for (let r = 0; r < 1 + runs; r++) {
    const run = await decode(first, n);
    if (r > 0) rs.push(run);
    log(`decode after ${n}: run ${r}${r === 0 ? ' (warm-up)' : ''}: ${run.tok_s.toFixed(1)} tok/s (ple ${run.ple_ms.toFixed(3)} record ${run.record_ms.toFixed(3)} wait ${run.wait_ms.toFixed(3)} ms/token)`);
  }
  const pipe = await pipelined(n, 64);
  log(`pipelined at ${n}: ${pipe.ms_per_step} ms/step (record ${pipe.record_ms_per_step})`);
  const prof = await kernelProfile(n);
  if (prof) log(`kernels at ${n}: ${prof.total_ms} ms in ${prof.steps} steps; ${prof.by_kind.slice(0, 10).map((k) => `${k.kind} ${k.ms}`).join(', ')}`);
  return {
    context: n,
    tok_s: stats(rs.map((r) => r.tok_s)),
    ms_per_token: stats(rs.map((r) => 1000 / r.tok_s), r3),
    cpu_ms_per_token: {
      ple_rows: stats(rs.map((r) => r.ple_ms), r3),
      record_submit: stats(rs.map((r) => r.record_ms), r3),
      wait_result: stats(rs.map((r) => r.wait_ms), r3),
    },
    pipelined_step: pipe,
    kernels: prof,
    first_tokens: rs[0]!.tokens.slice(0, 8),
  };
}

const pre512 = await prefillBench(promptTokens);
const preProfile = chunk >= promptTokens ? await prefillProfile(promptTokens) : null;
if (preProfile) log(`prefill kernels (${promptTokens} tokens): ${preProfile.total_ms} ms; ${preProfile.by_kind.slice(0, 10).map((k) => `${k.kind} ${k.ms}`).join(', ')}`);
const preLong = longTokens > 0 ? await prefillBench(longTokens) : null;
const decShort = await decodeBench(promptTokens);
const decLong = longTokens > 0 ? await decodeBench(longTokens) : null;

const out = {
  prefill_tok_s: pre512.tok_s.median,
  decode_tok_s: (decShort.tok_s as { median: number }).median,
  ttft_ms: pre512.ttft_ms.median,
  gpu_bytes: weights.bytes + forward.bytes,
  adapter: opened.description,
  card: opened.description,
  adapter_info: { vendor: info.vendor, architecture: info.architecture, device: info.device, description: info.description },
  features: [...opened.features],
  date: new Date().toISOString(),
  node: process.version,
  load_ms: r1(loadMs),
  prompt_tokens: promptTokens,
  gen_tokens: genTokens,
  prefill_chunk: chunk,
  prefill_matmuls: process.argv.includes('--int8-prefill') ? 'int8' : 'f32',
  context: contextSize,
  runs,
  prefill: { [promptTokens]: pre512, ...(preLong ? { [longTokens]: preLong } : {}) },
  prefill_kernels: preProfile,
  decode: { short: decShort, ...(decLong ? { long: decLong } : {}) },
  ple_cache: { ...pleCpu },
  model: { path: modelPath, bytes: modelBytes, write_s: writeS === undefined ? null : Math.round(writeS * 10) / 10 },
  notes: [
    'prefill: prompt of pseudo-random ids from position 0 in blocks of prefill_chunk, greedy sample of the next token on the GPU; ttft = that whole call',
    'decode: greedy tokens on the GPU sampler (16-byte readback); cpu_ms_per_token: PLE row fetch (file read + BF16 dequant, LRU cache), recording + submitting the chain, waiting for the result',
    'pipelined_step: 64 decode steps at one position submitted without waiting (GPU- or record-bound time per step)',
    'kernels: one decode step with each kernel run 10 times in its own compute pass between timestamp queries (per-run time, median of the runs; timestamp quantisation disabled); back-to-back repeats of one kernel hide some launch gaps, so the sum is a lower bound of the chain',
  ],
};
process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
forward.destroy();
sampler.destroy();
weights.destroy();
await source.close();
device.destroy();
process.exit(0);
