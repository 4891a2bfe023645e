/**
 * The streaming GGUF writer and the fixture library: writes every tiny Gemma 4 config, reads it
 * back (names, shapes, dtypes, metadata, weight statistics), checks determinism, builds an
 * Ollama-style store and a text-only copy of its blob, and loads the files in node-llama-cpp
 * (llama.cpp CPU), including a short evaluation. The 6 GB E2B-shaped model has its own file,
 * fixtures-e2b.test.ts.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { getLlama, LlamaLogLevel, type Llama, type Token } from 'node-llama-cpp';
import { RullamaError } from '../../src/core/errors.js';
import { nodeFileSource } from '../../src/core/gguf/node-source.js';
import { readGGUF, readTensorBytes } from '../../src/core/gguf/read.js';
import { bytesSource } from '../../src/core/gguf/source.js';
import { GGMLType, GGUFValueType, typeName, type GGUFFile } from '../../src/core/gguf/types.js';
import {
  GGUFMetadata,
  arrayOf,
  memorySink,
  planGGUF,
  writeGGUF,
  type GGUFMetaEntry,
} from '../../src/core/gguf/write.js';
import { dequantize } from '../../src/core/quant/dequant.js';
import {
  GEMMA4_VOCAB_PATH,
  GEMMA4_VOCAB_SIZE,
  TINY_CONFIGS,
  TINY_CONFIG_NAMES,
  fallbackType,
  ffnWidth,
  gemma4Tensors,
  headDim,
  kvDonor,
  loadGemma4Tokenizer,
  readTypedMetadata,
  textOnlyCopy,
  useMoreBits,
  writeGemma4Model,
  writeOllamaStore,
  writeTinyModel,
  type Gemma4Config,
  type ModelTensor,
  type OllamaStoreResult,
  type TinyConfigName,
  type WrittenFile,
} from '../fixtures/index.js';

let dir: string;
const written = new Map<TinyConfigName, WrittenFile>();
let llama: Llama;
const llamaLog: string[] = [];

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'rullama-fixtures-'));
  llama = await getLlama({
    gpu: false,
    build: 'never',
    logLevel: LlamaLogLevel.warn,
    logger: (_level, message) => void llamaLog.push(message),
  });
});

after(async () => {
  try {
    if (dir) await rm(dir, { recursive: true, force: true });
  } finally {
    await llama?.dispose();
  }
});

async function withFile<T>(path: string, f: (src: Awaited<ReturnType<typeof nodeFileSource>>, file: GGUFFile) => Promise<T>): Promise<T> {
  const src = await nodeFileSource(path);
  try {
    return await f(src, await readGGUF(src));
  } finally {
    await src.close();
  }
}

async function sha256File(path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex');
}

// ---------------------------------------------------------------------------------------------
// The writer on its own
// ---------------------------------------------------------------------------------------------

describe('GGUF writer', () => {
  const allTypes = (): GGUFMetadata =>
    new GGUFMetadata()
      .string('general.architecture', 'test')
      .u8('t.u8', 255)
      .i8('t.i8', -128)
      .u16('t.u16', 65535)
      .i16('t.i16', -32768)
      .u32('t.u32', 4294967295)
      .i32('t.i32', -2147483648)
      .f32('t.f32', 1.5)
      .f64('t.f64', Math.PI)
      .bool('t.bool', true)
      .string('t.str', 'héllo ▁wörld 👋')
      .set('t.rawstr', GGUFValueType.STRING, Uint8Array.from([0xef, 0xbb, 0xbf, 0x2f, 0x2f]))
      .u64('t.u64', 2n ** 64n - 1n)
      .i64('t.i64', -(2n ** 63n))
      .u64('t.u64small', 42)
      .array('t.arr.str', GGUFValueType.STRING, ['a', '', 'ü', Uint8Array.from([0xff, 0xfe])])
      .array('t.arr.bool', GGUFValueType.BOOL, [true, false, true])
      .array('t.arr.f32', GGUFValueType.FLOAT32, Float32Array.from([1, -2, 0.25]))
      .array('t.arr.f32plain', GGUFValueType.FLOAT32, [1, -2, 0.25])
      .array('t.arr.i32', GGUFValueType.INT32, Int32Array.from([-1, 2, 3]))
      .array('t.arr.u64', GGUFValueType.UINT64, [1n, 2n ** 63n])
      .array('t.arr.i64', GGUFValueType.INT64, BigInt64Array.from([-5n, 7n]))
      .array('t.arr.f64', GGUFValueType.FLOAT64, [0.1, 1e300])
      .array('t.arr.u8', GGUFValueType.UINT8, Uint8Array.from([1, 2, 3]))
      .array('t.arr.empty', GGUFValueType.UINT32, [])
      .array('t.arr.nested', arrayOf(GGUFValueType.UINT32), [[1, 2], [], [3]])
      .array('t.arr.nested2', arrayOf(arrayOf(GGUFValueType.STRING)), [[['x'], ['y', 'z']]]);

  it('writes every metadata type and reads back through readGGUF', async () => {
    const tensors = [
      { name: 'a', dims: [4], type: GGMLType.F32 },
      { name: 'b.q', dims: [64, 3], type: GGMLType.Q8_0 },
      { name: 'c.k', dims: [256, 2], type: GGMLType.Q4_K },
    ];
    const plan = planGGUF({ metadata: allTypes(), tensors });
    assert.equal(plan.dataOffset % 32, 0);
    assert.deepEqual(plan.tensors.map((t) => t.byteSize), [16, 2 * 3 * 34, 2 * 144]);
    const sink = memorySink();
    const n = await writeGGUF(plan, sink, (t) => new Uint8Array(t.byteSize).fill(t.index + 1));
    const bytes = sink.bytes();
    assert.equal(n, bytes.byteLength);
    assert.equal(n, plan.fileSize);
    const src = bytesSource(bytes, 'mem');
    const f = await readGGUF(src);
    const m = f.metadata;
    assert.equal(f.version, 3);
    assert.equal(m.get('t.u8'), 255);
    assert.equal(m.get('t.i8'), -128);
    assert.equal(m.get('t.u16'), 65535);
    assert.equal(m.get('t.i16'), -32768);
    assert.equal(m.get('t.u32'), 4294967295);
    assert.equal(m.get('t.i32'), -2147483648);
    assert.equal(m.get('t.f32'), 1.5);
    assert.equal(m.get('t.f64'), Math.PI);
    assert.equal(m.get('t.bool'), true);
    assert.equal(m.get('t.str'), 'héllo ▁wörld 👋');
    assert.equal(m.get('t.u64'), 2n ** 64n - 1n);
    assert.equal(m.get('t.i64'), -(2n ** 63n));
    assert.equal(m.get('t.u64small'), 42);
    assert.deepEqual(m.get('t.arr.bool'), [true, false, true]);
    assert.deepEqual(m.get('t.arr.f32'), Float32Array.from([1, -2, 0.25]));
    assert.deepEqual(m.get('t.arr.f32plain'), Float32Array.from([1, -2, 0.25]));
    assert.deepEqual(m.get('t.arr.i32'), Int32Array.from([-1, 2, 3]));
    assert.deepEqual(m.get('t.arr.u64'), BigUint64Array.from([1n, 2n ** 63n]));
    assert.deepEqual(m.get('t.arr.i64'), BigInt64Array.from([-5n, 7n]));
    assert.deepEqual(m.get('t.arr.f64'), Float64Array.from([0.1, 1e300]));
    assert.deepEqual(m.get('t.arr.u8'), Uint8Array.from([1, 2, 3]));
    assert.deepEqual(m.get('t.arr.empty'), new Uint32Array(0));
    assert.deepEqual(m.get('t.arr.nested'), [Uint32Array.from([1, 2]), new Uint32Array(0), Uint32Array.from([3])]);
    assert.deepEqual(m.get('t.arr.nested2'), [[['x'], ['y', 'z']]]);
    assert.deepEqual((m.get('t.arr.str') as string[]).slice(0, 3), ['a', '', 'ü']);
    for (const t of f.tensors) {
      const p = plan.tensors.find((x) => x.name === t.name)!;
      assert.equal(t.offset, p.offset);
      assert.deepEqual(t.dims, p.dims);
      assert.equal(t.type, p.type);
      assert.ok((await readTensorBytes(src, t)).every((b) => b === p.index + 1));
    }
    // The typed reader recovers exact types and raw (non-UTF-8, BOM-prefixed) strings.
    const typed = new Map((await readTypedMetadata(src, f)).map((e) => [e[0], e] as const));
    assert.equal(typed.get('t.u32')![1], GGUFValueType.UINT32);
    assert.equal(typed.get('t.i32')![1], GGUFValueType.INT32);
    assert.deepEqual(typed.get('t.arr.nested')![1], arrayOf(arrayOf(GGUFValueType.UINT32)));
    assert.equal(typed.get('t.rawstr')![2], '\ufeff//'); // valid UTF-8: a string, BOM kept
    assert.deepEqual((typed.get('t.arr.str')![2] as unknown[])[3], Uint8Array.from([0xff, 0xfe]));
    // Re-writing the typed entries reproduces the header byte for byte.
    const again = planGGUF({ metadata: [...typed.values()], tensors });
    assert.deepEqual(again.header, plan.header);
  });

  it('streams chunks from sync and async producers and pads to a custom alignment', async () => {
    const tensors = [
      { name: 'y', dims: [3], type: GGMLType.F32 },
      { name: 'x', dims: [32, 5], type: GGMLType.F16 },
    ];
    const plan = planGGUF({ metadata: [['general.architecture', GGUFValueType.STRING, 'test']], tensors, alignment: 64 });
    assert.equal(plan.alignment, 64);
    assert.equal(plan.tensors[1]!.relOffset, 64); // 12 bytes padded to 64
    assert.equal(plan.fileSize, plan.dataOffset + 64 + 320);
    const sink = memorySink();
    await writeGGUF(plan, sink, (t) => {
      if (t.name === 'x') {
        return (async function* () {
          for (let i = 0; i < 5; i++) yield new Uint8Array(64).fill(i);
        })();
      }
      return [new Uint8Array(4), new Uint8Array(8).fill(9)];
    });
    const f = await readGGUF(bytesSource(sink.bytes()));
    assert.equal(f.alignment, 64);
    assert.equal(f.metadata.get('general.alignment'), 64);
    assert.equal(f.tensors[1]!.offset % 64, 0);
    const x = await readTensorBytes(bytesSource(sink.bytes()), f.tensors[1]!);
    assert.deepEqual([...x.subarray(0, 3)], [0, 0, 0]);
    assert.deepEqual([...x.subarray(256, 259)], [4, 4, 4]);
    assert.equal(sink.bytes().byteLength, plan.fileSize);
  });

  it('refuses producers that deliver the wrong number of bytes, naming the tensor', async () => {
    const plan = planGGUF({ metadata: [], tensors: [{ name: 'blk.0.w', dims: [256, 2], type: GGMLType.Q4_K }] });
    const isBad = (re: RegExp) => (e: unknown) => e instanceof RullamaError && e.code === 'bad-argument' && re.test(e.message);
    await assert.rejects(writeGGUF(plan, memorySink(), () => new Uint8Array(287)), isBad(/blk\.0\.w.*287 bytes.*Q4_K \[256, 2\] takes 288/));
    await assert.rejects(writeGGUF(plan, memorySink(), () => [new Uint8Array(200), new Uint8Array(100)]), isBad(/blk\.0\.w.*more than the 288 bytes/));
  });

  it('validates metadata values, names and shapes', () => {
    const bad = (metadata: GGUFMetaEntry[], tensors: { name: string; dims: number[]; type: GGMLType }[] = []) => () => planGGUF({ metadata, tensors });
    const code = (e: unknown) => e instanceof RullamaError && e.code === 'bad-argument';
    assert.throws(bad([['k', GGUFValueType.UINT8, 256]]), code);
    assert.throws(bad([['k', GGUFValueType.UINT32, -1]]), code);
    assert.throws(bad([['k', GGUFValueType.INT32, 1.5]]), code);
    assert.throws(bad([['k', GGUFValueType.UINT64, -1n]]), code);
    assert.throws(bad([['k', GGUFValueType.UINT64, 2 ** 60]]), code); // not a safe integer
    assert.throws(bad([['k', GGUFValueType.BOOL, 1]]), code);
    assert.throws(bad([['k', GGUFValueType.STRING, 5]]), code);
    assert.throws(bad([['k', arrayOf(GGUFValueType.STRING), 'abc']]), code);
    assert.throws(bad([['k', GGUFValueType.UINT8, 1], ['k', GGUFValueType.UINT8, 2]]), /duplicate metadata key k/);
    assert.throws(bad([], [{ name: 'w', dims: [100], type: GGMLType.Q8_0 }]), /multiple of the Q8_0 block size/);
    assert.throws(bad([], [{ name: 'w', dims: [4], type: GGMLType.F32 }, { name: 'w', dims: [4], type: GGMLType.F32 }]), /duplicate tensor name/);
    assert.throws(bad([], [{ name: 'x'.repeat(64), dims: [4], type: GGMLType.F32 }]), /at most 63/);
    assert.throws(bad([], [{ name: 'w', dims: [1, 1, 1, 1, 1], type: GGMLType.F32 }]), /dimensions/);
    assert.throws(() => planGGUF({ metadata: [], tensors: [], alignment: 48 }), /power of two/);
  });
});

// ---------------------------------------------------------------------------------------------
// Tiny models
// ---------------------------------------------------------------------------------------------

function statsOf(v: Float32Array): { mean: number; std: number } {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i]!;
  const mean = s / v.length;
  let q = 0;
  for (let i = 0; i < v.length; i++) q += (v[i]! - mean) ** 2;
  return { mean, std: Math.sqrt(q / v.length) };
}

/** Up to ~256k values from the start of a tensor, dequantised. */
async function sampleValues(src: Awaited<ReturnType<typeof nodeFileSource>>, file: GGUFFile, name: string): Promise<Float32Array> {
  const t = file.tensors.find((x) => x.name === name)!;
  const cols = t.dims[0]!;
  const rows = Math.min(t.elementCount / cols, Math.max(1, Math.floor((1 << 18) / cols)));
  return dequantize(t.type, await readTensorBytes(src, t, 0, rows), rows * cols);
}

