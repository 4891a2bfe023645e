// Our side of the end-to-end LoRA gradient check against PyTorch autograd (transformers Gemma 4 +
// PEFT, fp32): scripts/dev/peft_grad_check.py reads what this writes. See scripts/dev/README.md.
//
// For each tiny fixture model named (default tiny-e2b and tiny-kquant) it writes, under OUT/<name>/:
//   model.gguf     the fixture (exact values; tiny-kquant has Q4_K/Q5_K/Q6_K weights)
//   adapter.gguf   a deterministic LoRA adapter, A and B both random (core writeLoraGGUF, the
//                  llama.cpp format: lora_a ne [in, r] = A [r][in], lora_b ne [r, out] = B [out][r])
//   grads.f32      our GPU gradients, float32 LE, one segment per tensor (see run.json "tensors")
//   reference.f32  the float64 CPU reference's gradients (src/core/reference/backward.ts) in the
//                  same layout, stored as float32 (a third opinion; --no-reference skips it)
//   run.json       tokens, labels (-1 = masked), the labelled count, rank, alpha, scale, our loss
//                  (mean cross-entropy over the labelled positions), the reference's loss, and
//                  per tensor: base name, layer, target, rank, in, out, offsets (in f32 elements)
//                  of dA [r][in] and dB [out][r] in grads.f32 / reference.f32
//
//   VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json \
//     node --import ./scripts/ts-loader.mjs scripts/dev/train-grads.ts --out bench/dist/peft [tiny-e2b tiny-kquant]
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { readBack, uploadStorage } from '../../src/core/gpu/buffers.js';
import { nodeFileSource } from '../../src/core/gguf/node-source.js';
import { readGGUF } from '../../src/core/gguf/read.js';
import { writeLoraGGUF } from '../../src/core/lora/index.js';
import { Gemma4Model } from '../../src/core/model/model.js';
import { ReferenceModel } from '../../src/core/reference/forward.js';
import { Tokenizer } from '../../src/core/tokenizer/tokenizer.js';
import { TrainingGraph } from '../../src/core/train/graph.js';
import { LoraLayout } from '../../src/core/train/lora-params.js';
import { GEMMA4_VOCAB_PATH, TINY_CONFIGS, writeGemma4Model, type TinyConfigName } from '../../test/fixtures/index.js';
import type { Gemma4Config } from '../../test/fixtures/index.js';
import { Rng } from '../../test/fixtures/random.js';
import { openDawnDevice } from '../../test/shared/dawn.js';

const TEXT = 'The quick brown fox jumps over the lazy dog, and then it runs into the forest where the old oak trees grow tall, the river bends twice, and the evening light falls softly on the quiet hills.';
const RANK = 4;
const ALPHA = 8;

const { values: opts, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    out: { type: 'string', default: 'bench/dist/peft' },
    'no-reference': { type: 'boolean', default: false },
    /** Positions before this one are masked (a prompt); the last position has no next token. */
    'prompt-mask': { type: 'string', default: '5' },
    /** The real Gemma 4 vocab GGUF (default ../shared/fixtures/…; give it when running the bundle). */
    vocab: { type: 'string' },
    /** Only write OUT/<name>/model.gguf and print its sha256 (on a machine that has no copy). */
    'model-only': { type: 'boolean', default: false },
  },
});
const names = (positionals.length ? positionals : ['tiny-e2b', 'tiny-kquant']) as TinyConfigName[];

function relativeL2(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return Math.sqrt(num / den);
}

const bytes = (v: Float32Array) => new Uint8Array(v.buffer, v.byteOffset, v.byteLength);

/** The fixture exactly as test/fixtures writeTinyModel writes it (seed 1, exact values). */
async function writeModel(name: TinyConfigName, dir: string): Promise<{ path: string; sha256: string }> {
  await mkdir(dir, { recursive: true });
  const config = TINY_CONFIGS[name] as Gemma4Config | undefined;
  if (!config) throw new Error(`no tiny config ${name}`);
  const path = join(dir, 'model.gguf');
  const w = await writeGemma4Model(config, path, { seed: 1, hash: true, vocabPath: opts.vocab ?? GEMMA4_VOCAB_PATH });
  return { path, sha256: w.sha256! };
}

if (opts['model-only']) {
  for (const name of names) {
    const w = await writeModel(name, join(opts.out!, name));
    console.log(JSON.stringify({ model: name, path: w.path, sha256: w.sha256 }));
  }
  process.exit(0);
}

