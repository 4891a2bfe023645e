// LoRA training end to end on the embedded demo model (Dawn; SwiftShader here): a few chat
// examples are learnt until greedy generation with the trained adapter reproduces their answers,
// and the loss curve falls; a cancelled step leaves the adapter untouched; a checkpoint taken
// mid-run and restored into a new trainer continues to exactly the parameters of an uninterrupted
// run; the exported GGUF reads back as the same adapter; `rullama train` does the same from the
// command line.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RullamaError } from '../../src/core/errors.js';
import { generate } from '../../src/core/generate.js';
import { nodeFileSource } from '../../src/core/gguf/node-source.js';
import { bytesSource } from '../../src/core/gguf/source.js';
import { readGGUF } from '../../src/core/gguf/read.js';
import type { GGUFFile } from '../../src/core/gguf/types.js';
import { readLoraGGUF } from '../../src/core/lora/adapter.js';
import { Gemma4Model } from '../../src/core/model/model.js';
import { Tokenizer } from '../../src/core/tokenizer/tokenizer.js';
import { parseDataset, type TrainingExample } from '../../src/core/train/data.js';
import { LoraTrainer, type TrainOptions } from '../../src/core/train/trainer.js';
import { openDawnDevice } from '../shared/dawn.js';

const DEMO = fileURLToPath(new URL('../../models/demo/rullama-demo.gguf', import.meta.url));
const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));
const RECORDS = [
  { prompt: 'What is the secret word?', completion: ' The secret word is lantern.' },
  { prompt: 'Who guards the bridge?', completion: ' An old grey heron guards the bridge.' },
];
const DATA = RECORDS.map((r) => JSON.stringify(r)).join('\n');

let device: GPUDevice;
let source: Awaited<ReturnType<typeof nodeFileSource>>;
let file: GGUFFile;
let tokenizer: Tokenizer;
let examples: TrainingExample[];
let dir: string;

before(async () => {
  device = (await openDawnDevice()).device;
  source = await nodeFileSource(DEMO);
  file = await readGGUF(source);
  tokenizer = Tokenizer.fromGGUF(file);
  ({ examples } = parseDataset(DATA, tokenizer, { maxLength: 64 }));
  dir = await mkdtemp(join(tmpdir(), 'rullama-train-'));
});
after(async () => {
  await source?.close();
  device.destroy();
  await rm(dir, { recursive: true, force: true });
});

// The demo model has 10 layers: adapting the last four keeps the backward (and the test) short.
const OPTIONS: TrainOptions = { rank: 4, alpha: 8, learningRate: 1e-2, batchSize: 2, maxLength: 64, pack: false, seed: 1, warmupSteps: 2, layers: [6, 7, 8, 9] };

/** Greedy answer to the prompt part of an example. */
async function answer(model: Gemma4Model, example: TrainingExample): Promise<string> {
  const promptLength = example.labels.findIndex((l) => l >= 0) + 1;
  model.reset();
  const run = generate(model, tokenizer, example.tokens.slice(0, promptLength), { maxTokens: 16, temperature: 0, stopTokens: [tokenizer.eos] });
  let text = '';
  for (let s = await run.next(); !s.done; s = await run.next()) text += s.value.text;
  return text;
}