function checkWeights(name: string, expected: ModelTensor, v: Float32Array): void {
  const { mean, std } = statsOf(v);
  const init = expected.init;
  if (init.kind === 'normal') {
    const tolStd = 0.1 + 3 / Math.sqrt(v.length);
    assert.ok(Math.abs(std / init.std - 1) < tolStd, `${name}: std ${std.toExponential(3)} vs ${init.std.toExponential(3)}`);
    assert.ok(Math.abs(mean) < init.std * (0.02 + 5 / Math.sqrt(v.length)), `${name}: mean ${mean.toExponential(3)} (std ${init.std.toExponential(3)})`);
  } else if (init.kind === 'norm') {
    assert.ok(Math.abs(mean / init.center - 1) < 0.02 + 0.5 / Math.sqrt(v.length), `${name}: mean ${mean} vs ${init.center}`);
    const tol = 0.1 + 4 / Math.sqrt(2 * v.length); // sampling error of a std estimate
    assert.ok(Math.abs(std / (init.center * init.spread) - 1) < tol, `${name}: spread ${std} vs ${init.center * init.spread}`);
  } else {
    assert.deepEqual(v, init.values, `${name}: fixed values`);
  }
}

async function checkTinyFile(config: Gemma4Config, path: string): Promise<GGUFFile> {
  const expected = gemma4Tensors(config);
  const tokenizer = await loadGemma4Tokenizer();
  return withFile(path, async (src, f) => {
    // Tensors: names, shapes and dtypes as configured, in order.
    assert.deepEqual(
      f.tensors.map((t) => `${t.name} ${t.dims.join('x')} ${typeName(t.type)}`),
      expected.map((t) => `${t.name} ${t.dims.join('x')} ${typeName(t.type)}`),
    );
    // Metadata as configured, with the types llama.cpp's converter uses.
    const m = f.metadata;
    const n = config.slidingPattern.length;
    assert.equal(m.get('general.architecture'), 'gemma4');
    assert.equal(m.get('gemma4.block_count'), n);
    assert.equal(m.get('gemma4.embedding_length'), config.nEmbd);
    assert.equal(m.get('gemma4.attention.head_count'), config.nHead);
    assert.equal(m.get('gemma4.attention.head_count_kv'), config.nHeadKv);
    assert.equal(m.get('gemma4.attention.key_length'), config.headDimGlobal);
    assert.equal(m.get('gemma4.attention.key_length_swa'), config.headDimSwa);
    assert.equal(m.get('gemma4.attention.sliding_window'), config.slidingWindow);
    assert.deepEqual(m.get('gemma4.attention.sliding_window_pattern'), [...config.slidingPattern]);
    assert.equal(m.get('gemma4.attention.shared_kv_layers'), config.sharedKvLayers);
    assert.equal(m.get('gemma4.embedding_length_per_layer_input'), config.ple);
    assert.equal(m.get('gemma4.final_logit_softcapping'), 30);
    assert.equal(m.get('gemma4.rope.freq_base'), 1e6);
    assert.equal(m.get('gemma4.rope.freq_base_swa'), 1e4);
    assert.equal(m.get('gemma4.rope.dimension_count'), config.headDimGlobal);
    assert.equal(m.get('gemma4.rope.dimension_count_swa'), config.headDimSwa);
    assert.equal(m.get('tokenizer.ggml.model'), 'gemma4');
    assert.equal(m.get('tokenizer.ggml.pre'), 'gemma4');
    assert.equal((m.get('tokenizer.ggml.tokens') as string[]).length, GEMMA4_VOCAB_SIZE);
    assert.equal(m.get('tokenizer.ggml.bos_token_id'), 2);
    assert.equal(m.get('tokenizer.ggml.add_bos_token'), true);
    const typed = new Map((await readTypedMetadata(src, f)).map((e) => [e[0], e] as const));
    if (typeof config.ffn === 'number') {
      assert.equal(typed.get('gemma4.feed_forward_length')![1], GGUFValueType.UINT32);
      assert.equal(m.get('gemma4.feed_forward_length'), config.ffn);
    } else {
      assert.deepEqual(typed.get('gemma4.feed_forward_length')![1], arrayOf(GGUFValueType.INT32));
      assert.deepEqual(m.get('gemma4.feed_forward_length'), Int32Array.from(config.ffn));
    }
    assert.equal(typed.get('gemma4.block_count')![1], GGUFValueType.UINT32);
    assert.equal(typed.get('gemma4.rope.freq_base')![1], GGUFValueType.FLOAT32);
    assert.deepEqual(typed.get('gemma4.attention.sliding_window_pattern')![1], arrayOf(GGUFValueType.BOOL));
    // Every tokenizer entry is a byte-exact copy of the real vocabulary's (model/pre aside):
    // compare their encodings.
    const encode = (entries: GGUFMetaEntry[]) => createHash('sha256').update(planGGUF({ metadata: entries, tensors: [] }).header).digest('hex');
    const wanted = tokenizer.filter(([k]) => k !== 'tokenizer.ggml.model');
    assert.equal(encode(wanted.map(([k]) => typed.get(k)!)), encode(wanted));
    // Weight statistics after dequantisation.
    for (const t of expected) checkWeights(t.name, t, await sampleValues(src, f, t.name));
    return f;
  });
}

