// Training data (JSONL chat / prompt-completion / text, plain text; every bad line reported),
// packing and the split; and the AdamW optimiser, schedule and clipping against hand-worked values.
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { nodeFileSource } from '../../src/core/gguf/node-source.js';
import { readGGUF } from '../../src/core/gguf/read.js';
import { Tokenizer } from '../../src/core/tokenizer/tokenizer.js';
import { packExamples, parseDataset, splitDataset } from '../../src/core/train/data.js';
import { AdamW, clipByGlobalNorm, learningRateFactor } from '../../src/core/train/optimizer.js';

const VOCAB = fileURLToPath(new URL('../../../shared/fixtures/gemma4-vocab/ggml-vocab-gemma-4.gguf', import.meta.url));
let tok: Tokenizer;
before(async () => {
  const src = await nodeFileSource(VOCAB);
  try {
    tok = Tokenizer.fromGGUF(await readGGUF(src));
  } finally {
    await src.close();
  }
});

/** The text of the tokens whose positions are predicted (label ≥ 0 at the position before). */
function learnt(e: { tokens: number[]; labels: number[] }): string {
  return tok.decode(e.labels.filter((l) => l >= 0), { skipSpecial: false });
}

describe('training data', () => {
  test('chat records learn the assistant turns only, with their <turn|>', () => {
    const line = JSON.stringify({
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Hi there' },
        { role: 'assistant', content: 'Hello!' },
        { role: 'user', content: 'Name a colour.' },
        { role: 'assistant', content: 'Blue.' },
      ],
    });
    const { examples, problems } = parseDataset(line, tok, { maxLength: 512 });
    assert.deepEqual(problems, []);
    const [e] = examples;
    assert.equal(e!.tokens.length, e!.labels.length);
    assert.equal(learnt(e!), 'Hello!<turn|>Blue.<turn|>');
    // Every label is the next token.
    e!.labels.forEach((l, t) => l >= 0 && assert.equal(l, e!.tokens[t + 1]));
  });

  test('prompt/completion learns the completion and the end; text and plain text learn everything', () => {
    const content = [JSON.stringify({ prompt: 'The capital of France is', completion: ' Paris.' }), JSON.stringify({ text: 'One two three.' })].join('\n');
    const { examples, problems } = parseDataset(content, tok, { maxLength: 64 });
    assert.deepEqual(problems, []);
    assert.equal(learnt(examples[0]!), ' Paris.<eos>');
    assert.equal(learnt(examples[1]!), 'One two three.<eos>');
    const plain = parseDataset('First paragraph\nstill first.\n\n\nSecond one.\n', tok, { maxLength: 64 });
    assert.deepEqual(plain.examples.map((e) => [e.line, learnt(e)]), [[1, 'First paragraph\nstill first.<eos>'], [5, 'Second one.<eos>']]);
  });

  test('every bad line is reported with its number and reason; good lines are kept', () => {
    const lines = [
      '{"text": "fine"}',
      '{"messages": [{"role": "user", "content": "hi"}',
      '["not", "an", "object"]',
      '{"messages": [{"role": "wizard", "content": "x"}, {"role": "assistant", "content": "y"}]}',
      '{"messages": [{"role": "user", "content": "no answer"}]}',
      '{"prompt": "p"}',
      '{"something": 1}',
      '',
      JSON.stringify({ text: 'word '.repeat(100) }),
      '{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}',
    ];
    const { examples, problems } = parseDataset(lines.join('\n'), tok, { maxLength: 50 });
    assert.deepEqual(examples.map((e) => e.line), [1, 10]);
    assert.deepEqual(problems.map((p) => p.line), [2, 3, 4, 5, 6, 7, 9]);
    assert.match(problems[0]!.reason, /not valid JSON/);
    assert.match(problems[2]!.reason, /role must be one of/);
    assert.match(problems[3]!.reason, /no assistant/);
    assert.match(problems[6]!.reason, /more than the maximum length of 50/);
  });

  test('packing keeps examples whole and in order; the split is deterministic', () => {
    const { examples } = parseDataset(['a b c', 'd e', 'f g h i', 'j'].map((t) => JSON.stringify({ text: t })).join('\n'), tok, { maxLength: 64 });
    const lengths = examples.map((e) => e.tokens.length);
    const limit = lengths[0]! + lengths[1]!;
    const packed = packExamples(examples, limit);
    assert.equal(packed[0]!.tokens.length, limit);
    assert.ok(packed.every((p) => p.tokens.length <= limit && p.labels.length === p.tokens.length));
    assert.deepEqual(packed.flatMap((p) => p.tokens), examples.flatMap((e) => e.tokens));
    assert.throws(() => packExamples(examples, 2), /do not fit/);
    const items = Array.from({ length: 20 }, (_, i) => i);
    const a = splitDataset(items, 0.1, 3);
    assert.deepEqual(a, splitDataset(items, 0.1, 3));
    assert.equal(a.validation.length, 2);
    assert.deepEqual([...a.train, ...a.validation].sort((x, y) => x - y), items);
    assert.equal(splitDataset(items.slice(0, 10), 0.01, 1).validation.length, 1);
  });
});

