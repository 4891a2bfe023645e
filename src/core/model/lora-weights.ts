import { RullamaError } from '../errors.js';
import { checkBufferSize, uploadStorage } from '../gpu/buffers.js';
import type { GGUFFile } from '../gguf/types.js';
import { checkAdapterFits, loraScale, type LoraAdapter } from '../lora/adapter.js';
import { sha256 } from '../ollama/sha256.js';

/** An adapter applied to a model at a scale (1 = as trained). */
export interface AppliedAdapter {
  readonly adapter: LoraAdapter;
  readonly scale?: number;
}

/**
 * The LoRA terms of one base weight W [out][in], every applied adapter at once: y += B·(A·x) with
 * A [rank][in] the adapters' A matrices stacked and B [out][rank] their B matrices side by side,
 * each adapter's scale folded into its columns of B. The rank is padded with zero rows/columns to
 * a multiple of 32, the step of the linear kernels.
 */
export interface LoraPair {
  readonly base: string;
  readonly rank: number;
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly a: GPUBuffer;
  readonly b: GPUBuffer;
}

const RANK_STEP = 32;

/** Every applied adapter's terms on the GPU, by base weight name, plus what identifies the set. */
export class GpuLoraSet {
  private constructor(
    readonly applied: readonly AppliedAdapter[],
    readonly pairs: ReadonlyMap<string, LoraPair>,
  ) {}

  /**
   * Checks every adapter against the model (architecture, tensor names and shapes; `adaptable`:
   * the weights the forward pass can adapt) and uploads the combined matrices.
   */
  static create(device: GPUDevice, file: GGUFFile, adaptable: ReadonlySet<string>, applied: readonly AppliedAdapter[]): GpuLoraSet {
    const byBase = new Map<string, { a: Float32Array; b: Float32Array; rank: number; scale: number }[]>();
    for (const { adapter, scale = 1 } of applied) {
      if (!Number.isFinite(scale)) throw new RullamaError('bad-argument', `adapter ${adapter.name}: scale ${scale} is not a finite number`);
      checkAdapterFits(adapter, file);
      for (const t of adapter.tensors.values()) {
        if (!adaptable.has(t.base)) throw new RullamaError('unsupported', `adapter ${adapter.name} changes ${t.base}; LoRA applies to the layers' projections (q, k, v, o, gate, up, down, per-layer proj), not to embeddings, the output or norms`);
        byBase.set(t.base, [...(byBase.get(t.base) ?? []), { a: t.a, b: t.b, rank: t.rank, scale: loraScale(adapter, t, scale) }]);
      }
    }
    const pairs = new Map<string, LoraPair>();
    try {
      for (const [base, parts] of byBase) {
        const info = file.tensors.find((t) => t.name === base)!;
        const [inFeatures, outFeatures] = info.dims as [number, number];
        const used = parts.reduce((n, p) => n + p.rank, 0);
        const rank = Math.ceil(used / RANK_STEP) * RANK_STEP;
        const a = new Float32Array(rank * inFeatures);
        const b = new Float32Array(outFeatures * rank);
        let first = 0;
        for (const p of parts) {
          a.set(p.a, first * inFeatures);
          for (let o = 0; o < outFeatures; o++) {
            for (let r = 0; r < p.rank; r++) b[o * rank + first + r] = p.scale * p.b[o * p.rank + r]!;
          }
          first += p.rank;
        }
        checkBufferSize(device, `${base} LoRA`, b.byteLength);
        checkBufferSize(device, `${base} LoRA`, a.byteLength);
        pairs.set(base, {
          base, rank, inFeatures, outFeatures,
          a: uploadStorage(device, a, `${base}.lora_a`),
          b: uploadStorage(device, b, `${base}.lora_b`),
        });
      }
    } catch (e) {
      for (const p of pairs.values()) destroyPair(p);
      throw e;
    }
    return new GpuLoraSet(applied, pairs);
  }

  get bytes(): number {
    let n = 0;
    for (const p of this.pairs.values()) n += p.a.size + p.b.size;
    return n;
  }

  destroy(): void {
    for (const p of this.pairs.values()) destroyPair(p);
  }
}

function destroyPair(p: LoraPair): void {
  p.a.destroy();
  p.b.destroy();
}

const fingerprints = new WeakMap<LoraAdapter, Uint8Array>();

/** SHA-256 of an adapter's tensors (names, shapes, alpha and values), computed once per adapter. */
function adapterFingerprint(adapter: LoraAdapter): Uint8Array {
  let print = fingerprints.get(adapter);
  if (!print) {
    const tensors = [...adapter.tensors.values()].sort((x, y) => (x.base < y.base ? -1 : 1));
    const header = new TextEncoder().encode(JSON.stringify([adapter.alpha, tensors.map((t) => [t.base, t.rank, t.inFeatures, t.outFeatures])]));
    const parts: Uint8Array[] = [header];
    for (const t of tensors) for (const m of [t.a, t.b]) parts.push(new Uint8Array(m.buffer, m.byteOffset, m.byteLength));
    print = sha256(concat(parts));
    fingerprints.set(adapter, print);
  }
  return print;
}

/**
 * What a saved state depends on: the model's layout hash alone without adapters, otherwise a hash
 * of it with every applied adapter's fingerprint and scale, so a state saved with one set of
 * adapters is refused by a session with another (its keys and values were computed with them).
 */
export function stateHash(layoutHash: Uint8Array, applied: readonly AppliedAdapter[]): Uint8Array {
  if (applied.length === 0) return layoutHash;
  const scales = new Float64Array(applied.map((a) => a.scale ?? 1));
  return sha256(concat([layoutHash, ...applied.map((a) => adapterFingerprint(a.adapter)), new Uint8Array(scales.buffer)])).slice(0, layoutHash.length);
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const all = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.byteLength;
  }
  return all;
}
