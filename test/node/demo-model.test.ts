/**
 * The embedded demo model (models/demo/rullama-demo.gguf, issue 5): a small Gemma 4 the project
 * trained itself (scripts/demo-model/, models/demo/MODEL_CARD.md).
 *
 * - Its own BPE vocabulary: our tokenizer and llama.cpp's (node-llama-cpp, vocab only) give the
 *   same ids on the held-out questions and a generated multi-script corpus.
 * - Our GPU engine (Dawn; SwiftShader without a GPU) against llama.cpp (CPU) on the quantised
 *   file, with the bars of reference-llama.test.ts: on a real chat prompt longer than twice the
 *   sliding window (64), per position cosine of the log-probability vectors ≥ 0.995 (and of the
 *   centered vectors ≥ 0.99), argmax agreement wherever llama.cpp's top-two margin exceeds 0.1,
 *   and greedy agreement (ours may part from llama.cpp only at a near-tie, margin < 0.1).
 * - The ten held-out definition questions (models/demo/ci_questions.json; their exact form
 *   "What does X mean?" never occurs in training for these words): our engine's greedy answers
 *   are English (≥ 90% of the generated words are in /usr/share/dict/words, from Debian's
 *   wamerican) and at least half contain the definition's key word.
 *
 * Figures are printed on lines starting with '# '. Cost on 2 cores with SwiftShader: a few minutes,
 * mostly the ten answers (at most ANSWER_TOKENS tokens each).
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { getLlama, LlamaLogLevel, type Llama } from 'node-llama-cpp';
import { encodeChat } from '../../src/core/chat/template.js';
import { Engine } from '../../src/core/engine.js';
import { nodeFileSource } from '../../src/core/gguf/node-source.js';
import { readGGUF } from '../../src/core/gguf/read.js';
import { Gemma4Model } from '../../src/core/model/model.js';
import { Tokenizer } from '../../src/core/tokenizer/tokenizer.js';
import { generateCorpus } from '../corpus/generate.js';
import { openDawnDevice } from '../shared/dawn.js';
import { LlamaOracle, topTwo } from '../shared/llama-oracle.js';

const MODEL = fileURLToPath(new URL('../../models/demo/rullama-demo.gguf', import.meta.url));
const QUESTIONS = fileURLToPath(new URL('../../models/demo/ci_questions.json', import.meta.url));
const DICT = existsSync('/usr/share/dict/words') ? '/usr/share/dict/words' : '/usr/share/dict/american-english';

const MIN_COSINE = 0.995;
const MIN_CENTERED = 0.99;
const MARGIN = 0.1;
const GREEDY_STEPS = 24;
const PREFILL_CHUNK = 16;
const ANSWER_TOKENS = 32;
const SLIDING_WINDOW = 64;

interface CiQuestion {
  question: string;
  word: string;
  key: string;
  reference: string;
}

let llama: Llama;
let device: GPUDevice;
let tok: Tokenizer;
let source: Awaited<ReturnType<typeof nodeFileSource>>;

before(async () => {
  llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error });
  device = (await openDawnDevice()).device;
  source = await nodeFileSource(MODEL);
  tok = Tokenizer.fromGGUF(await readGGUF(source));
});

after(async () => {
  try {
    await source?.close();
    device?.destroy();
  } finally {
    await llama?.dispose();
  }
});

function logSoftmax(z: ArrayLike<number>): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < z.length; i++) max = Math.max(max, z[i]!);
  let sum = 0;
  for (let i = 0; i < z.length; i++) sum += Math.exp(z[i]! - max);
  const lse = max + Math.log(sum);
  return Float64Array.from(z, (v) => v - lse);
}

/** Cosine of the log-probability vectors and of the centered ones. */
function cosines(x: Float64Array, y: Float32Array): { cosine: number; centered: number } {
  let sx = 0, sy = 0, xy = 0, xx = 0, yy = 0;
  const n = x.length;
  for (let i = 0; i < n; i++) {
    const a = x[i]!;
    const b = y[i]!;
    sx += a;
    sy += b;
    xy += a * b;
    xx += a * a;
    yy += b * b;
  }
  return { cosine: xy / Math.sqrt(xx * yy), centered: (xy - (sx * sy) / n) / Math.sqrt((xx - (sx * sx) / n) * (yy - (sy * sy) / n)) };
}

