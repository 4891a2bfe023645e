/**
 * Logits of our GPU engine (and optionally the float64 CPU reference) on a fixed token sequence,
 * written as float32 files for scripts/dev/hf_compare.py, which runs Hugging Face transformers
 * on the same GGUF and compares. See scripts/dev/README.md.
 *
 * Built into one file by bench/rollup.hf.mjs (bench/dist/hf-logits.mjs, `webgpu` left external)
 * so it runs on the GPU machine:
 *   node bench/dist/hf-logits.mjs --model-out /tmp/e2b.gguf --prompt 700 --decode 12 --out /tmp/run-e2b
 *   node bench/dist/hf-logits.mjs --tiny tiny-e2b --model-out /tmp/tiny-e2b.gguf --prompt 40 --decode 4 --cpu --out /tmp/run-tiny
 * Options:
 *   --model FILE       use this GGUF
 *   --model-out FILE   write the model here first unless it exists: the E2B-shaped one (as
 *                      bench/e2b.ts writes it: seed 1, pooled blocks), or with --tiny NAME that
 *                      tiny config (exact values, seed 1)
 *   --vocab FILE       vocabulary GGUF for the writer (default: vocab.gguf beside this bundle)
 *   --prompt N         tokens fed in one feed(…, {all: true}) call (prefill blocks; default 700)
 *   --decode M         tokens then fed one at a time (the decode path; default 12)
 *   --chunk N          prefill block size (default 128, the engine's default)
 *   --context N        context size (default: prompt + decode)
 *   --cpu              also compute the float64 CPU reference (tiny models only: slow)
 *   --out DIR          where tokens.json, logits-gpu.f32 (and logits-cpu.f32) go
 * The token sequence is <bos> then pseudo-random ids in [1000, 201000) (fixed seed); decode tokens
 * are from the same sequence, not sampled, so the other side sees exactly the same ids.
 * Prints one JSON object on stdout; progress on stderr.
 */
