/**
 * readGemma4Config and resolveTensors (src/core/model) on every tiny fixture config and on the
 * E2B shape: per-layer head dims, FFN widths, KV donors (spec §0.6: a shared layer reads the last
 * KV-owning layer of its own type), RoPE bases and dims; then broken files: another architecture,
 * each required key missing, impossible values, missing or misshapen tensors.
 *
 * The files are the fixture library's own headers (gemma4Metadata + gemma4Tensors, planned by
 * the GGUF writer) over a source whose tensor data reads as zeros, so no weights are generated;
 * one real tiny-e2b file written by writeTinyModel checks that this gives the same answer.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { RullamaError } from '../../src/core/errors.js';
import { nodeFileSource } from '../../src/core/gguf/node-source.js';
import { readGGUF } from '../../src/core/gguf/read.js';
import { checkRange, type ByteSource } from '../../src/core/gguf/source.js';
import { GGMLType, GGUFValueType, type GGUFFile } from '../../src/core/gguf/types.js';
import { arrayOf, planGGUF, type GGUFMetaEntry, type GGUFTensorSpec } from '../../src/core/gguf/write.js';
import { readGemma4Config, type Gemma4Config } from '../../src/core/model/config.js';
import { resolveTensors } from '../../src/core/model/tensors.js';
import {
  E2B_CONFIG,
  GEMMA4_VOCAB_SIZE,
  TINY_CONFIGS,
  TINY_CONFIG_NAMES,
  gemma4Metadata,
  gemma4Tensors,
  loadGemma4Tokenizer,
  readTypedMetadata,
  writeTinyModel,
  type Gemma4Config as FixtureConfig,
  type TinyConfigName,
} from '../fixtures/index.js';

/** A source over a planned header; the tensor data after it reads as zeros. */
function headerSource(metadata: Iterable<GGUFMetaEntry>, tensors: readonly GGUFTensorSpec[], name: string): ByteSource {
  const plan = planGGUF({ metadata, tensors });
  const self: ByteSource = {
    name,
    size: plan.fileSize,
    async read(offset, length) {
      checkRange(self, offset, length);
      const out = new Uint8Array(length);
      if (offset < plan.header.byteLength) out.set(plan.header.subarray(offset, Math.min(offset + length, plan.header.byteLength)));
      return out;
    },
  };
  return self;
}

interface Edit {
  /** Include the real tokenizer.* keys (left out by default: config reading needs only the vocabulary size). */
  tokenizer?: boolean;
  /** Rewrites the metadata entries. */
  metadata?: (entries: GGUFMetaEntry[]) => GGUFMetaEntry[];
  tensors?: (tensors: GGUFTensorSpec[]) => GGUFTensorSpec[];
}

/** The header of a fixture config, optionally edited, read back through readGGUF. */
async function fixtureFile(config: FixtureConfig, edit: Edit = {}): Promise<GGUFFile> {
  const entries = [...gemma4Metadata(config, edit.tokenizer ? await loadGemma4Tokenizer() : [])];
  const tensors: GGUFTensorSpec[] = gemma4Tensors(config).map(({ name, dims, type }) => ({ name, dims, type }));
  const src = headerSource(edit.metadata ? edit.metadata(entries) : entries, edit.tensors ? edit.tensors(tensors) : tensors, config.name);
  return readGGUF(src);
}

const without = (key: string) => (entries: GGUFMetaEntry[]) => entries.filter(([k]) => k !== key);
const replacing = (key: string, type: GGUFMetaEntry[1], value: unknown) => (entries: GGUFMetaEntry[]) =>
  entries.map((e): GGUFMetaEntry => (e[0] === key ? [key, type, value] : e));

