import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { RullamaError } from '../../src/core/errors.js';
import { nodeFileSource } from '../../src/core/gguf/node-source.js';
import { findTensor, readGGUF, readTensorBytes } from '../../src/core/gguf/read.js';
import { bytesSource, blobSource } from '../../src/core/gguf/source.js';
import { GGMLType, GGUFValueType } from '../../src/core/gguf/types.js';
import { arr, craftGGUF, sampleGGUF, str, u32 } from '../shared/gguf-craft.js';
import { fuzzGGUF } from '../shared/gguf-fuzz-case.js';

const VOCAB = new URL('../../../shared/fixtures/gemma4-vocab/ggml-vocab-gemma-4.gguf', import.meta.url).pathname;

async function rejects(bytes: Uint8Array, code: string, pattern: RegExp): Promise<RullamaError> {
  try {
    await readGGUF(bytesSource(bytes, 'test.gguf'));
  } catch (e) {
    assert.ok(e instanceof RullamaError, `expected a RullamaError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    assert.match(e.message, pattern);
    return e;
  }
  assert.fail('the file was accepted');
}

describe('GGUF reader', () => {
  test('reads every metadata type, nested arrays and tensor infos', async () => {
    const f = await readGGUF(bytesSource(sampleGGUF()));
    const m = f.metadata;
    assert.equal(f.version, 3);
    assert.equal(m.get('general.architecture'), 'gemma4');
    assert.equal(m.get('test.u8'), 200);
    assert.equal(m.get('test.i8'), -5);
    assert.equal(m.get('test.u16'), 65000);
    assert.equal(m.get('test.i16'), -300);
    assert.equal(m.get('test.u32'), 4000000000);
    assert.equal(m.get('test.i32'), -123456);
    assert.equal(m.get('test.f32'), 1.5);
    assert.equal(m.get('test.bool'), true);
    assert.equal(m.get('test.u64'), 2n ** 60n, 'u64 beyond 2^53 stays exact as a bigint');
    assert.equal(m.get('test.i64'), -42);
    assert.equal(m.get('test.f64'), Math.PI);
    assert.deepEqual(m.get('test.strings'), ['▁hello', '', '日本', '🦙']);
    assert.deepEqual(m.get('test.f32s'), new Float32Array([1, -2, 0.25]));
    assert.deepEqual(m.get('test.bools'), [true, false]);
    assert.deepEqual(m.get('test.nested'), [new Uint32Array([1, 2]), new Uint32Array([])]);
    assert.equal(f.alignment, 64);
    assert.equal(f.dataOffset % 64, 0);
    assert.deepEqual(f.tensors.map((t) => [t.name, t.dims, t.type, t.byteSize, t.elementCount]), [
      ['a.weight', [32, 2], GGMLType.F32, 256, 64],
      ['b.weight', [64], GGMLType.Q8_0, 68, 64],
    ]);
    assert.equal(findTensor(f, 'b.weight').offset, f.dataOffset + 256);
    assert.throws(() => findTensor(f, 'nope'), /no tensor named nope/);
  });

  test('reads tensor data per row range', async () => {
    const bytes = sampleGGUF();
    const src = bytesSource(bytes);
    const f = await readGGUF(src);
    const a = findTensor(f, 'a.weight');
    const row1 = await readTensorBytes(src, a, 1, 1);
    assert.equal(row1.byteLength, 128);
    assert.deepEqual(row1, bytes.subarray(a.offset + 128, a.offset + 256));
    await assert.rejects(readTensorBytes(src, a, 1, 2), /outside tensor a.weight/);
  });

  test('keeps a leading U+FEFF in strings (some vocabulary tokens start with one)', async () => {
    const f = await readGGUF(bytesSource(craftGGUF({ kvs: [['k', str('\ufeff<?')], ['ascii', str('\ufeff')]] })));
    assert.equal(f.metadata.get('k'), '\ufeff<?');
    assert.equal(f.metadata.get('ascii'), '\ufeff');
  });

  test('reads GGUF v2 too', async () => {
    const f = await readGGUF(bytesSource(craftGGUF({ version: 2, kvs: [['k', str('v')]] })));
    assert.equal(f.version, 2);
  });

  test('reads the real Gemma 4 vocabulary header incrementally, from a file and a Blob', async () => {
    const src = await nodeFileSource(VOCAB);
    const reads: number[] = [];
    const counted = { ...src, read: (o: number, n: number) => (reads.push(n), src.read(o, n)) };
    const f = await readGGUF(counted);
    await src.close();
    assert.equal(f.metadata.get('general.architecture'), 'gemma4');
    assert.equal((f.metadata.get('tokenizer.ggml.tokens') as string[]).length, 262144);
    assert.ok((f.metadata.get('tokenizer.ggml.scores') as Float32Array) instanceof Float32Array);
    assert.ok(Math.max(...reads) <= 1 << 20, 'the header is read in chunks of at most 1 MiB');
    const fromBlob = await readGGUF(blobSource(new Blob([await readFile(VOCAB)]), 'vocab'));
    assert.deepEqual([...fromBlob.metadata.keys()], [...f.metadata.keys()]);
  });

  test('names the problem and the offset for each kind of bad header', async () => {
    const e = await rejects(craftGGUF({ magic: 0x12345678 }), 'bad-gguf', /not a GGUF file/);
    assert.equal(e.offset, 0);
    await rejects(craftGGUF({ version: 1 }), 'bad-gguf', /version 1.*obsolete/);
    await rejects(craftGGUF({ version: 0x03000000 }), 'bad-gguf', /big-endian/);
    await rejects(new Uint8Array(10), 'truncated', /too short/);
    await rejects(craftGGUF({ kvs: [['k', { type: 13 as GGUFValueType.UINT8, value: 0 }]] }), 'bad-gguf', /unknown value type 13/);
    await rejects(craftGGUF({ kvs: [['k', arr(GGUFValueType.UINT32, [u32(1)])]] }).map((b, i, a) => (i === 8 ? 0xff : b)), 'bad-gguf', /tensor count/);
    await rejects(craftGGUF({ kvs: [['k', str('a')], ['k', str('b')]] }), 'bad-gguf', /duplicate metadata key k/);
    await rejects(craftGGUF({ kvs: [['general.alignment', u32(48)]] }), 'bad-gguf', /power of two/);
    await rejects(craftGGUF({ tensors: [{ name: 't', dims: [32], type: 99, offset: 0 }], dataBytes: 128 }), 'bad-gguf', /unknown ggml type 99/);
    await rejects(craftGGUF({ tensors: [{ name: 't', dims: [30], type: GGMLType.Q8_0, offset: 0 }], dataBytes: 128 }), 'bad-gguf', /not a multiple of the Q8_0 block size/);
    await rejects(craftGGUF({ tensors: [{ name: 't', dims: [1, 2, 3, 4, 5], type: 0, offset: 0 }] }), 'bad-gguf', /5 dimensions/);
    await rejects(craftGGUF({ tensors: [{ name: 't', dims: [2 ** 30, 2 ** 30, 2 ** 10], type: 0, offset: 0 }] }), 'bad-gguf', /overflows/);
    await rejects(craftGGUF({ tensors: [{ name: 't', dims: [64], type: 0, offset: 4 }], dataBytes: 512 }), 'bad-gguf', /not aligned/);
    await rejects(craftGGUF({ tensors: [{ name: 't', dims: [64], type: 0, offset: 0 }], dataBytes: 100 }), 'truncated', /runs past the end/);
    await rejects(
      craftGGUF({ tensors: [{ name: 't', dims: [64], type: 0, offset: 0 }, { name: 'u', dims: [64], type: 0, offset: 128 }], dataBytes: 512 }),
      'bad-gguf', /overlap/,
    );
    await rejects(
      craftGGUF({ tensors: [{ name: 't', dims: [8], type: 0, offset: 0 }, { name: 't', dims: [8], type: 0, offset: 32 }], dataBytes: 64 }),
      'bad-gguf', /duplicate tensor name t/,
    );
    let nested = arr(GGUFValueType.UINT8, []);
    for (let i = 0; i < 6; i++) nested = arr(GGUFValueType.ARRAY, [nested]);
    await rejects(craftGGUF({ kvs: [['deep', nested]] }), 'bad-gguf', /nested deeper/);
  });

  test('a huge declared string or array length fails before any allocation', async () => {
    const bytes = craftGGUF({ kvs: [['k', str('abc')]] });
    const view = new DataView(bytes.buffer);
    // The value's length field sits after magic, version, two counts, the key and the type.
    const at = 24 + 8 + 1 + 4;
    view.setBigUint64(at, 2n ** 40n, true);
    const e = await rejects(bytes, 'bad-gguf', /string length/);
    assert.equal(e.offset, at);
  });

  test('fuzz: truncations, bit flips and random bytes never crash, hang or over-read', async () => {
    const report = await fuzzGGUF(1234, 1500);
    assert.deepEqual(report.failures, []);
    assert.ok(report.maxRead <= 1 << 20, `largest read ${report.maxRead}`);
    assert.ok(report.parsed > 0 && Object.keys(report.rejected).length >= 2, JSON.stringify(report.rejected));
  });

  test('cancellation through an AbortSignal', async () => {
    const controller = new AbortController();
    controller.abort();
    const src = await nodeFileSource(VOCAB);
    await assert.rejects(readGGUF(src, { signal: controller.signal }), (e: RullamaError) => e.code === 'aborted');
    await src.close();
  });

  test('a missing file is not-found', async () => {
    await assert.rejects(nodeFileSource('/nonexistent/x.gguf'), (e: RullamaError) => e.code === 'not-found');
  });
});
