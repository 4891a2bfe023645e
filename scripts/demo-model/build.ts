/**
 * Steps of the demo model's recipe that run in Node (see scripts/demo-model/README.md):
 *
 *   node --import ./scripts/ts-loader.mjs scripts/demo-model/build.ts vocab [OUT.gguf]
 *       vocabulary-only GGUF (demo metadata + tokenizer keys, no tensors), default tmp/demo-model/vocab.gguf
 *   … build.ts check-tokenizer [VOCAB.gguf]
 *       our Tokenizer vs llama.cpp (node-llama-cpp, vocab only) on held-out text and a generated corpus
 *   … build.ts encode [DATA_DIR] [OUT_DIR]
 *       tokenises train/heldout JSONL (Gemma 4 chat template, our tokenizer) into
 *       OUT_DIR/{train,heldout}.u16 (token ids, uint16 LE) and .idx (sample starts, uint32 LE)
 *   … build.ts gguf WEIGHTS_DIR OUT.gguf [q4_k_m|f32]
 *       trained weights (weights.json + shards from train.py) → GGUF with our writer and quantisers
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { dirname } from 'node:path';
import { nodeFileSource } from '../../src/core/gguf/node-source.js';
import { readGGUF } from '../../src/core/gguf/read.js';
import { planGGUF } from '../../src/core/gguf/write.js';
import { renderChat, type ChatMessage } from '../../src/core/chat/template.js';
import { Tokenizer } from '../../src/core/tokenizer/tokenizer.js';
import { gemma4Metadata, writeGGUFFile, typeSummary } from '../../test/fixtures/gemma4-model.js';
import { demoConfig, demoTokenizerEntries, readVocabJson, ROOT, writeDemoGGUF } from './model.js';

interface Sample {
  kind: 'chat' | 'text';
  turns?: [string, string][];
  text?: string;
}

/** The text a sample is trained on: the chat template for chats, `<bos>` + text otherwise. */
export function sampleText(s: Sample): string {
  if (s.kind === 'text') return `<bos>${s.text!}`;
  const messages: ChatMessage[] = [];
  for (const [u, m] of s.turns!) messages.push({ role: 'user', content: u }, { role: 'assistant', content: m });
  return renderChat(messages, { addGenerationPrompt: false });
}

async function loadTokenizer(path: string): Promise<Tokenizer> {
  const src = await nodeFileSource(path);
  try {
    return Tokenizer.fromGGUF(await readGGUF(src));
  } finally {
    await src.close();
  }
}

async function* jsonl(path: string): AsyncGenerator<Sample> {
  const rl = createInterface({ input: createReadStream(path), crlfDelay: Infinity });
  for await (const line of rl) if (line.trim()) yield JSON.parse(line) as Sample;
}

async function cmdVocab(out = `${ROOT}tmp/demo-model/vocab.gguf`): Promise<void> {
  await mkdir(dirname(out), { recursive: true });
  const meta = gemma4Metadata(demoConfig(), await demoTokenizerEntries());
  const plan = planGGUF({ metadata: meta, tensors: [] });
  const w = await writeGGUFFile(out, plan, () => [], true);
  console.log(JSON.stringify({ out, bytes: w.bytes, sha256: w.sha256 }));
}

async function cmdEncode(dataDir = `${ROOT}tmp/demo-model/data`, outDir = `${ROOT}tmp/demo-model/carry`, vocab = `${ROOT}tmp/demo-model/vocab.gguf`): Promise<void> {
  const tok = await loadTokenizer(vocab);
  await mkdir(outDir, { recursive: true });
  const stats: Record<string, unknown> = {};
  for (const split of ['train', 'heldout']) {
    const ids: number[] = [];
    const starts: number[] = [];
    let bytes = 0;
    let byteFallback = 0;
    for await (const s of jsonl(`${dataDir}/${split}.jsonl`)) {
      const text = sampleText(s);
      bytes += text.length;
      const t = tok.encode(text, { addBos: false, parseSpecial: true });
      if (t[0] !== tok.bos) throw new Error('a sample does not start with <bos>');
      starts.push(ids.length);
      for (const x of t) {
        if (x >= 115 && x < 115 + 256) byteFallback++;
        ids.push(x);
      }
    }
    const u16 = Uint16Array.from(ids);
    await writeFile(`${outDir}/${split}.u16`, new Uint8Array(u16.buffer));
    await writeFile(`${outDir}/${split}.idx`, new Uint8Array(Uint32Array.from(starts).buffer));
    stats[split] = { samples: starts.length, tokens: ids.length, chars: bytes, chars_per_token: +(bytes / ids.length).toFixed(3), byte_fallback_tokens: byteFallback };
  }
  console.log(JSON.stringify(stats));
}

async function cmdCheckTokenizer(vocab = `${ROOT}tmp/demo-model/vocab.gguf`): Promise<void> {
  const { getLlama, LlamaLogLevel } = await import('node-llama-cpp');
  const { generateCorpus } = await import('../../test/corpus/generate.js');
  const tok = await loadTokenizer(vocab);
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error });
  const model = await llama.loadModel({ modelPath: vocab, vocabOnly: true });
  const strings: string[] = [];
  let n = 0;
  for await (const s of jsonl(`${ROOT}tmp/demo-model/data/heldout.jsonl`)) {
    if (n++ % 4 === 0) strings.push(sampleText(s));
    if (strings.length >= 1000) break;
  }
  strings.push(...generateCorpus(20261127, 3000));
  let bad = 0;
  let tokens = 0;
  for (const parseSpecial of [true, false]) {
    for (const s of strings) {
      const mine = tok.encode(s, { addBos: false, parseSpecial });
      const ref = Array.from(model.tokenize(s, parseSpecial) as readonly number[]);
      tokens += mine.length;
      if (mine.length !== ref.length || mine.some((v, i) => v !== ref[i])) {
        if (bad++ < 10) console.log(`DIFF ${JSON.stringify(s).slice(0, 200)}\n  ours  [${mine.slice(0, 40)}]\n  llama [${ref.slice(0, 40)}]`);
      }
    }
  }
  const sample = 'What does water mean?';
  console.log(JSON.stringify({ strings: strings.length * 2, tokens, differ: bad, example: { text: sample, ids: tok.encode(sample), pieces: tok.encode(sample, { addBos: false }).map((i) => tok.decode([i])) } }));
  await model.dispose();
  await llama.dispose();
  if (bad) process.exit(1);
}

async function cmdGGUF(weightsDir: string, out: string, precision: 'q4_k_m' | 'f32' = 'q4_k_m'): Promise<void> {
  const w = await writeDemoGGUF(weightsDir, out, precision);
  const params = w.tensors.reduce((a, t) => a + t.dims.reduce((x, y) => x * y, 1), 0);
  console.log(JSON.stringify({ out, bytes: w.bytes, sha256: w.sha256, params, types: typeSummary(w.tensors) }));
}

const [cmd, ...rest] = process.argv.slice(2);
const run: Record<string, (...a: string[]) => Promise<void>> = {
  vocab: cmdVocab,
  encode: cmdEncode,
  'check-tokenizer': cmdCheckTokenizer,
  gguf: (a, b, c) => cmdGGUF(a!, b!, (c ?? 'q4_k_m') as 'q4_k_m' | 'f32'),
};
if (!cmd || !run[cmd]) {
  console.error('usage: build.ts vocab|encode|check-tokenizer|gguf …');
  process.exit(2);
}
await run[cmd]!(...rest);