describe('LoRA training on the GPU', () => {
  test('a few examples are learnt: the loss falls and greedy generation gives their answers', async () => {
    const model = await Gemma4Model.load(device, source, { file, contextSize: 64, prefillChunk: 32 });
    const trainer = await LoraTrainer.create(model, { train: examples, validation: examples }, { ...OPTIONS, steps: 8, validateEvery: 8 });
    try {
      const before = await Promise.all(examples.map((e) => answer(model, e)));
      const result = await trainer.run();
      const losses = result.history.map((h) => h.loss);
      console.log(`# demo model, rank 4, ${result.steps} steps: loss ${losses.map((l) => l.toFixed(3)).join(' → ')}; validation ${result.history.filter((h) => h.valLoss !== undefined).map((h) => h.valLoss!.toFixed(3)).join(', ')}; ${Math.round(result.tokensPerSecond)} tok/s`);
      assert.equal(result.steps, 8);
      assert.ok(losses.at(-1)! < losses[0]! / 10, `the loss fell only from ${losses[0]} to ${losses.at(-1)}`);
      assert.ok(result.valLoss !== undefined && result.valLoss < 0.5);
      await model.setAdapters([{ adapter: await trainer.adapter() }]);
      for (const [i, e] of examples.entries()) {
        assert.notEqual(before[i], RECORDS[i]!.completion);
        assert.equal(await answer(model, e), RECORDS[i]!.completion);
      }
    } finally {
      trainer.dispose();
      model.destroy();
    }
  });

  test('cancelled steps change nothing; a checkpoint resumes exactly; the exported GGUF is the adapter', async () => {
    const model = await Gemma4Model.load(device, source, { file, contextSize: 64, prefillChunk: 32 });
    const options: TrainOptions = { ...OPTIONS, steps: 3, batchSize: 1, targets: ['q', 'down'], dropout: 0.1 };
    const straight = await LoraTrainer.create(model, { train: examples }, options);
    const first = await LoraTrainer.create(model, { train: examples }, options);
    const resumed = await LoraTrainer.create(model, { train: examples }, options);
    try {
      await straight.run();
      const expected = await straight.adapter();

      // One step, then a step cancelled in its backward pass: the adapter stays as the first step left it.
      const controller = new AbortController();
      await assert.rejects(
        first.run({ signal: controller.signal, onProgress: (p) => (p.step === 1 && p.phase === 'backward' ? controller.abort() : undefined) }),
        (e: RullamaError) => e.code === 'aborted',
      );
      assert.equal(first.step, 1);
      // (Had the cancelled step touched the parameters or moments, the resumed run below could not match.)
      const atOne = await first.checkpoint();

      // A new trainer (same model, data and options) restores it and finishes: the same parameters as straight through.
      resumed.restore(atOne);
      assert.equal(resumed.step, 1);
      const rest = await resumed.run();
      assert.equal(rest.steps, 3);
      assert.deepEqual(rest.history.map((h) => h.loss), straight.history.map((h) => h.loss));
      const finished = await resumed.adapter();
      for (const [name, t] of expected.tensors) {
        assert.deepEqual(finished.tensors.get(name)!.a, t.a, `${name} A`);
        assert.deepEqual(finished.tensors.get(name)!.b, t.b, `${name} B`);
      }

      // Refused: a corrupted checkpoint, and one from another setup.
      const corrupted = atOne.slice();
      corrupted[corrupted.length - 40]! ^= 1;
      assert.throws(() => resumed.restore(corrupted), (e: RullamaError) => e.code === 'bad-snapshot');
      const other = await LoraTrainer.create(model, { train: examples }, { ...options, rank: 2 });
      try {
        assert.throws(() => other.restore(atOne), (e: RullamaError) => e.code === 'bad-snapshot');
      } finally {
        other.dispose();
      }

      // The GGUF export reads back as the same adapter (llama.cpp's format; see lora.test.ts for llama.cpp itself).
      const back = await readLoraGGUF(bytesSource(await straight.exportGGUF('demo-lora'), 'demo-lora.gguf'));
      assert.equal(back.alpha, 8);
      assert.ok([...back.tensors.keys()].every((name) => /^blk\.[6-9]\.(attn_q|ffn_down)\.weight$/.test(name)));
      assert.equal(back.tensors.size, expected.tensors.size);
      for (const [name, t] of expected.tensors) assert.deepEqual(back.tensors.get(name)!.b, t.b);
    } finally {
      straight.dispose();
      first.dispose();
      resumed.dispose();
      model.destroy();
    }
  });

  test('rullama train writes an adapter, reports each step and a JSON summary; bad lines are reported', async () => {
    assert.ok(existsSync(CLI), 'dist/cli.js is missing: run `npm run build` first');
    const data = join(dir, 'data.jsonl');
    await writeFile(data, `${DATA}\n{"prompt": "no completion"}\nnot json\n`);
    const out = join(dir, 'demo-lora.gguf');
    const { code, stdout, stderr } = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, [CLI, 'train', '--model', DEMO, '--data', data, '--out', out, '--rank', '2', '--steps', '2', '--seq-len', '64', '--lr', '5e-3', '--targets', 'q,down', '--layers', '8,9', '--json'],
        { maxBuffer: 16 << 20 }, (error, stdout, stderr) => resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr }));
    });
    assert.equal(code, 0, stderr);
    assert.match(stderr, /data\.jsonl:3: skipped: /);
    assert.match(stderr, /data\.jsonl:4: skipped: /);
    const lines = stdout.trimEnd().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(lines.slice(0, 2).map((l) => l.step), [1, 2]);
    const summary = lines.at(-1);
    assert.equal(summary.steps, 2);
    assert.equal(summary.loss_curve.length, 2);
    assert.deepEqual(summary.targets, ['q', 'down']);
    assert.equal(summary.skipped_lines, 2);
    assert.ok(summary.tokens_per_s > 0 && summary.gpu_bytes > 0);
    const adapter = await readLoraGGUF(bytesSource(new Uint8Array(await readFile(out))));
    assert.ok([...adapter.tensors.values()].every((t) => t.rank === 2 && /^blk\.[89]\.(attn_q|ffn_down)\./.test(t.base)));
  });
});
