/**
 * Tokenizer benchmark: vocabulary build time, encode and decode throughput on ~1 MB of
 * English-like text (deterministic, generated; `--text FILE` uses a file instead).
 *
 *   node --import ./scripts/ts-loader.mjs bench/tokenizer.ts [--vocab GGUF] [--text FILE] [--out FILE]
 *
 * Prints one JSON object: {vocab_load_ms, encode_tok_s, decode_tok_s, machine, …}.
 * encode_tok_s is the median of warm runs (the tokenizer caches the BPE of words it has
 * seen); encode_tok_s_cold is the first pass with an empty cache.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { readGGUF } from '../src/core/gguf/read.js';
import { nodeFileSource } from '../src/core/gguf/node-source.js';
import { Tokenizer } from '../src/core/tokenizer/tokenizer.js';
import { englishText } from '../test/corpus/generate.js';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const vocabPath = arg('--vocab') ?? fileURLToPath(new URL('../../shared/fixtures/gemma4-vocab/ggml-vocab-gemma-4.gguf', import.meta.url));
const textPath = arg('--text');
const outPath = arg('--out');

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};

const t0 = performance.now();
const src = await nodeFileSource(vocabPath);
const file = await readGGUF(src);
await src.close();
const ggufReadMs = performance.now() - t0;

// Build time: median of 3 (the first build also warms the JIT).
const builds: number[] = [];
let tok!: Tokenizer;
for (let i = 0; i < 3; i++) {
  const t = performance.now();
  tok = Tokenizer.fromGGUF(file);
  builds.push(performance.now() - t);
}

const text = textPath ? readFileSync(textPath, 'utf8') : englishText(1, 1 << 20);
const textBytes = new TextEncoder().encode(text).length;

let t = performance.now();
const ids = tok.encode(text);
const coldMs = performance.now() - t;

const encodeMs: number[] = [];
const decodeMs: number[] = [];
for (let i = 0; i < 5; i++) {
  t = performance.now();
  tok.encode(text);
  encodeMs.push(performance.now() - t);
  t = performance.now();
  const back = tok.decode(ids);
  decodeMs.push(performance.now() - t);
  if (back !== text) throw new Error('decode(encode(text)) !== text');
}

const result = {
  vocab_load_ms: Math.round(median(builds) * 10) / 10,
  encode_tok_s: Math.round(ids.length / (median(encodeMs) / 1000)),
  decode_tok_s: Math.round(ids.length / (median(decodeMs) / 1000)),
  machine: os.cpus()[0]?.model ?? 'unknown',
  encode_tok_s_cold: Math.round(ids.length / (coldMs / 1000)),
  vocab_load_first_ms: Math.round(builds[0]! * 10) / 10,
  gguf_read_ms: Math.round(ggufReadMs),
  text: textPath ?? 'generated English-like (test/corpus englishText, seed 1)',
  text_bytes: textBytes,
  tokens: ids.length,
  vocab_size: tok.vocabSize,
  node: process.version,
};
const json = JSON.stringify(result);
console.log(json);
if (outPath) writeFileSync(outPath, json + '\n');
