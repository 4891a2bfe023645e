import { RullamaError } from '../errors.js';
import type { GGUFFile } from '../gguf/types.js';
import { LORA_TARGETS, loraBaseName, loraScale, type LoraAdapter, type LoraTarget, type LoraTensor } from '../lora/adapter.js';
import type { Gemma4Config } from '../model/config.js';
import { SeededRandom } from '../sampling.js';

/** What to train: which weights get LoRA terms, and their rank and scaling. */
export interface LoraConfig {
  /** Rank r of every pair (default 16). */
  rank?: number;
  /** Scaling numerator: the terms are multiplied by alpha / r (default 2·r, the common choice). */
  alpha?: number;
  /** Which projections to adapt (default all seven). */
  targets?: readonly LoraTarget[];
  /** Which layers (default all). */
  layers?: readonly number[];
}

/** One trainable pair in the flat parameter vector: A [rank][in] at aOffset, B [out][rank] at bOffset. */
export interface LoraSlot {
  readonly base: string;
  readonly layer: number;
  readonly target: LoraTarget;
  readonly rank: number;
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly aOffset: number;
  readonly bOffset: number;
}

/** f32 elements a slot's segment starts on: 256 bytes, the storage binding offset alignment. */
const ALIGN = 64;
const align = (n: number) => Math.ceil(n / ALIGN) * ALIGN;

/**
 * Where every LoRA parameter lives in one flat f32 vector (parameters, gradients and the
 * optimiser's moments all share the layout, so one AdamW dispatch updates everything), with the
 * conversions to and from the adapter format llama.cpp and Ollama load.
 */
export class LoraLayout {
  private constructor(
    readonly rank: number,
    readonly alpha: number,
    readonly slots: readonly LoraSlot[],
    /** f32 elements of the vector (segments padded to 256 bytes). */
    readonly size: number,
  ) {}

  /** The layout for `config` on a model; KV-shared layers have no k/v weights and get no k/v pairs. */
  static plan(model: Gemma4Config, file: GGUFFile, config: LoraConfig = {}): LoraLayout {
    const rank = config.rank ?? 16;
    const alpha = config.alpha ?? 2 * rank;
    const targets = config.targets ?? (Object.keys(LORA_TARGETS) as LoraTarget[]);
    const layers = config.layers ?? model.layers.map((l) => l.index);
    if (!Number.isInteger(rank) || rank < 1 || rank > 1024) throw new RullamaError('bad-argument', `LoRA rank ${rank} must be an integer from 1 to 1024`);
    if (!Number.isFinite(alpha) || alpha <= 0) throw new RullamaError('bad-argument', `LoRA alpha ${alpha} must be a positive number`);
    if (targets.length === 0) throw new RullamaError('bad-argument', 'no LoRA targets');
    for (const t of targets) if (!(t in LORA_TARGETS)) throw new RullamaError('bad-argument', `unknown LoRA target ${t} (use ${Object.keys(LORA_TARGETS).join(', ')})`);
    for (const l of layers) if (!Number.isInteger(l) || l < 0 || l >= model.layerCount) throw new RullamaError('bad-argument', `layer ${l} is outside 0..${model.layerCount - 1}`);
    const slots: LoraSlot[] = [];
    let at = 0;
    for (const layer of [...new Set(layers)].sort((a, b) => a - b)) {
      for (const target of targets) {
        const base = loraBaseName(layer, target);
        const info = file.tensors.find((t) => t.name === base);
        if (!info) continue; // k/v of a KV-shared layer
        const [inFeatures, outFeatures] = info.dims as [number, number];
        const aOffset = at;
        const bOffset = align(aOffset + rank * inFeatures);
        at = align(bOffset + outFeatures * rank);
        slots.push({ base, layer, target, rank, inFeatures, outFeatures, aOffset, bOffset });
      }
    }
    if (slots.length === 0) throw new RullamaError('bad-argument', 'the model has none of the chosen LoRA targets in the chosen layers');
    return new LoraLayout(rank, alpha, slots, at);
  }

  /** The factor s of y = W·x + s·B·(A·x). */
  get scale(): number {
    return this.alpha / this.rank;
  }

  /** Trainable values (without padding). */
  get parameterCount(): number {
    return this.slots.reduce((n, s) => n + s.rank * (s.inFeatures + s.outFeatures), 0);
  }

  /**
   * Initial values as PEFT makes them: A uniform in ±1/√in (Kaiming-uniform with a = √5), B zero,
   * so training starts from the base model exactly. Deterministic for a seed.
   */
  initialValues(seed: number): Float32Array<ArrayBuffer> {
    const values = new Float32Array(this.size);
    const random = new SeededRandom(seed);
    for (const s of this.slots) {
      const bound = 1 / Math.sqrt(s.inFeatures);
      for (let i = 0; i < s.rank * s.inFeatures; i++) values[s.aOffset + i] = (2 * random.next() - 1) * bound;
    }
    return values;
  }

  /** The vector as an adapter GGUF's tensors (for export, and for inference with setAdapters). */
  toAdapter(values: Float32Array, name: string, architecture = 'gemma4'): LoraAdapter {
    if (values.length !== this.size) throw new RullamaError('bad-argument', `${values.length} values for a layout of ${this.size}`);
    const tensors = new Map<string, LoraTensor>();
    for (const s of this.slots) {
      tensors.set(s.base, {
        base: s.base, rank: s.rank, inFeatures: s.inFeatures, outFeatures: s.outFeatures,
        a: values.slice(s.aOffset, s.aOffset + s.rank * s.inFeatures),
        b: values.slice(s.bOffset, s.bOffset + s.outFeatures * s.rank),
      });
    }
    return { name, architecture, alpha: this.alpha, tensors };
  }

  /**
   * An adapter's values in this layout (to continue training it). Its tensors must be exactly this
   * layout's, at the same rank; its alpha may differ (B is rescaled so the adapter computes the same).
   */
  fromAdapter(adapter: LoraAdapter): Float32Array<ArrayBuffer> {
    const values = new Float32Array(this.size);
    if (adapter.tensors.size !== this.slots.length) throw new RullamaError('bad-argument', `the adapter has ${adapter.tensors.size} tensors, this training ${this.slots.length}`);
    for (const s of this.slots) {
      const t = adapter.tensors.get(s.base);
      if (!t || t.rank !== s.rank || t.inFeatures !== s.inFeatures || t.outFeatures !== s.outFeatures) {
        throw new RullamaError('bad-argument', `the adapter's ${s.base} is not a rank-${s.rank} ${s.inFeatures}→${s.outFeatures} pair`);
      }
      const factor = loraScale(adapter, t) / this.scale;
      values.set(t.a, s.aOffset);
      for (let i = 0; i < t.b.length; i++) values[s.bOffset + i] = t.b[i]! * factor;
    }
    return values;
  }
}