describe('tiny Gemma 4 fixtures', () => {
  before(async () => {
    for (const name of TINY_CONFIG_NAMES) {
      const w = await writeTinyModel(name, dir, 1);
      written.set(name, w);
      console.log(`# ${name}: ${(w.bytes / 1e6).toFixed(1)} MB in ${(w.ms / 1000).toFixed(1)} s`);
    }
  });

  it('configs cover every supported dtype, both head dims, sharing, PLE and window sizes', () => {
    const types = new Set<string>();
    for (const name of TINY_CONFIG_NAMES) for (const t of gemma4Tensors(TINY_CONFIGS[name])) types.add(typeName(t.type));
    assert.deepEqual([...types].sort(), ['BF16', 'F16', 'F32', 'Q4_0', 'Q4_1', 'Q4_K', 'Q5_0', 'Q5_1', 'Q5_K', 'Q6_K', 'Q8_0']);
    const configs = Object.values(TINY_CONFIGS) as Gemma4Config[];
    assert.ok(configs.every((c) => c.headDimSwa !== c.headDimGlobal));
    assert.ok(configs.some((c) => c.sharedKvLayers > 0 && typeof c.ffn !== 'number'));
    assert.ok(configs.some((c) => c.ple > 0) && configs.some((c) => c.ple === 0));
    assert.deepEqual(new Set(configs.map((c) => c.nHeadKv)), new Set([1, 2]));
    assert.deepEqual(new Set(configs.map((c) => c.slidingWindow)), new Set([8, 16]));
    assert.ok(configs.every((c) => c.layerOutputScales.every((s) => s >= 0.5 && s <= 1.5) && c.layerOutputScales.some((s) => s !== 1)));
    // Donors follow the spec rule (last non-shared layer of the same type).
    const e2b = TINY_CONFIGS['tiny-e2b'];
    assert.deepEqual([3, 4, 5].map((il) => kvDonor(e2b, il)), [1, 1, 2]);
  });

  it('the Q4_K_M rule and llama.cpp fallbacks pick the expected dtypes', () => {
    assert.deepEqual([...Array(35).keys()].filter((i) => useMoreBits(i, 35)), [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 31, 32, 33, 34]);
    assert.equal(fallbackType(GGMLType.Q4_K, 64), GGMLType.Q5_0);
    assert.equal(fallbackType(GGMLType.Q5_K, 96), GGMLType.Q5_1);
    assert.equal(fallbackType(GGMLType.Q6_K, 128), GGMLType.Q8_0);
    assert.equal(fallbackType(GGMLType.Q4_K, 8), GGMLType.F16);
    assert.equal(fallbackType(GGMLType.Q4_K, 512), GGMLType.Q4_K);
    const t = new Map(gemma4Tensors(TINY_CONFIGS['tiny-e2b']).map((x) => [x.name, x]));
    assert.equal(t.get('token_embd.weight')!.type, GGMLType.Q8_0); // Q6_K on 64-wide rows
    assert.equal(t.get('blk.5.ffn_down.weight')!.type, GGMLType.Q6_K); // more bits, 256-wide rows
    assert.equal(t.get('blk.4.ffn_down.weight')!.type, GGMLType.Q4_K);
    assert.equal(t.get('blk.2.ffn_down.weight')!.type, GGMLType.Q8_0); // more bits, 128-wide → fallback
    assert.equal(t.get('blk.0.proj.weight')!.type, GGMLType.Q5_0); // 32-wide rows (PLE 32): Q4_K falls back to Q5_0
    assert.equal(t.get('per_layer_token_embd.weight')!.type, GGMLType.BF16);
    assert.equal(t.has('blk.3.attn_k.weight'), false);
    assert.equal(t.has('blk.3.attn_q.weight'), true);
    assert.ok(gemma4Tensors(TINY_CONFIGS['tiny-kquant']).some((x) => x.name === 'blk.3.attn_v.weight'));
  });

  for (const name of TINY_CONFIG_NAMES) {
    it(`${name}: names, shapes, dtypes, metadata and weight statistics read back as configured`, async () => {
      const config = TINY_CONFIGS[name];
      const w = written.get(name)!;
      // The per-layer table [layers·32, 262144] in BF16 dominates: up to 100 MB for tiny-e2b.
      assert.ok(w.bytes < 150e6, `${name} is ${w.bytes} bytes`);
      const f = await checkTinyFile(config, w.path);
      // Shape bookkeeping helpers agree with the file.
      for (let il = 0; il < config.slidingPattern.length; il++) {
        const q = f.tensors.find((t) => t.name === `blk.${il}.attn_q.weight`)!;
        assert.deepEqual(q.dims, [config.nEmbd, config.nHead * headDim(config, il)]);
        const up = f.tensors.find((t) => t.name === `blk.${il}.ffn_up.weight`)!;
        assert.deepEqual(up.dims, [config.nEmbd, ffnWidth(config, il)]);
      }
      const rope = f.tensors.find((t) => t.name === 'rope_freqs.weight')!;
      assert.deepEqual(rope.dims, [config.headDimGlobal / 2]);
    });
  }

  it('the same config and seed give byte-identical files; another seed does not', async () => {
    const a = written.get('tiny-legacy')!;
    const b = await writeGemma4Model(TINY_CONFIGS['tiny-legacy'], join(dir, 'again.gguf'), { seed: 1 });
    assert.equal(b.sha256, a.sha256);
    assert.equal(await sha256File(a.path), a.sha256);
    const c = await writeGemma4Model(TINY_CONFIGS['tiny-legacy'], join(dir, 'seed2.gguf'), { seed: 2 });
    assert.notEqual(c.sha256, a.sha256);
    assert.equal(c.bytes, a.bytes);
    await rm(b.path);
    await rm(c.path);
  });

  it('every tiny config loads in node-llama-cpp (llama.cpp)', async () => {
    for (const name of TINY_CONFIG_NAMES) {
      const model = await llama.loadModel({ modelPath: written.get(name)!.path });
      try {
        assert.equal(model.fileInfo.metadata.general.architecture, 'gemma4');
        assert.equal(model.tokens.bos, 2);
      } finally {
        await model.dispose();
      }
    }
  });

  it('tiny-e2b evaluates in node-llama-cpp: real tokenizer, finite next-token distribution', async () => {
    const model = await llama.loadModel({ modelPath: written.get('tiny-e2b')!.path });
    try {
      // The real Gemma 4 tokenizer (reference vectors of spec §4.2).
      assert.deepEqual(model.tokenize('hello world'), [23391, 1902]);
      assert.deepEqual(model.tokenize('Hello, World!'), [9259, 236764, 4109, 236888]);
      const context = await model.createContext({ contextSize: 128, batchSize: 64, threads: 2 });
      try {
        const seq = context.getSequence();
        // Longer than both sliding windows, so the window wraps.
        const text = 'The quick brown fox jumps over the lazy dog while the cat watches from the warm windowsill nearby.';
        const tokens = [model.tokens.bos!, ...model.tokenize(text)] as Token[];
        assert.ok(tokens.length > 16, `${tokens.length} tokens`);
        const input = tokens.map((t, i) => (i === tokens.length - 1 ? ([t, { generateNext: { probabilities: true } }] as const) : t));
        const out = await seq.controlledEvaluate(input as never);
        const probs = out[tokens.length - 1]?.next.probabilities;
        assert.ok(probs && probs.size > 1000, 'a next-token distribution');
        let sum = 0;
        let max = 0;
        for (const p of probs.values()) {
          assert.ok(Number.isFinite(p) && p >= 0);
          sum += p;
          max = Math.max(max, p);
        }
        assert.ok(Math.abs(sum - 1) < 1e-3, `probabilities sum to ${sum}`);
        assert.ok(max < 0.5, `random weights should not be confident (max p ${max})`);
      } finally {
        await context.dispose();
      }
    } finally {
      await model.dispose();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Ollama store and text-only copy
// ---------------------------------------------------------------------------------------------

describe('Ollama-style store and text-only copy', () => {
  let store: OllamaStoreResult;
  let textOnly: string;

  before(async () => {
    store = await writeOllamaStore(join(dir, 'ollama'), { name: 'gemma4-tiny', tag: 'e2b', seed: 1 });
    textOnly = join(dir, 'text-only.gguf');
    await textOnlyCopy(store.model.path, textOnly);
  });

  it('has a schemaVersion 2 manifest whose blobs exist under their sha256', async () => {
    const manifest = JSON.parse(await readFile(join(store.root, 'manifests/registry.ollama.ai/library/gemma4-tiny/e2b'), 'utf8'));
    assert.equal(manifest.schemaVersion, 2);
    assert.equal(manifest.config.mediaType, 'application/vnd.docker.container.image.v1+json');
    const media = manifest.layers.map((l: { mediaType: string }) => l.mediaType);
    assert.deepEqual(media.slice(0, 3), ['application/vnd.ollama.image.model', 'application/vnd.ollama.image.template', 'application/vnd.ollama.image.params']);
    for (const blob of [manifest.config, ...manifest.layers] as { digest: string; size: number }[]) {
      const path = join(store.root, 'blobs', blob.digest.replace(':', '-'));
      const bytes = await readFile(path);
      assert.equal(bytes.byteLength, blob.size);
      assert.equal(`sha256:${createHash('sha256').update(bytes).digest('hex')}`, blob.digest);
    }
    const config = JSON.parse(await readFile(store.config.path, 'utf8'));
    assert.equal(config.model_family, 'gemma4');
  });

  it('the model blob is monolithic: text + v./a./mm. tensors, tokenizer.ggml.model = llama', async () => {
    await withFile(store.model.path, async (_src, f) => {
      assert.equal(f.metadata.get('tokenizer.ggml.model'), 'llama');
      assert.equal(f.metadata.get('tokenizer.ggml.pre'), 'gemma4');
      assert.equal(f.metadata.get('gemma4.vision.block_count'), 1);
      assert.equal(f.metadata.get('gemma4.audio.block_count'), 1);
      for (const p of ['v.', 'a.', 'mm.']) assert.ok(f.tensors.some((t) => t.name.startsWith(p)), `${p} tensors`);
      assert.ok(f.tensors.some((t) => t.name === 'blk.5.layer_output_scale.weight'));
    });
  });

  it('node-llama-cpp refuses the raw blob (wrong number of tensors)', async () => {
    llamaLog.length = 0;
    await assert.rejects(llama.loadModel({ modelPath: store.model.path }));
    assert.ok(llamaLog.some((l) => /wrong number of tensors/.test(l)), `llama.cpp said: ${llamaLog.join(' | ')}`);
  });

  it('the text-only copy drops encoders, says gemma4, keeps the text tensors byte for byte, and loads', async () => {
    const reference = written.get('tiny-e2b')!;
    await withFile(textOnly, async (src, f) => {
      assert.equal(f.metadata.get('tokenizer.ggml.model'), 'gemma4');
      assert.equal(f.metadata.get('tokenizer.ggml.pre'), 'gemma4');
      assert.ok(![...f.metadata.keys()].some((k) => k.startsWith('gemma4.vision.') || k.startsWith('gemma4.audio.')));
      assert.ok(!f.tensors.some((t) => /^(v|a|mm)\./.test(t.name)));
      await withFile(reference.path, async (refSrc, ref) => {
        assert.deepEqual(f.tensors.map((t) => t.name), ref.tensors.map((t) => t.name));
        for (const t of f.tensors) {
          const r = ref.tensors.find((x) => x.name === t.name)!;
          assert.deepEqual(await readTensorBytes(src, t), await readTensorBytes(refSrc, r), t.name);
        }
      });
    });
    const model = await llama.loadModel({ modelPath: textOnly });
    assert.deepEqual(model.tokenize('hello world'), [23391, 1902]);
    await model.dispose();
  });
});

it('the vocab fixture is where the library expects it', async () => {
  await withFile(GEMMA4_VOCAB_PATH, async (_src, f) => {
    assert.equal((f.metadata.get('tokenizer.ggml.tokens') as string[]).length, GEMMA4_VOCAB_SIZE);
  });
});
