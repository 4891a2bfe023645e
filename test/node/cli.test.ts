// The `rullama` command as users run it: the built dist/cli.js in a child process.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeTinyModel } from '../fixtures/index.js';
import { nodeFileSource } from '../../src/core/gguf/node-source.js';
import { readGGUF } from '../../src/core/gguf/read.js';
import { writeLoraGGUF } from '../../src/core/lora/adapter.js';
import { randomAdapter } from '../shared/random-adapter.js';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));
const VOCAB = fileURLToPath(new URL('../../../shared/fixtures/gemma4-vocab/ggml-vocab-gemma-4.gguf', import.meta.url));

function run(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  assert.ok(existsSync(CLI), 'dist/cli.js is missing: run `npm run build` first');
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { maxBuffer: 64 << 20 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
    });
  });
}

describe('rullama CLI', () => {
  test('logits on the GPU match the float64 CPU backend; generate streams text and ends with JSON stats', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'rullama-cli-'));
    try {
      const { path } = await writeTinyModel('tiny-q8', dir);
      const gpuOut = join(dir, 'gpu.bin');
      const cpuOut = join(dir, 'cpu.bin');
      const gpu = await run('logits', '--model', path, '--tokens', '2,9259,1902,236888', '--out', gpuOut);
      assert.equal(gpu.code, 0, gpu.stderr);
      assert.deepEqual(JSON.parse(gpu.stdout), { positions: 4, vocab: 262144, out: gpuOut, backend: 'gpu', adapters: [] });
      assert.equal((await run('logits', '--model', path, '--tokens', '2,9259,1902,236888', '--out', cpuOut, '--backend', 'cpu')).code, 0);
      const a = new Float32Array((await readFile(gpuOut)).buffer.slice(0));
      const b = new Float32Array((await readFile(cpuOut)).buffer.slice(0));
      assert.equal(a.length, 4 * 262144);
      let num = 0;
      let den = 0;
      for (let i = 0; i < a.length; i++) {
        num += (a[i]! - b[i]!) ** 2;
        den += b[i]! ** 2;
      }
      assert.ok(Math.sqrt(num / den) < 1e-3, `relative L2 ${Math.sqrt(num / den)}`);

      const gen = await run('generate', '--model', path, '--prompt', 'Hello', '--max-tokens', '4', '--json');
      assert.equal(gen.code, 0, gen.stderr);
      const lines = gen.stdout.trimEnd().split('\n');
      const stats = JSON.parse(lines.at(-1)!);
      assert.equal(stats.ids.length, 4);
      assert.equal(stats.generatedTokens, 4);
      assert.equal(stats.stoppedBy, 'max-tokens');
      assert.ok(stats.gpu_bytes > 0 && stats.decodeTokensPerSecond > 0);
      const again = await run('generate', '--model', path, '--prompt', 'Hello', '--max-tokens', '4', '--json');
      assert.deepEqual(JSON.parse(again.stdout.trimEnd().split('\n').at(-1)!).ids, stats.ids, 'greedy generation is deterministic');

      const bench = await run('bench', '--model', path, '--prompt-tokens', '20', '--gen-tokens', '3', '--runs', '1', '--json');
      assert.equal(bench.code, 0, bench.stderr);
      const record = JSON.parse(bench.stdout);
      for (const key of ['prefill_tok_s', 'decode_tok_s', 'ttft_ms', 'gpu_bytes', 'load_ms']) assert.ok(record[key] > 0, `${key}: ${record[key]}`);
      assert.match(record.adapter, /\w/);
      assert.equal(record.prompt_tokens, 20);
      assert.equal((await run('bench', '--model', path, '--gen-tokens', '0')).code, 2);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('--adapter applies LoRA adapter files at their scales on the GPU and the CPU alike', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'rullama-cli-'));
    try {
      const { path } = await writeTinyModel('tiny-q8', dir);
      const source = await nodeFileSource(path);
      const model = await readGGUF(source);
      await source.close();
      const adapterPath = join(dir, 'my:adapter.gguf');
      await writeFile(adapterPath, await writeLoraGGUF(randomAdapter(model, 4, 8)));
      const read = async (out: string) => new Float32Array((await readFile(out)).buffer.slice(0));
      const ids = ['--model', path, '--tokens', '2,9259,1902,236888'];
      const gpu = await run('logits', ...ids, '--out', join(dir, 'gpu.bin'), '--adapter', `${adapterPath}:0.5`);
      assert.equal(gpu.code, 0, gpu.stderr);
      assert.deepEqual(JSON.parse(gpu.stdout).adapters, [{ name: 'random-5', scale: 0.5, tensors: randomAdapter(model, 4, 8).tensors.size }]);
      assert.equal((await run('logits', ...ids, '--out', join(dir, 'cpu.bin'), '--backend', 'cpu', '--adapter', `${adapterPath}:0.5`)).code, 0);
      assert.equal((await run('logits', ...ids, '--out', join(dir, 'base.bin'), '--backend', 'cpu')).code, 0);
      const [a, b, base] = [await read(join(dir, 'gpu.bin')), await read(join(dir, 'cpu.bin')), await read(join(dir, 'base.bin'))];
      const rel = (x: Float32Array, y: Float32Array) => {
        let num = 0;
        let den = 0;
        for (let i = 0; i < x.length; i++) {
          num += (x[i]! - y[i]!) ** 2;
          den += y[i]! ** 2;
        }
        return Math.sqrt(num / den);
      };
      assert.ok(rel(a, b) < 1e-3, `GPU vs CPU with the adapter: relative L2 ${rel(a, b)}`);
      assert.ok(rel(b, base) > 0.05, `the adapter changes the logits by only ${rel(b, base)}`);

      const gen = await run('generate', '--model', path, '--prompt', 'Hello', '--max-tokens', '3', '--json', '--adapter', adapterPath);
      assert.equal(gen.code, 0, gen.stderr);
      assert.equal(JSON.parse(gen.stdout.trimEnd().split('\n').at(-1)!).adapters[0].scale, 1);
      assert.equal((await run('logits', ...ids, '--out', join(dir, 'x.bin'), '--adapter', `${adapterPath}:`)).code, 2);
      const notAdapter = await run('logits', ...ids, '--out', join(dir, 'x.bin'), '--adapter', path);
      assert.equal(notAdapter.code, 1);
      assert.match(notAdapter.stderr, /not a usable LoRA adapter.*\[bad-gguf\]/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('inspect prints one JSON object', async () => {
    const { code, stdout } = await run('inspect', VOCAB);
    assert.equal(code, 0);
    const summary = JSON.parse(stdout);
    assert.equal(summary.architecture, 'gemma4');
    assert.equal(summary.tokenizer.vocabSize, 262144);
    assert.equal(summary.hyperParameters.block_count, 30);
    assert.deepEqual(summary.tensors, []);
  });

  test('tokenize prints the ids as one JSON array, with and without BOS', async () => {
    assert.deepEqual(JSON.parse((await run('tokenize', '--model', VOCAB, '--', 'Hello world')).stdout), [2, 9259, 1902]);
    assert.deepEqual(JSON.parse((await run('tokenize', '--model', VOCAB, '--no-bos', '--', 'hello 👋 world')).stdout), [23391, 155818, 1902]);
    assert.deepEqual(JSON.parse((await run('tokenize', '--model', VOCAB, '--no-bos', '--', '<|turn>user')).stdout), [105, 2364]);
  });

  test('detokenize turns ids back into text', async () => {
    const { code, stdout } = await run('detokenize', '--model', VOCAB, '2,9259,1902');
    assert.equal(code, 0);
    assert.equal(stdout, 'Hello world\n');
  });

  test('bad paths, bad files, bad ids and bad usage give one line and a non-zero exit', async () => {
    const missing = await run('inspect', '/no/such/file.gguf');
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /^rullama inspect: no such file: \/no\/such\/file\.gguf \[not-found\]\n$/);
    const notGguf = await run('inspect', fileURLToPath(new URL('../../package.json', import.meta.url)));
    assert.equal(notGguf.code, 1);
    assert.match(notGguf.stderr, /not a GGUF file.*\[bad-gguf\]\n$/);
    assert.equal(notGguf.stderr.trim().split('\n').length, 1);
    const badId = await run('detokenize', '--model', VOCAB, '999999');
    assert.equal(badId.code, 1);
    assert.match(badId.stderr, /\[bad-token\]/);
    const usage = await run('tokenize', '--', 'x');
    assert.equal(usage.code, 2);
    assert.equal((await run('nonsense')).code, 2);
  });
});
