// The `rullama` command as users run it: the built dist/cli.js in a child process.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
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
