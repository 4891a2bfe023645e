// Random LoRA adapters for tests: well conditioned (A ~ N(0, 1/in), B ~ N(0, 0.3²/rank)), so the
// adapter changes the logits visibly without swamping the base model.
import type { GGUFFile } from '../../src/core/gguf/types.js';
import type { LoraAdapter, LoraTensor } from '../../src/core/lora/adapter.js';
import { Rng } from '../fixtures/random.js';

const TARGET = /^blk\.(\d+)\.(attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|ffn_down)\.weight$/;

/** Normal values with standard deviation `std`. */
export function randomValues(n: number, std: number, rng: Rng): Float32Array {
  return Float32Array.from({ length: n }, () => rng.gaussian() * std);
}

/**
 * A random adapter on every LoRA target of every layer of `model` (or those whose stem, such as
 * `attn_q`, is in `stems`).
 */
export function randomAdapter(model: GGUFFile, rank: number, alpha: number, seed = 5, stems?: readonly string[]): LoraAdapter {
  const rng = new Rng(seed, 'lora');
  const tensors = new Map<string, LoraTensor>();
  for (const info of model.tensors) {
    const m = TARGET.exec(info.name);
    if (!m || (stems && !stems.includes(m[2]!))) continue;
    const [inFeatures, outFeatures] = info.dims as [number, number];
    tensors.set(info.name, {
      base: info.name, rank, inFeatures, outFeatures,
      a: randomValues(rank * inFeatures, 1 / Math.sqrt(inFeatures), rng),
      b: randomValues(outFeatures * rank, 0.3 / Math.sqrt(rank), rng),
    });
  }
  return { name: `random-${seed}`, architecture: 'gemma4', alpha, tensors };
}