import { createHash } from 'node:crypto';
import { existsSync, openSync, closeSync, writeSync, mkdirSync, writeFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { openDevice } from '../src/core/gpu/device.js';
import { nodeFileSource } from '../src/core/gguf/node-source.js';
import { Gemma4Model } from '../src/core/model/model.js';
import { ReferenceModel } from '../src/core/reference/forward.js';
import { E2B_CONFIG, TINY_CONFIGS, writeGemma4Model, type Gemma4Config } from '../test/fixtures/index.js';

/** Dawn aborts the process if its GPU, adapter or device is collected while work is pending. */
const keep: unknown[] = [];

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
const flag = (name: string) => process.argv.includes(`--${name}`);
const num = (name: string, dflt: number): number => {
  const v = arg(name);
  return v === undefined ? dflt : Number(v);
};
const log = (s: string) => process.stderr.write(`# ${s}\n`);
const now = () => performance.now();

const promptTokens = num('prompt', 700);
const decodeTokens = num('decode', 12);
const total = promptTokens + decodeTokens;
const chunk = num('chunk', 128);
const contextSize = num('context', total);
const outDir = arg('out');
if (!outDir) throw new Error('give --out DIR');
mkdirSync(outDir, { recursive: true });

// ---- the model file ----------------------------------------------------------------------
let modelPath = arg('model');
let writeS: number | null = null;
const tiny = arg('tiny');
if (!modelPath || !existsSync(modelPath)) {
  modelPath = arg('model-out') ?? modelPath;
  if (!modelPath) throw new Error('give --model FILE or --model-out FILE');
  if (!existsSync(modelPath)) {
    const beside = fileURLToPath(new URL('./vocab.gguf', import.meta.url));
    const vocabPath = arg('vocab') ?? (existsSync(beside) ? beside : undefined);
    let config: Gemma4Config = E2B_CONFIG;
    if (tiny) {
      config = (TINY_CONFIGS as Record<string, Gemma4Config>)[tiny]!;
      if (!config) throw new Error(`no tiny config ${tiny}`);
    }
    log(`writing ${config.name} to ${modelPath} (vocab ${vocabPath ?? 'fixtures default'})`);
    const w = await writeGemma4Model(config, modelPath, tiny ? { seed: 1, hash: false, vocabPath } : { seed: 1, values: 'pool', hash: false, vocabPath });
    writeS = Math.round(w.ms / 100) / 10;
    log(`wrote ${(w.bytes / 1e9).toFixed(3)} GB in ${writeS} s`);
  }
}
const modelBytes = statSync(modelPath).size;

// ---- the tokens --------------------------------------------------------------------------
const tokens: number[] = [2];
let s = 20261127;
while (tokens.length < total) {
  s = (Math.imul(s, 1103515245) + 12345) >>> 0;
  tokens.push(1000 + (s % 200000));
}
const tokensSha = createHash('sha256').update(Uint32Array.from(tokens)).digest('hex').slice(0, 16);

/** Writes rows (each vocab floats) to one float32 LE file. */
function writeRows(path: string, rows: ArrayLike<number>[]): void {
  const fd = openSync(path, 'w');
  try {
    for (const r of rows) {
      const f = r instanceof Float32Array ? r : Float32Array.from(r);
      writeSync(fd, new Uint8Array(f.buffer, f.byteOffset, f.byteLength));
    }
  } finally {
    closeSync(fd);
  }
}

const argmax = (x: ArrayLike<number>) => {
  let b = 0;
  for (let i = 1; i < x.length; i++) if (x[i]! > x[b]!) b = i;
  return b;
};

// ---- our GPU engine ------------------------------------------------------------------------
const webgpu = await import('webgpu');
Object.assign(globalThis, webgpu.globals);
const gpu = webgpu.create([]);
keep.push(gpu);
const opened = await openDevice({ gpu });
keep.push(opened, opened.adapter, opened.device);
const { device } = opened;
log(`adapter: ${opened.description}`);
device.lost.then((l) => log(`device lost: ${l.reason} ${l.message}`));
let deviceError: string | null = null;
device.addEventListener('uncapturederror', (e) => {
  deviceError ??= String((e as GPUUncapturedErrorEvent).error.message);
  log(`uncaptured GPU error: ${(e as GPUUncapturedErrorEvent).error.message}`);
});
const info = opened.adapter.info as GPUAdapterInfo & Record<string, unknown>;

const source = await nodeFileSource(modelPath);
let t0 = now();
const model = await Gemma4Model.load(device, source, { contextSize, prefillChunk: chunk, allLogits: true });
await device.queue.onSubmittedWorkDone();
const loadS = (now() - t0) / 1000;
log(`loaded in ${loadS.toFixed(2)} s; context ${model.contextSize}, chunk ${chunk}, gpu ${(model.gpuBytes / 2 ** 30).toFixed(2)} GiB`);
t0 = now();
// Every token's logits: `{logits: 'all'}` in the current API, `{all: true}` in the earlier one.
const allOpts = { logits: 'all', all: true } as unknown as Parameters<typeof model.feed>[1];
const rows: Float32Array[] = await model.feed(tokens.slice(0, promptTokens), allOpts);
if (rows.length !== promptTokens) throw new Error(`feed(all) gave ${rows.length} rows for ${promptTokens} tokens`);
const prefillMs = now() - t0;
t0 = now();
for (let i = promptTokens; i < total; i++) {
  const [l] = await model.feed([tokens[i]!]); // default: the last token's logits (the generation path)
  rows.push(l!);
}
const decodeMs = now() - t0;
log(`prefill ${promptTokens} in ${prefillMs.toFixed(0)} ms (all logits read back), decode ${decodeTokens} in ${decodeMs.toFixed(0)} ms`);
if (rows.length !== total) throw new Error(`got ${rows.length} rows, expected ${total}`);
let nonFinite = 0;
for (const r of rows) for (let i = 0; i < r.length; i++) if (!Number.isFinite(r[i]!)) nonFinite++;
writeRows(`${outDir}/logits-gpu.f32`, rows);
const gpuArgmax = rows.map(argmax);
const vocab = rows[0]!.length;
model.destroy();
rows.length = 0;

// ---- the CPU reference (tiny models) -------------------------------------------------------
let cpuMs: number | null = null;
if (flag('cpu')) {
  t0 = now();
  const ref = await ReferenceModel.load(source);
  const cpuRows = await ref.forward(tokens);
  cpuMs = now() - t0;
  writeRows(`${outDir}/logits-cpu.f32`, cpuRows);
  log(`cpu reference: ${total} tokens in ${(cpuMs / 1000).toFixed(1)} s`);
}
await source.close();

const logits: Record<string, string> = { gpu: 'logits-gpu.f32' };
if (cpuMs !== null) logits.cpu = 'logits-cpu.f32';
const ours = {
  card: opened.description,
  adapter: { vendor: info.vendor, architecture: info.architecture, device: info.device, description: info.description },
  model: { path: modelPath, bytes: modelBytes, write_s: writeS, tiny: tiny ?? null },
  prompt_tokens: promptTokens,
  decode_tokens: decodeTokens,
  prefill_chunk: chunk,
  context: contextSize,
  load_s: Math.round(loadS * 100) / 100,
  prefill_ms_with_readback: Math.round(prefillMs),
  decode_ms: Math.round(decodeMs),
  cpu_reference_ms: cpuMs === null ? null : Math.round(cpuMs),
  non_finite_logits: nonFinite,
  gpu_error: deviceError,
  gpu_argmax_first: gpuArgmax.slice(0, 8),
  node: process.version,
  date: new Date().toISOString(),
};
writeFileSync(`${outDir}/tokens.json`, `${JSON.stringify({ tokens, tokens_sha: tokensSha, vocab, logits, ours })}\n`);
process.stdout.write(`${JSON.stringify({ ...ours, out: outDir, tokens_sha: tokensSha, vocab }, null, 1)}\n`);
device.destroy();
process.exit(0);
