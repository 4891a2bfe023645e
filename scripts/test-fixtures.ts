// Writes the tiny fixture models the browser tests fetch (test-output/fixtures/<name>.gguf),
// skipping those already there, and LoRA adapters for tiny-e2b. Run by `npm run test:browser`
// before the browser suite.
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { nodeFileSource } from '../src/core/gguf/node-source.js';
import { readGGUF } from '../src/core/gguf/read.js';
import type { GGUFFile } from '../src/core/gguf/types.js';
import { writeLoraGGUF, type LoraTensor } from '../src/core/lora/index.js';
import { Rng, TINY_CONFIG_NAMES, writeTinyModel } from '../test/fixtures/index.js';

const dir = fileURLToPath(new URL('../test-output/fixtures/', import.meta.url));
await mkdir(dir, { recursive: true });
const written = new Set<string>();
for (const name of TINY_CONFIG_NAMES) {
  if (!existsSync(`${dir}${name}.gguf`)) {
    await writeTinyModel(name, dir);
    written.add(name);
  }
}

/**
 * A random rank-`rank` LoRA adapter on every projection of every layer of `model`, strong enough
 * to change its greedy answers. `widen` adds inputs to each adapted weight: an adapter made for
 * another model, which the engine must refuse.
 */
async function writeAdapter(model: GGUFFile, path: string, options: { seed: number; rank?: number; widen?: number }): Promise<void> {
  const rank = options.rank ?? 4;
  const tensors = new Map<string, LoraTensor>();
  for (const info of model.tensors) {
    if (!/^blk\.\d+\.(attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|ffn_down)\.weight$/.test(info.name)) continue;
    const rng = new Rng(options.seed, info.name);
    const inFeatures = (info.dims[0] as number) + (options.widen ?? 0);
    const outFeatures = info.dims[1] as number;
    const a = Float32Array.from({ length: rank * inFeatures }, () => rng.gaussian() / Math.sqrt(inFeatures));
    const b = Float32Array.from({ length: outFeatures * rank }, () => (rng.gaussian() * 0.5) / Math.sqrt(rank));
    tensors.set(info.name, { base: info.name, rank, inFeatures, outFeatures, a, b });
  }
  await writeFile(path, await writeLoraGGUF({ name: 'tiny-e2b-test-lora', architecture: 'gemma4', alpha: rank, tensors }));
}

// For tiny-e2b: one that fits, one made for wider weights (another model's).
const adapters = [
  { model: 'tiny-e2b', file: 'tiny-e2b-lora.gguf', options: { seed: 3 } },
  { model: 'tiny-e2b', file: 'tiny-e2b-lora-misfit.gguf', options: { seed: 3, widen: 32 } },
] as const;
for (const { model, file, options } of adapters) {
  if (!written.has(model) && existsSync(`${dir}${file}`)) continue;
  const source = await nodeFileSource(`${dir}${model}.gguf`);
  try {
    await writeAdapter(await readGGUF(source), `${dir}${file}`, options);
  } finally {
    await source.close();
  }
}
