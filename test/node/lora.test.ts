// LoRA adapters: the GGUF format llama.cpp and Ollama load (read, write, refuse bad ones), PEFT's
// safetensors format, and the adapted forward pass of the float64 reference against llama.cpp
// with the same adapter file loaded.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getLlama, LlamaLogLevel, type Llama } from 'node-llama-cpp';
import { RullamaError } from '../../src/core/errors.js';
import { nodeFileSource } from '../../src/core/gguf/node-source.js';
import { bytesSource } from '../../src/core/gguf/source.js';
import { readGGUF } from '../../src/core/gguf/read.js';
import { GGMLType, type GGUFFile } from '../../src/core/gguf/types.js';
import { GGUFMetadata, memorySink, planGGUF, writeGGUF } from '../../src/core/gguf/write.js';
import { checkAdapterFits, readLoraGGUF, writeLoraGGUF, LORA_TARGETS } from '../../src/core/lora/adapter.js';
import { readPeftAdapter } from '../../src/core/lora/peft.js';
import { f32ToBf16 } from '../../src/core/quant/float.js';
import { ReferenceModel } from '../../src/core/reference/forward.js';
import { Tokenizer } from '../../src/core/tokenizer/tokenizer.js';
import { writeTinyModel } from '../fixtures/index.js';
import { Rng } from '../fixtures/random.js';
import { LlamaOracle, topTwo } from '../shared/llama-oracle.js';
import { randomAdapter, randomValues } from '../shared/random-adapter.js';

const PROMPT = 'The quick brown fox jumps over the lazy dog, and the old cat watches from the warm windowsill.';
const isCode = (code: string) => (e: unknown) => e instanceof RullamaError && e.code === code;

let dir: string;
let llama: Llama;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'rullama-lora-'));
  llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error });
});
after(async () => {
  await llama?.dispose();
  await rm(dir, { recursive: true, force: true });
});

function centeredCosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let ma = 0;
  let mb = 0;
  for (let i = 0; i < a.length; i++) {
    ma += a[i]!;
    mb += b[i]!;
  }
  ma /= a.length;
  mb /= b.length;
  let xy = 0;
  let xx = 0;
  let yy = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]! - ma;
    const y = b[i]! - mb;
    xy += x * y;
    xx += x * x;
    yy += y * y;
  }
  return xy / Math.sqrt(xx * yy);
}

