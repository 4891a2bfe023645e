// The float64 LoRA backward (src/core/reference/backward.ts) against central finite differences,
// through every block (sliding and global attention, KV-shared layers, PLE, softcap), and its
// sequence forward against the incremental reference forward with the same adapter applied.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nodeFileSource } from '../../src/core/gguf/node-source.js';
import { readGGUF } from '../../src/core/gguf/read.js';
import type { LoraAdapter, LoraTensor } from '../../src/core/lora/adapter.js';
import type { LoraParameter } from '../../src/core/reference/backward.js';
import { ReferenceModel } from '../../src/core/reference/forward.js';
import { Tokenizer } from '../../src/core/tokenizer/tokenizer.js';
import { writeTinyModel, type TinyConfigName } from '../fixtures/index.js';
import { Rng } from '../fixtures/random.js';

const PROMPT = 'The fox jumps over the dog and runs into the forest.';
let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'rullama-lora-grad-'));
});
after(async () => rm(dir, { recursive: true, force: true }));

/** LoRA parameters on every adaptable weight of the model: A and B both non-zero, so both get gradients. */
function parameters(model: Awaited<ReturnType<typeof readGGUF>>, rank: number, seed: number): LoraParameter[] {
  const rng = new Rng(seed, 'lora-grad');
  const out: LoraParameter[] = [];
  for (const info of model.tensors) {
    if (!/^blk\.\d+\.(attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|ffn_down)\.weight$/.test(info.name)) continue;
    const [inFeatures, outFeatures] = info.dims as [number, number];
    const a = Float64Array.from({ length: rank * inFeatures }, () => rng.gaussian() / Math.sqrt(inFeatures));
    const b = Float64Array.from({ length: outFeatures * rank }, () => (0.2 * rng.gaussian()) / Math.sqrt(rank));
    out.push({ base: info.name, rank, a, b, scale: 1.5 });
  }
  return out;
}

for (const name of ['tiny-float', 'tiny-e2b'] as TinyConfigName[]) {
  describe(`LoRA gradients (${name})`, () => {
    test('the sequence forward equals the incremental forward with the adapter applied', async () => {
      const { path } = await writeTinyModel(name, dir);
      const source = await nodeFileSource(path);
      try {
        const file = await readGGUF(source);
        const tokens = Tokenizer.fromGGUF(file).encode(PROMPT).slice(0, 14);
        const window = file.metadata.get('gemma4.attention.sliding_window') as number;
        assert.ok(tokens.length > window, 'the sequence must cross the sliding window');
        const model = await ReferenceModel.load(source, file);
        const lora = parameters(file, 2, 3);
        const { loss, count } = await model.lossAndGradients(tokens, lora);
        // The same adapter through the incremental forward: the same loss.
        const tensors = new Map<string, LoraTensor>(lora.map((p) => {
          const rows = p.b.length / p.rank;
          return [p.base, { base: p.base, rank: p.rank, inFeatures: p.a.length / p.rank, outFeatures: rows, a: Float32Array.from(p.a), b: Float32Array.from(p.b) }];
        }));
        // f32 copies of the parameters: compare against a loss computed with those same values.
        const f32 = lora.map((p) => ({ ...p, a: Float32Array.from(p.a), b: Float32Array.from(p.b) }));
        const expected = (await model.lossAndGradients(tokens, f32)).loss;
        const adapter: LoraAdapter = { name: 'test', architecture: 'gemma4', alpha: 0, tensors };
        model.setAdapters([{ adapter, scale: 1.5 }]);
        const logits = await model.forward(tokens);
        let ce = 0;
        for (let t = 0; t + 1 < tokens.length; t++) {
          const z = logits[t]!;
          const max = z.reduce((m, v) => Math.max(m, v), -Infinity);
          let total = 0;
          for (const v of z) total += Math.exp(v - max);
          ce += Math.log(total) + max - z[tokens[t + 1]!]!;
        }
        assert.equal(count, tokens.length - 1);
        assert.ok(Math.abs(ce / count - expected) < 1e-9, `incremental ${ce / count} vs sequence ${expected}`);
        assert.ok(Number.isFinite(loss));
      } finally {
        await source.close();
      }
    });

    // Finite differences in float64 are slow (each loss runs the 262,144-token output per
    // position); tiny-e2b has every kind of block (sliding/global, shared KV, PLE).
    if (name === 'tiny-e2b') test('gradients match central finite differences', async () => {
      const { path } = await writeTinyModel(name, dir);
      const source = await nodeFileSource(path);
      try {
        const file = await readGGUF(source);
        const tokens = Tokenizer.fromGGUF(file).encode(PROMPT).slice(0, 12);
        const model = await ReferenceModel.load(source, file);
        const lora = parameters(file, 2, 7);
        const { gradients } = await model.lossAndGradients(tokens, lora);
        const rng = new Rng(11, 'pick');
        const eps = 1e-5;
        let worst = 0;
        let checked = 0;
        // One coordinate of A and one of B in each kind of tensor, spread over the layers.
        const kinds = ['attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_gate', 'ffn_up', 'ffn_down'];
        const picks = kinds.map((kind, i) => {
          const all = lora.filter((p) => p.base.includes(`.${kind}.`));
          return all[(i * 2) % all.length]!;
        });
        for (const p of picks) {
          for (const which of ['a', 'b'] as const) {
            for (let n = 0; n < 1; n++) {
              const m = p[which];
              const i = rng.int(m.length);
              const saved = m[i]!;
              m[i] = saved + eps;
              const up = (await model.lossAndGradients(tokens, lora)).loss;
              m[i] = saved - eps;
              const down = (await model.lossAndGradients(tokens, lora)).loss;
              m[i] = saved;
              const numeric = (up - down) / (2 * eps);
              const analytic = gradients.get(p.base)![which][i]!;
              const error = Math.abs(numeric - analytic) / Math.max(1e-3, Math.abs(numeric), Math.abs(analytic));
              worst = Math.max(worst, error);
              checked++;
              assert.ok(error < 1e-5, `${p.base}.${which}[${i}]: analytic ${analytic}, numeric ${numeric}`);
            }
          }
        }
        console.log(`# ${name}: ${checked} LoRA gradient entries vs finite differences, worst relative error ${worst.toExponential(2)}`);
      } finally {
        await source.close();
      }
    });
  });
}