describe('the demo model', () => {
  test('its file is small and is a Gemma 4 with its own vocabulary', async () => {
    const file = await readGGUF(source);
    assert.equal(file.metadata.get('general.architecture'), 'gemma4');
    assert.ok(source.size <= 30 * 1024 * 1024, `${source.size} bytes`);
    assert.ok(tok.vocabSize >= 2000 && tok.vocabSize <= 8192, `${tok.vocabSize} tokens`);
    for (const s of ['<pad>', '<eos>', '<bos>', '<|turn>', '<turn|>', '<0x00>', '<0xFF>']) assert.notEqual(tok.tokenId(s), undefined, s);
    console.log(`# ${source.size} bytes, ${tok.vocabSize} tokens, ${file.tensors.length} tensors`);
  });

  test('our tokenizer and llama.cpp give the same ids', async () => {
    const model = await llama.loadModel({ modelPath: MODEL, vocabOnly: true });
    try {
      const qs = JSON.parse(readFileSync(QUESTIONS, 'utf8')) as CiQuestion[];
      const strings = [...qs.flatMap((q) => [q.question, q.reference]), ...generateCorpus(5, 400)];
      const failures: string[] = [];
      for (const parseSpecial of [true, false]) {
        for (const s of strings) {
          const mine = tok.encode(s, { addBos: false, parseSpecial });
          const ref = Array.from(model.tokenize(s, parseSpecial) as readonly number[]);
          if (mine.length !== ref.length || mine.some((v, i) => v !== ref[i])) failures.push(`${JSON.stringify(s)}: [${mine}] vs [${ref}]`);
        }
      }
      assert.deepEqual(failures.slice(0, 10), [], `${failures.length} of ${strings.length * 2} differ`);
    } finally {
      await model.dispose();
    }
  });

  test('our engine agrees with llama.cpp on the quantised file', { timeout: 900_000 }, async () => {
    const prompt = encodeChat(tok, [
      { role: 'user', content: 'What does river mean?' },
      { role: 'assistant', content: 'River (noun) means a large natural stream of water (larger than a creek).' },
      { role: 'user', content: 'Continue this passage: In the beginning God created the heaven and the earth.' },
      { role: 'assistant', content: 'And the earth was without form, and void; and darkness was upon the face of the deep. And the Spirit of God moved upon the face of the waters.' },
      { role: 'user', content: 'Use the word harvest in a sentence.' },
      { role: 'assistant', content: 'The harvest was gathered before the first frost.' },
      { role: 'user', content: 'What is the meaning of the word harvest?' },
    ]);
    assert.ok(prompt.length > 2 * SLIDING_WINDOW, `${prompt.length} prompt tokens`);
    const oracle = await LlamaOracle.load(llama, MODEL, { contextSize: 256 });
    const model = await Gemma4Model.load(device, source, { contextSize: 256, prefillChunk: PREFILL_CHUNK, allLogits: true });
    try {
      const theirs = await oracle.logProbs(prompt);
      const theirGreedy = await oracle.greedy(prompt, GREEDY_STEPS);
      const ours = await model.feed(prompt, { logits: 'all', all: true } as unknown as Parameters<typeof model.feed>[1]);
      assert.equal(ours.length, prompt.length);
      let worstCos = 1, worstCentered = 1, decided = 0;
      const low: string[] = [];
      const argmax: string[] = [];
      for (let p = 0; p < prompt.length; p++) {
        const lp = logSoftmax(ours[p]!);
        const c = cosines(lp, theirs[p]!);
        worstCos = Math.min(worstCos, c.cosine);
        worstCentered = Math.min(worstCentered, c.centered);
        if (c.cosine < MIN_COSINE || c.centered < MIN_CENTERED) low.push(`position ${p}: cosine ${c.cosine.toFixed(6)}, centered ${c.centered.toFixed(6)}`);
        const t = topTwo(theirs[p]!);
        if (t.margin > MARGIN) {
          decided++;
          const mine = topTwo(lp).best;
          if (mine !== t.best) argmax.push(`position ${p}: ours ${mine}, llama.cpp ${t.best} (margin ${t.margin.toFixed(3)})`);
        }
      }
      // Greedy: ours continues one token at a time; it may part from llama.cpp only at a near-tie.
      let logits: ArrayLike<number> = ours[prompt.length - 1]!;
      const mine: number[] = [];
      let equal = 0;
      let parted = '';
      for (let s = 0; s < GREEDY_STEPS; s++) {
        if (s > 0) logits = (await model.feed([mine[s - 1]!]))[0]!;
        mine.push(topTwo(logits).best);
        if (mine[s] === theirGreedy[s]) {
          equal++;
          continue;
        }
        const t = topTwo(s === 0 ? theirs[prompt.length - 1]! : await oracle.nextLogProbs([...prompt, ...theirGreedy.slice(0, s)]));
        parted = `parted at step ${s}, llama.cpp margin ${t.margin.toFixed(3)}`;
        assert.ok(t.margin <= MARGIN, `greedy step ${s}: ours ${mine[s]}, llama.cpp ${theirGreedy[s]} (margin ${t.margin.toFixed(3)})`);
        break;
      }
      console.log(`# ${prompt.length} positions: cosine(log p) worst ${worstCos.toFixed(6)}, centered worst ${worstCentered.toFixed(5)}; argmax ${decided - argmax.length}/${decided} decided positions; greedy ${equal}/${GREEDY_STEPS} equal ${parted}`);
      console.log(`# greedy continuation: ${JSON.stringify(tok.decode(mine))}`);
      assert.deepEqual(low, [], 'positions below the cosine bars');
      assert.deepEqual(argmax, [], 'argmax disagreements where llama.cpp is decided');
    } finally {
      model.destroy();
      await oracle.dispose();
    }
  });

  test('greedy answers to the ten held-out questions are English and name the key word', { timeout: 1_200_000 }, async () => {
    const qs = JSON.parse(readFileSync(QUESTIONS, 'utf8')) as CiQuestion[];
    assert.equal(qs.length, 10);
    const dict = new Set(readFileSync(DICT, 'utf8').split('\n').map((w) => w.trim().toLowerCase()).filter(Boolean));
    const engine = await Engine.load(source, { device, contextSize: 256, prefillChunk: 32 });
    let words = 0;
    let known = 0;
    let withKey = 0;
    const unknown: string[] = [];
    try {
      for (const q of qs) {
        engine.reset();
        const r = await engine.chat([{ role: 'user', content: q.question }], { temperature: 0, maxTokens: ANSWER_TOKENS }).result;
        const found = r.text.match(/[A-Za-z]+(?:'[A-Za-z]+)?/g) ?? [];
        // A word cut by the token limit is not judged.
        if (r.stats.stoppedBy === 'max-tokens' && /[A-Za-z']$/.test(r.text)) found.pop();
        for (const w of found) {
          words++;
          if (dict.has(w.toLowerCase())) known++;
          else unknown.push(w);
        }
        const hit = new RegExp(`\\b${q.key}`, 'i').test(r.text);
        if (hit) withKey++;
        console.log(`# ${hit ? '+' : '-'} ${q.question} → ${JSON.stringify(r.text)} (key "${q.key}", ${r.stats.decodeTokensPerSecond.toFixed(1)} tok/s)`);
      }
    } finally {
      await engine.dispose();
    }
    console.log(`# dictionary words ${known}/${words} (${((100 * known) / words).toFixed(1)}%); not in the list: ${unknown.join(' ')}; key word in ${withKey}/10 answers`);
    assert.ok(words >= 50, `${words} words generated`);
    assert.ok(known / words >= 0.9, `${known}/${words} generated words are dictionary words`);
    assert.ok(withKey >= 5, `${withKey}/10 answers contain the key word`);
  });
});