const { device } = await openDawnDevice();
try {
  for (const name of names) {
    const dir = join(opts.out!, name);
    const { path: modelPath, sha256: modelSha } = await writeModel(name, dir);
    const source = await nodeFileSource(modelPath);
    try {
      const file = await readGGUF(source);
      const tokens = Tokenizer.fromGGUF(file).encode(TEXT);
      const promptMask = Number(opts['prompt-mask']);
      // labels[t] is the token position t predicts (tokens[t+1]); -1 = no loss there. Besides the
      // prompt, every seventh position is masked too, so masking inside the sequence is exercised.
      const labels = tokens.map((_, t) => (t < promptMask || t + 1 >= tokens.length || t % 7 === 3 ? -1 : tokens[t + 1]!));
      const count = labels.filter((l) => l >= 0).length;

      const model = await Gemma4Model.load(device, source, { file, contextSize: 64, prefillChunk: 16 });
      const layout = LoraLayout.plan(model.config, file, { rank: RANK, alpha: ALPHA });
      // A as PEFT initialises it (uniform ±1/√in), B random too (B = 0 would make every dA zero).
      const values = layout.initialValues(11);
      const rng = new Rng(3, name);
      for (const s of layout.slots) for (let i = 0; i < s.outFeatures * s.rank; i++) values[s.bOffset + i] = (0.2 * rng.gaussian()) / Math.sqrt(s.rank);
      const adapter = layout.toAdapter(values, `${name}-grad-check`);
      await writeFile(join(dir, 'adapter.gguf'), await writeLoraGGUF(adapter));

      const params = uploadStorage(device, values, 'params');
      const grads = uploadStorage(device, new Float32Array(layout.size), 'grads');
      const graph = await TrainingGraph.create(model, layout, params, grads, { maxTokens: tokens.length, lossChunk: 16 });
      let ours: Float32Array;
      let loss: number;
      try {
        await graph.run(tokens, labels, count);
        ours = new Float32Array(await readBack(device, grads));
        const perToken = new Float32Array(await readBack(device, graph.lossPerToken, tokens.length * 4));
        loss = perToken.reduce((s, x) => s + x, 0) / count;
      } finally {
        graph.destroy();
        params.destroy();
        grads.destroy();
        model.destroy();
      }

      // Packed: per slot dA [r][in] then dB [out][r], no padding.
      const tensors: { base: string; layer: number; target: string; rank: number; in: number; out: number; a_offset: number; b_offset: number }[] = [];
      let at = 0;
      for (const s of layout.slots) {
        tensors.push({ base: s.base, layer: s.layer, target: s.target, rank: s.rank, in: s.inFeatures, out: s.outFeatures, a_offset: at, b_offset: at + s.rank * s.inFeatures });
        at += s.rank * (s.inFeatures + s.outFeatures);
      }
      const pack = (flat: (s: (typeof layout.slots)[number]) => [ArrayLike<number>, ArrayLike<number>]) => {
        const outv = new Float32Array(at);
        layout.slots.forEach((s, i) => {
          const [a, b] = flat(s);
          outv.set(a, tensors[i]!.a_offset);
          outv.set(b, tensors[i]!.b_offset);
        });
        return outv;
      };
      const packedOurs = pack((s) => [ours.subarray(s.aOffset, s.aOffset + s.rank * s.inFeatures), ours.subarray(s.bOffset, s.bOffset + s.outFeatures * s.rank)]);
      await writeFile(join(dir, 'grads.f32'), bytes(packedOurs));

      let reference: { loss: number; worst_rel_l2: number; worst: string } | undefined;
      if (!opts['no-reference']) {
        const ref = await ReferenceModel.load(source, file);
        const lora = layout.slots.map((s) => ({
          base: s.base, rank: s.rank, scale: layout.scale,
          a: values.subarray(s.aOffset, s.aOffset + s.rank * s.inFeatures), b: values.subarray(s.bOffset, s.bOffset + s.outFeatures * s.rank),
        }));
        const expected = await ref.lossAndGradients(tokens, lora, labels);
        const packedRef = pack((s) => [expected.gradients.get(s.base)!.a, expected.gradients.get(s.base)!.b]);
        await writeFile(join(dir, 'reference.f32'), bytes(packedRef));
        let worst = 0;
        let worstName = '';
        for (const t of tensors) {
          for (const [part, off, n] of [['A', t.a_offset, t.rank * t.in], ['B', t.b_offset, t.out * t.rank]] as const) {
            const e = relativeL2(packedOurs.subarray(off, off + n), packedRef.subarray(off, off + n));
            if (e > worst) [worst, worstName] = [e, `${t.base} ${part}`];
          }
        }
        reference = { loss: expected.loss, worst_rel_l2: worst, worst: worstName };
      }

      const run = {
        model: name, model_sha256: modelSha, text: TEXT, tokens, labels, count, rank: RANK, alpha: ALPHA, scale: layout.scale,
        loss, reference, grads: 'grads.f32', reference_grads: reference ? 'reference.f32' : null, elements: at,
        tensor_types: [...new Set(file.tensors.map((t) => t.type))], tensors,
      };
      await writeFile(join(dir, 'run.json'), JSON.stringify(run, null, 1) + '\n');
      console.log(`# ${name}: ${tokens.length} tokens (${count} labelled), ${tensors.length} LoRA pairs, loss ${loss.toFixed(7)}` +
        (reference ? `; float64 reference loss ${reference.loss.toFixed(7)}, worst gradient rel L2 ${reference.worst_rel_l2.toExponential(2)} (${reference.worst})` : ''));
    } finally {
      await source.close();
    }
  }
} finally {
  device.destroy();
}