describe('LoRA adapters', () => {
  test('GGUF round trip; bad adapters and mismatched models are refused', async () => {
    const { path } = await writeTinyModel('tiny-e2b', dir);
    const model = await readHeader(path);
    const adapter = randomAdapter(model, 2, 4);
    assert.equal(adapter.tensors.size, [...Object.keys(LORA_TARGETS)].length * model.tensors.filter((t) => /^blk\.\d+\.attn_q\.weight$/.test(t.name)).length - countShared(model));
    const bytes = await writeLoraGGUF(adapter);
    const back = await readLoraGGUF(bytesSource(bytes, 'adapter.gguf'));
    assert.equal(back.alpha, 4);
    assert.equal(back.architecture, 'gemma4');
    assert.equal(back.tensors.size, adapter.tensors.size);
    for (const [name, t] of adapter.tensors) {
      const u = back.tensors.get(name)!;
      assert.deepEqual([u.rank, u.inFeatures, u.outFeatures], [t.rank, t.inFeatures, t.outFeatures]);
      assert.deepEqual(u.a, t.a);
      assert.deepEqual(u.b, t.b);
    }
    // The model it was made for accepts it; a model of other shapes does not.
    checkAdapterFits(back, model);
    const { path: other } = await writeTinyModel('tiny-kquant', dir);
    const otherModel = await readHeader(other);
    assert.throws(() => checkAdapterFits(back, otherModel), isCode('bad-argument'));
    // A GGUF that is not an adapter, and one with an unpaired tensor.
    const notAdapter = await nodeFileSource(path);
    await assert.rejects(readLoraGGUF(notAdapter), isCode('bad-gguf'));
    await notAdapter.close();
    const meta = new GGUFMetadata().string('general.architecture', 'gemma4').string('general.type', 'adapter').string('adapter.type', 'lora').f32('adapter.lora.alpha', 1);
    const plan = planGGUF({ metadata: meta, tensors: [{ name: 'blk.0.attn_q.weight.lora_a', dims: [32, 2], type: GGMLType.F32 }] });
    const sink = memorySink();
    await writeGGUF(plan, sink, () => new Uint8Array(32 * 2 * 4));
    await assert.rejects(readLoraGGUF(bytesSource(sink.bytes())), isCode('bad-gguf'));
  });

  test('PEFT safetensors + adapter_config.json read into the same adapter', () => {
    const rng = new Rng(9);
    const a = randomValues(4 * 64, 0.1, rng);
    const b = randomValues(128 * 4, 0.1, rng);
    // BF16 like many PEFT exports: compare against the BF16-rounded values.
    const toBf16 = (v: Float32Array) => Uint16Array.from(v, f32ToBf16);
    const tensors = [
      ['base_model.model.model.language_model.layers.3.self_attn.q_proj.lora_A.weight', [4, 64], toBf16(a)],
      ['base_model.model.model.language_model.layers.3.self_attn.q_proj.lora_B.weight', [128, 4], toBf16(b)],
    ] as const;
    const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
    let at = 0;
    for (const [name, shape, data] of tensors) {
      header[name] = { dtype: 'BF16', shape, data_offsets: [at, at + data.byteLength] };
      at += data.byteLength;
    }
    const json = new TextEncoder().encode(JSON.stringify(header));
    const file = new Uint8Array(8 + json.length + at);
    new DataView(file.buffer).setBigUint64(0, BigInt(json.length), true);
    file.set(json, 8);
    let offset = 8 + json.length;
    for (const [, , data] of tensors) {
      file.set(new Uint8Array(data.buffer), offset);
      offset += data.byteLength;
    }
    const adapter = readPeftAdapter(file, JSON.stringify({ r: 4, lora_alpha: 8, target_modules: ['q_proj'] }));
    const t = adapter.tensors.get('blk.3.attn_q.weight')!;
    assert.deepEqual([t.rank, t.inFeatures, t.outFeatures, adapter.alpha], [4, 64, 128, 8]);
    for (let i = 0; i < a.length; i++) assert.ok(Math.abs(t.a[i]! - a[i]!) <= Math.abs(a[i]!) * 2 ** -7);
    // rsLoRA scales by alpha/√r: the same factor under alpha'/r.
    assert.equal(readPeftAdapter(file, JSON.stringify({ r: 4, lora_alpha: 8, use_rslora: true })).alpha, 16);
    assert.throws(() => readPeftAdapter(file, JSON.stringify({ r: 4, lora_alpha: 8, use_dora: true })), isCode('unsupported'));
    assert.throws(() => readPeftAdapter(file, JSON.stringify({ r: 8, lora_alpha: 8 })), isCode('bad-argument'));
    assert.throws(() => readPeftAdapter(file.subarray(0, 20), '{"r":4}'), isCode('bad-argument'));
  });

  test('the adapted reference forward matches llama.cpp with the same adapter file', async () => {
    const name = 'tiny-float';
    const { path } = await writeTinyModel(name, dir);
    const source = await nodeFileSource(path);
    try {
      const file = await readGGUF(source);
      const adapter = randomAdapter(file, 4, 8);
      const adapterPath = join(dir, 'adapter.gguf');
      await writeFile(adapterPath, await writeLoraGGUF(adapter));
      const tokens = Tokenizer.fromGGUF(file).encode(PROMPT);
      const reference = await ReferenceModel.load(source, file);
      const plain = await reference.forward(tokens);
      reference.reset();
      reference.setAdapters([{ adapter, scale: 0.75 }]);
      const adapted = await reference.forward(tokens);
      const oracle = await LlamaOracle.load(llama, path, { contextSize: 64, lora: [{ filePath: adapterPath, scale: 0.75 }] });
      let worst = 1;
      let changed = 1;
      try {
        const theirs = await oracle.logProbs(tokens);
        for (let p = 0; p < tokens.length; p++) {
          const cos = centeredCosine(adapted[p]!, theirs[p]!);
          worst = Math.min(worst, cos);
          changed = Math.min(changed, centeredCosine(adapted[p]!, plain[p]!));
          const t = topTwo(theirs[p]!);
          if (t.margin > 0.1) assert.equal(topTwo(adapted[p]!).best, t.best, `argmax at position ${p}`);
        }
      } finally {
        await oracle.dispose();
      }
      console.log(`# ${name} + LoRA (rank 4, all targets): centered cosine vs llama.cpp worst ${worst.toFixed(6)}; vs no adapter ${changed.toFixed(4)}`);
      assert.ok(changed < 0.99, `the adapter barely changes the logits (cosine ${changed}), so the check would mean nothing`);
      assert.ok(worst >= 0.995, `centered cosine ${worst}`);
    } finally {
      await source.close();
    }
  });
});

async function readHeader(path: string): Promise<GGUFFile> {
  const source = await nodeFileSource(path);
  try {
    return await readGGUF(source);
  } finally {
    await source.close();
  }
}

/** KV-shared layers have no K/V weights, so no K/V adapters: two fewer per such layer. */
function countShared(model: GGUFFile): number {
  const layers = model.tensors.filter((t) => /^blk\.\d+\.attn_q\.weight$/.test(t.name)).length;
  const withK = model.tensors.filter((t) => /^blk\.\d+\.attn_k\.weight$/.test(t.name)).length;
  const withV = model.tensors.filter((t) => /^blk\.\d+\.attn_v\.weight$/.test(t.name)).length;
  return 2 * layers - withK - withV;
}
