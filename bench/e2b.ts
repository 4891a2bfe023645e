/**
 * Inference benchmark at E2B shapes (Node + Dawn): load time, prefill tokens/s, greedy decode
 * tokens/s and GPU bytes of the engine in src/core, on a random-weight E2B-shaped GGUF.
 *
 * Built into one file by bench/rollup.bench.mjs (bench/dist/e2b.mjs, `webgpu` left external) so
 * it runs on the GPU machine, which has no Node project of its own:
 *   node bench/dist/e2b.mjs --model-out /tmp/e2b.gguf --prompt 512 --gen 64 [--chunks 128,512]
 * Options:
 *   --model FILE       measure this GGUF (skip writing)
 *   --model-out FILE   write the E2B-shaped model here first (unless it already exists)
 *   --write-only       only write the model (for `rullama bench --model FILE`)
 *   --vocab FILE       vocabulary GGUF for the writer (default: vocab.gguf beside this bundle,
 *                      else ../shared/fixtures/gemma4-vocab/… as the fixtures default)
 *   --prompt N         prompt tokens (default 512)      --gen N      decode tokens (default 64)
 *   --chunks A,B       prefill chunk sizes, one model load each (default 128)
 *   --runs N           timed decode runs after one warm-up (default 3)
 *   --context N        context size (default 4096, the engine's default)
 * Prints one JSON object on stdout; progress goes to stderr.
 *
 * What is timed is the engine as it is: each decode step reads all 262,144 logits back to the
 * CPU and takes the argmax there, and per-layer-embedding rows come from the file on the CPU.
 */
import { existsSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { openDevice } from '../src/core/gpu/device.js';
import { nodeFileSource } from '../src/core/gguf/node-source.js';
import { Gemma4Model } from '../src/core/model/model.js';
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

function argmax(x: Float32Array): number {
  let best = 0;
  let bv = x[0]!;
  for (let i = 1; i < x.length; i++) if (x[i]! > bv) { bv = x[i]!; best = i; }
  return best;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const r1 = (x: number) => Math.round(x * 10) / 10;

const promptTokens = num('prompt', 512);
const genTokens = num('gen', 64);
const runs = num('runs', 3);
const contextSize = num('context', 4096);
const chunks = (arg('chunks') ?? '128').split(',').map(Number);
const notes: string[] = [];

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
const gpu = webgpu.create([]);
keep.push(gpu);
const opened = await openDevice({ gpu });
keep.push(opened, opened.adapter, opened.device);
const { device } = opened;
const info = opened.adapter.info as GPUAdapterInfo & Record<string, unknown>;
log(`adapter: ${opened.description}`);
device.lost.then((l) => log(`device lost: ${l.reason} ${l.message}`));

// Deterministic pseudo-random prompt (ids in the vocabulary, not special tokens).
const prompt: number[] = [];
let s = 12345;
for (let i = 0; i < promptTokens; i++) {
  s = (Math.imul(s, 1103515245) + 12345) >>> 0;
  prompt.push(1000 + (s % 200000));
}

interface ChunkResult {
  prefill_chunk: number;
  load_s: number;
  gpu_bytes: number;
  prefill_cold_ms: number;
  prefill_ms: number[];
  prefill_tok_s: number;
  ttft_ms: number;
  decode_tok_s: { min: number; median: number; max: number; runs: number[] };
  decode_ms_per_token_median: number;
  first_tokens: number[];
}

const results: ChunkResult[] = [];
for (const chunk of chunks) {
  const t0 = now();
  const source = await nodeFileSource(modelPath);
  const model = await Gemma4Model.load(device, source, { contextSize, prefillChunk: chunk });
  await device.queue.onSubmittedWorkDone();
  const loadS = (now() - t0) / 1000;
  log(`chunk ${chunk}: loaded in ${loadS.toFixed(2)} s, gpu ${(model.gpuBytes / 2 ** 30).toFixed(2)} GiB`);

  // Prefill: the first is cold (pipelines, caches), then timed warm repeats from position 0.
  const prefillMs: number[] = [];
  let ttft = 0;
  let coldMs = 0;
  let first = 0;
  for (let i = 0; i < 1 + runs; i++) {
    model.reset();
    const a = now();
    const [logits] = await model.feed(prompt);
    const b = now();
    first = argmax(logits!);
    const c = now();
    if (i === 0) coldMs = b - a;
    else {
      prefillMs.push(b - a);
      ttft = ttft === 0 ? c - a : Math.min(ttft, c - a);
    }
  }
  const prefillBest = Math.min(...prefillMs);
  log(`chunk ${chunk}: prefill ${promptTokens} tokens cold ${coldMs.toFixed(0)} ms, warm ${prefillMs.map((x) => x.toFixed(0)).join('/')} ms`);

  // Decode: greedy, from the same prefilled state each run (position rewound; KV overwritten).
  const decodeRates: number[] = [];
  const tokens: number[] = [];
  for (let r = 0; r < 1 + runs; r++) {
    if (!model.rewind(promptTokens)) throw new Error('cannot rewind the prompt state');
    let tok = first;
    tokens.length = 0;
    const a = now();
    for (let i = 0; i < genTokens; i++) {
      const [logits] = await model.feed([tok]);
      tok = argmax(logits!);
      tokens.push(tok);
    }
    const ms = now() - a;
    if (r > 0) decodeRates.push((genTokens * 1000) / ms);
    log(`chunk ${chunk}: decode run ${r}${r === 0 ? ' (warm-up)' : ''}: ${genTokens} tokens in ${ms.toFixed(0)} ms`);
  }
  const med = median(decodeRates);
  results.push({
    prefill_chunk: chunk,
    load_s: Math.round(loadS * 100) / 100,
    gpu_bytes: model.gpuBytes,
    prefill_cold_ms: r1(coldMs),
    prefill_ms: prefillMs.map(r1),
    prefill_tok_s: r1((promptTokens * 1000) / prefillBest),
    ttft_ms: r1(ttft),
    decode_tok_s: { min: r1(Math.min(...decodeRates)), median: r1(med), max: r1(Math.max(...decodeRates)), runs: decodeRates.map(r1) },
    decode_ms_per_token_median: Math.round((1000 / med) * 100) / 100,
    first_tokens: tokens.slice(0, 8),
  });
  model.destroy();
  await source.close();
  await device.queue.onSubmittedWorkDone();
}

notes.push(
  'engine as of this date: each decode step reads all 262,144 logits back (1 MiB) and takes the argmax on the CPU; PLE rows are read from the GGUF and dequantised on the CPU per token',
  `prompt: ${promptTokens} pseudo-random token ids; prefill_tok_s from the best of ${runs} warm prefills (the cold first one is prefill_cold_ms); ttft_ms = best warm prefill + CPU argmax`,
  `decode: ${genTokens} greedy tokens after the ${promptTokens}-token prompt, ${runs} timed runs after a warm-up; tokens/s min/median/max`,
  `default device limits and no optional features (as the CLI opens the device); context ${contextSize}`,
  'load_s: open + GGUF parse + weight upload (file likely in the page cache, just written) + pipeline creation',
);

const main = results.find((r) => r.prefill_chunk === 512) ?? results[0]!;
const out = {
  card: opened.description,
  adapter: { vendor: info.vendor, architecture: info.architecture, device: info.device, description: info.description },
  decode_tok_s: main.decode_tok_s,
  prefill_tok_s: Math.max(...results.map((r) => r.prefill_tok_s)),
  prompt_tokens: promptTokens,
  gen_tokens: genTokens,
  load_s: main.load_s,
  gpu_bytes: main.gpu_bytes,
  ttft_ms: Math.min(...results.map((r) => r.ttft_ms)),
  date: new Date().toISOString(),
  model: { path: modelPath, bytes: modelBytes, write_s: writeS === undefined ? null : Math.round(writeS * 10) / 10 },
  context: contextSize,
  by_chunk: results,
  node: process.version,
  notes,
};
process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
device.destroy();
process.exit(0);
