/**
 * Agreement with llama.cpp's tokenizer (through node-llama-cpp, CPU, vocab only) on a seeded
 * corpus of a few thousand strings: English, many scripts, emoji, code, numbers, whitespace
 * runs, special-token strings in text, accents after punctuation. Every string must give the
 * same ids, with special parsing on and off. node-llama-cpp's `model.tokenize(text, special)`
 * calls `common_tokenize(vocab, text, add_special = false, parse_special = special)`: no BOS,
 * so we compare with `addBos: false`.
 */
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import { getLlama, LlamaLogLevel } from 'node-llama-cpp';
import { readGGUF } from '../../src/core/gguf/read.js';
import { nodeFileSource } from '../../src/core/gguf/node-source.js';
import { Tokenizer } from '../../src/core/tokenizer/tokenizer.js';
import { generateCorpus } from '../corpus/generate.js';

const VOCAB = fileURLToPath(new URL('../../../shared/fixtures/gemma4-vocab/ggml-vocab-gemma-4.gguf', import.meta.url));
const SEED = 20261127;
const COUNT = 4000;

const llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error });
const model = await llama.loadModel({ modelPath: VOCAB, vocabOnly: true });
const source = await nodeFileSource(VOCAB);
const tok = Tokenizer.fromGGUF(await readGGUF(source));
await source.close();

after(async () => {
  await model.dispose();
  await llama.dispose();
});

function compare(strings: readonly string[], parseSpecial: boolean): void {
  const failures: string[] = [];
  for (const s of strings) {
    const mine = tok.encode(s, { addBos: false, parseSpecial });
    const ref = Array.from(model.tokenize(s, parseSpecial) as readonly number[]);
    if (mine.length !== ref.length || mine.some((v, i) => v !== ref[i])) {
      failures.push(`${JSON.stringify(s)}\n  rullama:   [${mine.join(', ')}]\n  llama.cpp: [${ref.join(', ')}]`);
    }
  }
  assert.equal(failures.length, 0, `${failures.length} of ${strings.length} strings differ:\n${failures.slice(0, 20).join('\n')}`);
}

describe('tokenizer agrees with llama.cpp (node-llama-cpp)', () => {
  const corpus = generateCorpus(SEED, COUNT);

  it(`the corpus has at least 2,000 strings (${corpus.length})`, () => {
    assert.ok(corpus.length >= 2000);
  });

  for (const parseSpecial of [true, false]) {
    it(`same ids for every string, parseSpecial: ${parseSpecial}`, () => compare(corpus, parseSpecial));
  }
});
