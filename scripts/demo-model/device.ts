/**
 * The GPU-machine half of the transformers-vs-engine check (issue 5, step 5), bundled by
 * scripts/demo-model/rollup.device.mjs into tmp/demo-model/carry/device.mjs (no Node project there):
 *   node device.mjs f32 WEIGHTS_DIR OUT.gguf      trained weights → F32 GGUF (our writer)
 *   node device.mjs logits MODEL.gguf OUT_DIR     our GPU engine's logits for a fixed real-text
 *                                                 prompt: OUT_DIR/tokens.json + logits-gpu.f32,
 *                                                 the layout scripts/dev/hf_compare.py reads
 * Run with RULLAMA_ROOT set to the repository root (models/demo/*.json are read from there).
 */
import { createHash } from 'node:crypto';
import { closeSync, mkdirSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { encodeChat } from '../../src/core/chat/template.js';
import { nodeFileSource } from '../../src/core/gguf/node-source.js';
import { readGGUF } from '../../src/core/gguf/read.js';
import { openDevice } from '../../src/core/gpu/device.js';
import { Gemma4Model } from '../../src/core/model/model.js';
import { Tokenizer } from '../../src/core/tokenizer/tokenizer.js';
import { writeDemoGGUF } from './model.js';

const keep: unknown[] = [];
const log = (s: string) => process.stderr.write(`# ${s}\n`);

/** A real-text prompt longer than twice the sliding window (64): two chat turns and a KJV passage. */
export function checkTokens(tok: Tokenizer): number[] {
  const chat = encodeChat(tok, [
    { role: 'user', content: 'What does river mean?' },
    { role: 'assistant', content: 'River (noun) means a large natural stream of water (larger than a creek).' },
    { role: 'user', content: 'Continue this passage: In the beginning God created the heaven and the earth.' },
    { role: 'assistant', content: 'And the earth was without form, and void; and darkness was upon the face of the deep. And the Spirit of God moved upon the face of the waters.' },
    { role: 'user', content: 'What is the meaning of mountain?' },
  ]);
  return chat;
}

async function f32(weights: string, out: string): Promise<void> {
  const w = await writeDemoGGUF(weights, out, 'f32');
  console.log(JSON.stringify({ out, bytes: w.bytes, sha256: w.sha256 }));
}

async function logits(modelPath: string, outDir: string): Promise<void> {
  mkdirSync(outDir, { recursive: true });
  const source = await nodeFileSource(modelPath);
  const tok = Tokenizer.fromGGUF(await readGGUF(source));
  const tokens = checkTokens(tok);
  const prompt = tokens.length - 6; // the last 6 go through the decode path one at a time
  const webgpu = await import('webgpu');
  Object.assign(globalThis, webgpu.globals);
  const gpu = webgpu.create([]);
  keep.push(gpu);
  const opened = await openDevice({ gpu });
  keep.push(opened, opened.adapter, opened.device);
  log(`adapter: ${opened.description}`);
  const model = await Gemma4Model.load(opened.device, source, { contextSize: tokens.length, prefillChunk: 32, allLogits: true });
  const allOpts = { logits: 'all', all: true } as unknown as Parameters<typeof model.feed>[1];
  const rows: Float32Array[] = await model.feed(tokens.slice(0, prompt), allOpts);
  for (let i = prompt; i < tokens.length; i++) rows.push((await model.feed([tokens[i]!]))[0]!);
  const fd = openSync(`${outDir}/logits-gpu.f32`, 'w');
  for (const r of rows) writeSync(fd, new Uint8Array(r.buffer, r.byteOffset, r.byteLength));
  closeSync(fd);
  const sha = createHash('sha256').update(Uint32Array.from(tokens)).digest('hex').slice(0, 16);
  writeFileSync(`${outDir}/tokens.json`, JSON.stringify({ tokens, tokens_sha: sha, vocab: rows[0]!.length, logits: { gpu: 'logits-gpu.f32' }, ours: { card: opened.description, prompt_tokens: prompt, decode_tokens: tokens.length - prompt, prefill_chunk: 32 } }));
  console.log(JSON.stringify({ tokens: tokens.length, prompt, card: opened.description }));
  model.destroy();
  await source.close();
  opened.device.destroy();
}

const [cmd, a, b] = process.argv.slice(2);
if (cmd === 'f32') await f32(a!, b!);
else if (cmd === 'logits') await logits(a!, b!);
else {
  console.error('usage: device.mjs f32 WEIGHTS OUT.gguf | logits MODEL.gguf OUTDIR');
  process.exit(2);
}
process.exit(0);