describe('AdamW', () => {
  test('the first step moves each weight by lr·sign(g) (bias correction), decay is decoupled', () => {
    const p = Float32Array.from([1, -2, 0.5]);
    const opt = new AdamW([p], { learningRate: 0.1, weightDecay: 0.01, epsilon: 1e-12 });
    opt.update([Float32Array.from([0.3, -4, 0])]);
    assert.ok(Math.abs(p[0]! - (1 - 0.1 * (1 + 0.01 * 1))) < 1e-6);
    assert.ok(Math.abs(p[1]! - (-2 - 0.1 * (-1 + 0.01 * -2))) < 1e-6);
    assert.ok(Math.abs(p[2]! - (0.5 - 0.1 * 0.01 * 0.5)) < 1e-6);
  });

  test('minimises a quadratic; a saved state resumes exactly', () => {
    const target = Float32Array.from([3, -1, 2, 0.5]);
    const run = (steps: number, resumeAt = -1) => {
      let p = new Float32Array(4);
      let opt = new AdamW([p], { learningRate: 0.05 });
      for (let s = 0; s < steps; s++) {
        if (s === resumeAt) {
          const state = opt.saveState();
          p = p.slice();
          opt = new AdamW([p], { learningRate: 0.05 });
          opt.loadState(state);
        }
        const grad = p.map((v, i) => 2 * (v - target[i]!));
        opt.update([grad], 0.05 * learningRateFactor(s, { warmupSteps: 10, totalSteps: steps }));
      }
      return p;
    };
    const p = run(400);
    for (let i = 0; i < 4; i++) assert.ok(Math.abs(p[i]! - target[i]!) < 0.02, `${p[i]} vs ${target[i]}`);
    assert.deepEqual(run(400, 123), p);
    assert.throws(() => new AdamW([p], { learningRate: -1 }), /invalid AdamW/);
  });

  test('schedule and global-norm clipping', () => {
    const o = { warmupSteps: 4, totalSteps: 14 };
    assert.deepEqual([0, 1, 3].map((s) => learningRateFactor(s, o)), [0.25, 0.5, 1]);
    assert.equal(learningRateFactor(4, o), 1);
    assert.ok(Math.abs(learningRateFactor(9, o) - 0.5) < 1e-12);
    assert.equal(learningRateFactor(14, o), 0);
    assert.ok(Math.abs(learningRateFactor(9, { ...o, decay: 'linear', minRatio: 0.2 }) - 0.6) < 1e-12);
    const g = [Float32Array.from([3, 0]), Float32Array.from([0, 4])];
    assert.equal(clipByGlobalNorm(g, 1), 5);
    assert.ok(Math.abs(g[0]![0]! - 0.6) < 1e-7 && Math.abs(g[1]![1]! - 0.8) < 1e-7);
    assert.throws(() => clipByGlobalNorm([Float32Array.from([NaN])], 1), /not finite/);
  });
});