function rejects(code: string, ...patterns: RegExp[]): (e: unknown) => boolean {
  return (e) => {
    assert.ok(e instanceof RullamaError, `a RullamaError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    for (const p of patterns) assert.match(e.message, p);
    return true;
  };
}

const escape = (s: string) => new RegExp(s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));

/** KV layer of every layer, written out from each config's description in test/fixtures/configs.ts. */
const EXPECTED_KV_LAYER: Record<TinyConfigName, number[]> = {
  'tiny-e2b': [0, 1, 2, 1, 1, 2], // SSGSSG, last 3 shared: sliding 3, 4 ← 1; global 5 ← 2
  'tiny-kquant': [0, 1, 0, 1], // SGSG, last 2 shared: sliding 2 ← 0; global 3 ← 1
  'tiny-float': [0, 1, 2], // no sharing
  'tiny-legacy': [0, 1, 2, 3], // no sharing
  'tiny-q8': [0, 1, 2, 3, 2], // GSSGS, last shared: sliding 4 ← 2
};

function checkAgainstFixture(c: Gemma4Config, f: FixtureConfig, expectedKv: readonly number[]): void {
  const n = f.slidingPattern.length;
  assert.equal(c.architecture, 'gemma4');
  assert.equal(c.layerCount, n);
  assert.equal(c.width, f.nEmbd);
  assert.equal(c.headCount, f.nHead);
  assert.equal(c.headDimGlobal, f.headDimGlobal);
  assert.equal(c.headDimSliding, f.headDimSwa);
  assert.equal(c.slidingWindow, f.slidingWindow);
  assert.equal(c.rmsEpsilon, Math.fround(f.rmsEps));
  assert.equal(c.logitSoftcap, f.finalLogitSoftcap);
  assert.equal(c.pleWidth, f.ple);
  assert.equal(c.contextLength, f.contextLength);
  assert.equal(c.sharedKvLayers, f.sharedKvLayers);
  assert.equal(c.vocabSize, GEMMA4_VOCAB_SIZE);
  assert.equal(c.layers.length, n);
  for (const [i, l] of c.layers.entries()) {
    const sliding = f.slidingPattern[i]!;
    const at = `layer ${i}`;
    assert.equal(l.index, i, at);
    assert.equal(l.sliding, sliding, at);
    assert.equal(l.headDim, sliding ? f.headDimSwa : f.headDimGlobal, at);
    assert.equal(l.kvHeads, f.nHeadKv, at);
    assert.equal(l.ffnWidth, typeof f.ffn === 'number' ? f.ffn : f.ffn[i], at);
    assert.equal(l.ropeBase, sliding ? f.ropeBaseSwa : f.ropeBase, at);
    assert.equal(l.ropeDims, sliding ? f.headDimSwa : f.headDimGlobal, at);
    assert.equal(l.kvLayer, expectedKv[i], at);
  }
}

describe('readGemma4Config and resolveTensors on the fixture configs', () => {
  for (const name of TINY_CONFIG_NAMES) {
    it(`${name}: hyper-parameters, per-layer dims and KV donors`, async () => {
      const f = TINY_CONFIGS[name] as FixtureConfig;
      const file = await fixtureFile(f);
      const c = readGemma4Config(file);
      checkAgainstFixture(c, f, EXPECTED_KV_LAYER[name]);
      const t = resolveTensors(file, c);
      assert.equal(t.layers.length, c.layerCount);
      assert.equal(t.tokenEmbd.name, 'token_embd.weight');
      assert.deepEqual(t.ropeFreqs?.dims, [f.headDimGlobal / 2]);
      assert.equal(t.pleTokenEmbd === null, f.ple === 0);
      for (const [i, l] of t.layers.entries()) {
        const owns = c.layers[i]!.kvLayer === i;
        // Shared layers get no K/V, even where the file carries (unused) ones, as tiny-kquant does.
        assert.equal(l.k === null, !owns, `layer ${i} k`);
        assert.equal(l.v === null, !owns, `layer ${i} v`);
        assert.equal(l.kNorm === null, !owns, `layer ${i} k norm`);
        assert.equal(l.pleGate === null, f.ple === 0);
        assert.deepEqual(l.q.dims, [f.nEmbd, f.nHead * c.layers[i]!.headDim]);
        assert.deepEqual(l.down.dims, [c.layers[i]!.ffnWidth, f.nEmbd]);
      }
    });
  }

  it('the E2B shape: 35 layers, FFN 6144 then 12288, head dims 256/512, donors 13 and 14', async () => {
    const file = await fixtureFile(E2B_CONFIG);
    const c = readGemma4Config(file);
    const kv = Array.from({ length: 35 }, (_, i) => (i < 15 ? i : i % 5 === 4 ? 14 : 13));
    checkAgainstFixture(c, E2B_CONFIG, kv);
    assert.deepEqual(
      c.layers.filter((l) => !l.sliding).map((l) => l.index),
      [4, 9, 14, 19, 24, 29, 34],
    );
    assert.deepEqual([...new Set(c.layers.map((l) => `${l.ffnWidth}`))], ['6144', '12288']);
    assert.equal(c.layers[14]!.ffnWidth, 6144);
    assert.equal(c.layers[15]!.ffnWidth, 12288);
    assert.equal(c.layers[4]!.ropeBase, 1e6);
    assert.equal(c.layers[0]!.ropeBase, 1e4);
    assert.equal(c.pleWidth, 256);
    const t = resolveTensors(file, c);
    assert.deepEqual(t.pleTokenEmbd?.dims, [35 * 256, GEMMA4_VOCAB_SIZE]);
    assert.deepEqual(t.layers[34]!.gate.dims, [1536, 12288]);
  });
});

describe('a real fixture file reads like its planned header', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rullama-model-config-'));
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('tiny-e2b written by writeTinyModel (with the real tokenizer) gives the same config and tensors', async () => {
    const written = await writeTinyModel('tiny-e2b', dir);
    const src = await nodeFileSource(written.path);
    try {
      const file = await readGGUF(src);
      const c = readGemma4Config(file);
      checkAgainstFixture(c, TINY_CONFIGS['tiny-e2b'], EXPECTED_KV_LAYER['tiny-e2b']);
      assert.deepEqual(c, readGemma4Config(await fixtureFile(TINY_CONFIGS['tiny-e2b'])));
      const names = (f: GGUFFile) => {
        const t = resolveTensors(f, c);
        return JSON.stringify(t, (k, v) => (k === 'offset' ? undefined : v));
      };
      assert.equal(names(file), names(await fixtureFile(TINY_CONFIGS['tiny-e2b'])));

      // Editing the real file's metadata through readTypedMetadata: another architecture.
      const typed = await readTypedMetadata(src, file);
      const edited = headerSource(
        replacing('general.architecture', GGUFValueType.STRING, 'gemma3')(typed),
        file.tensors.map(({ name, dims, type }) => ({ name, dims: [...dims], type })),
        'edited',
      );
      await assert.rejects(async () => readGemma4Config(await readGGUF(edited)), rejects('wrong-arch', /gemma3/));
    } finally {
      await src.close();
    }
  });
});

describe('broken files', () => {
  const base = TINY_CONFIGS['tiny-e2b'] as FixtureConfig;

  it("another architecture is 'wrong-arch', naming it", async () => {
    const llama = await fixtureFile(base, { metadata: replacing('general.architecture', GGUFValueType.STRING, 'llama') });
    assert.throws(() => readGemma4Config(llama), rejects('wrong-arch', /"llama"/));
    const none = await fixtureFile(base, { metadata: without('general.architecture') });
    assert.throws(() => readGemma4Config(none), rejects('wrong-arch', /null/));
  });

  const requiredKeys = [
    'gemma4.block_count',
    'gemma4.embedding_length',
    'gemma4.feed_forward_length',
    'gemma4.attention.head_count',
    'gemma4.attention.head_count_kv',
    'gemma4.attention.key_length',
    'gemma4.attention.sliding_window',
    'gemma4.attention.sliding_window_pattern',
  ];
  for (const key of requiredKeys) {
    it(`a missing ${key} is 'bad-gguf', naming the key`, async () => {
      const file = await fixtureFile(base, { metadata: without(key) });
      assert.throws(() => readGemma4Config(file), rejects('bad-gguf', escape(key)));
    });
  }

  it("optional keys fall back to the spec's defaults", async () => {
    const optional = [
      'gemma4.attention.key_length_swa',
      'gemma4.attention.value_length',
      'gemma4.attention.value_length_swa',
      'gemma4.rope.dimension_count_swa',
      'gemma4.final_logit_softcapping',
      'gemma4.embedding_length_per_layer_input',
      'gemma4.attention.shared_kv_layers',
    ];
    // tiny-float: no sharing, so dropping shared_kv_layers changes nothing but the key.
    const f = TINY_CONFIGS['tiny-float'] as FixtureConfig;
    const c = readGemma4Config(await fixtureFile(f, { metadata: (e) => e.filter(([k]) => !optional.includes(k)) }));
    assert.equal(c.headDimSliding, f.headDimGlobal); // key_length_swa falls back to key_length
    assert.equal(c.logitSoftcap, 0);
    assert.equal(c.pleWidth, 0);
    assert.equal(c.sharedKvLayers, 0);
    assert.ok(c.layers.every((l) => l.headDim === f.headDimGlobal && l.ropeDims === f.headDimGlobal));
  });

  const n = base.slidingPattern.length;
  const ffn = base.ffn as readonly number[];
  // With all but layer 0 shared, the first global layer has no donor (layer 0 is sliding).
  const firstGlobal = base.slidingPattern.indexOf(false);
  assert.ok(base.slidingPattern[0] && firstGlobal > 0);
  const impossible: [string, Edit['metadata'], RegExp][] = [
    ['a sliding_window_pattern of the wrong length', replacing('gemma4.attention.sliding_window_pattern', arrayOf(GGUFValueType.BOOL), [true, true, false]), /sliding_window_pattern/],
    ['a feed_forward_length array of the wrong length', replacing('gemma4.feed_forward_length', arrayOf(GGUFValueType.INT32), Int32Array.from(ffn.slice(1))), /feed_forward_length/],
    ['a zero feed_forward_length entry', replacing('gemma4.feed_forward_length', arrayOf(GGUFValueType.INT32), Int32Array.from(ffn, (v, i) => (i === 1 ? 0 : v))), /feed_forward_length/],
    ['head_count not a multiple of head_count_kv', replacing('gemma4.attention.head_count_kv', GGUFValueType.UINT32, base.nHead + 1), escape(`${base.nHead} query heads cannot be grouped over ${base.nHead + 1} KV heads`)],
    ['shared_kv_layers as large as block_count', replacing('gemma4.attention.shared_kv_layers', GGUFValueType.UINT32, n), escape(`shared_kv_layers = ${n}`)],
    ['a string where a number belongs', replacing('gemma4.embedding_length', GGUFValueType.STRING, String(base.nEmbd)), /gemma4\.embedding_length must be a number/],
    ['a zero sliding_window', replacing('gemma4.attention.sliding_window', GGUFValueType.UINT32, 0), /sliding_window/],
    ['a shared global layer with no global layer before it', replacing('gemma4.attention.shared_kv_layers', GGUFValueType.UINT32, n - 1), escape(`layer ${firstGlobal} shares KV but no earlier global layer owns one`)],
  ];
  for (const [what, metadata, pattern] of impossible) {
    it(`${what} is 'bad-gguf'`, async () => {
      const file = await fixtureFile(base, { metadata });
      assert.throws(() => readGemma4Config(file), rejects('bad-gguf', pattern));
    });
  }

  it('value head dims that differ from key head dims are unsupported', async () => {
    const file = await fixtureFile(base, { metadata: replacing('gemma4.attention.value_length', GGUFValueType.UINT32, 32) });
    assert.throws(() => readGemma4Config(file), rejects('unsupported', /value head dims/));
  });

  const d = base.nEmbd;
  const shapes = (dims: number[]) => `[${dims.join(', ')}]`;
  const missing: [string, string][] = [
    ['blk.1.attn_k.weight', shapes([d, base.nHeadKv * base.headDimSwa])], // a sliding layer's K
    ['blk.2.attn_q_norm.weight', shapes([base.headDimGlobal])], // a global layer's q norm
    ['blk.5.ffn_down.weight', shapes([(base.ffn as readonly number[])[5]!, d])], // double-wide FFN on a shared layer
    ['blk.0.layer_output_scale.weight', '[1]'],
    ['per_layer_token_embd.weight', shapes([base.slidingPattern.length * base.ple, GEMMA4_VOCAB_SIZE])],
    ['token_embd.weight', shapes([d, GEMMA4_VOCAB_SIZE])], // the vocabulary size then comes from the tokenizer
    ['output_norm.weight', shapes([d])],
  ];
  for (const [name, shape] of missing) {
    it(`a missing ${name} fails in resolveTensors, naming it and its shape ${shape}`, async () => {
      const file = await fixtureFile(base, { tensors: (t) => t.filter((x) => x.name !== name), tokenizer: name === 'token_embd.weight' });
      const c = readGemma4Config(file);
      assert.throws(() => resolveTensors(file, c), rejects('bad-gguf', escape(`missing tensor ${name} (expected shape ${shape})`)));
    });
  }

  it('a shared layer may lack K/V tensors, an owning layer may not', async () => {
    // tiny-kquant carries (unused) K/V on its shared layers 2 and 3; without them it still resolves.
    const kquant = TINY_CONFIGS['tiny-kquant'] as FixtureConfig;
    const noShared = await fixtureFile(kquant, { tensors: (t) => t.filter((x) => !/^blk\.[23]\.attn_(k|v|k_norm)\./.test(x.name)) });
    assert.equal(noShared.tensors.length, gemma4Tensors(kquant).length - 6);
    assert.doesNotThrow(() => resolveTensors(noShared, readGemma4Config(noShared)));
    const noOwner = await fixtureFile(base, { tensors: (t) => t.filter((x) => x.name !== 'blk.2.attn_v.weight') });
    assert.throws(() => resolveTensors(noOwner, readGemma4Config(noOwner)), rejects('bad-gguf', escape(`blk.2.attn_v.weight (expected shape [${d}, ${base.nHeadKv * base.headDimGlobal}])`)));
  });

  it('a misshapen tensor fails in resolveTensors with both shapes', async () => {
    const F0 = (base.ffn as readonly number[])[0]!;
    const file = await fixtureFile(base, {
      tensors: (t) => t.map((x) => (x.name === 'blk.0.ffn_up.weight' ? { ...x, dims: [d, 2 * F0], type: GGMLType.F16 } : x)),
    });
    const c = readGemma4Config(file);
    assert.throws(() => resolveTensors(file, c), rejects('bad-gguf', escape(`blk.0.ffn_up.weight has shape [${d}, ${2 * F0}], expected [${d}, ${F0}]`)));
  });
});
