import { RullamaError } from '../errors.js';
import type { GGUFFile, GGUFValue } from '../gguf/types.js';

/**
 * Gemma 4 hyper-parameters, read from GGUF metadata (spec §1). Per-layer values are resolved
 * into `layers` so that the rest of the model never re-derives them.
 *
 * Dimension legend used across src/core/model:
 *   d   model width (embedding_length)         P   per-layer-embedding width
 *   hd  head dim of a layer (swa or global)    nq  query heads, nkv  key/value heads
 *   F   FFN width of a layer                   V   vocabulary size
 */
export interface LayerConfig {
  readonly index: number;
  /** Sliding-window attention (true) or global attention (false). */
  readonly sliding: boolean;
  readonly headDim: number;
  readonly kvHeads: number;
  readonly ffnWidth: number;
  readonly ropeBase: number;
  /** Dimensions that RoPE treats as rotating (pairs (j, j + ropeDims/2)); frequency factors may still freeze some. */
  readonly ropeDims: number;
  /** The layer whose KV cache this layer reads: itself when it owns one, its donor when shared. */
  readonly kvLayer: number;
}

export interface Gemma4Config {
  readonly architecture: 'gemma4';
  readonly layerCount: number;
  readonly width: number;
  readonly headCount: number;
  readonly headDimGlobal: number;
  readonly headDimSliding: number;
  readonly slidingWindow: number;
  readonly rmsEpsilon: number;
  /** Final logit soft-cap (0 = none). */
  readonly logitSoftcap: number;
  /** Per-layer-embedding width P (0 = no PLE). */
  readonly pleWidth: number;
  readonly contextLength: number;
  /** How many trailing layers borrow another layer's KV cache. */
  readonly sharedKvLayers: number;
  readonly vocabSize: number;
  readonly layers: readonly LayerConfig[];
}

type Meta = ReadonlyMap<string, GGUFValue>;

function required(meta: Meta, key: string): GGUFValue {
  const v = meta.get(key);
  if (v === undefined) throw new RullamaError('bad-gguf', `a gemma4 model needs metadata ${key}, which this file lacks`);
  return v;
}

function scalar(meta: Meta, key: string, fallback?: number): number {
  const v = fallback === undefined ? required(meta, key) : meta.get(key) ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new RullamaError('bad-gguf', `metadata ${key} must be a number, got ${String(v)}`);
  return v;
}

/** A key that may be one number for all layers or an array with one entry per layer. */
function perLayer(meta: Meta, key: string, layerCount: number): number[] {
  const v = required(meta, key);
  if (typeof v === 'number') return new Array<number>(layerCount).fill(v);
  if (typeof v === 'object' && 'length' in v && v.length === layerCount) {
    const values = Array.from(v as ArrayLike<unknown>, Number);
    if (values.every((x) => Number.isInteger(x) && x > 0)) return values;
  }
  throw new RullamaError('bad-gguf', `metadata ${key} must be a positive number or ${layerCount} of them`);
}

function positiveInt(name: string, v: number): number {
  if (!Number.isInteger(v) || v <= 0) throw new RullamaError('bad-gguf', `${name} must be a positive integer, got ${v}`);
  return v;
}

/** Reads and checks a Gemma 4 configuration; a file of another architecture is 'wrong-arch'. */
export function readGemma4Config(file: GGUFFile): Gemma4Config {
  const meta = file.metadata;
  const architecture = meta.get('general.architecture');
  if (architecture !== 'gemma4') {
    throw new RullamaError('wrong-arch', `expected a gemma4 model, but general.architecture is ${JSON.stringify(architecture ?? null)}`);
  }
  const k = (name: string) => `gemma4.${name}`;
  const layerCount = positiveInt('block_count', scalar(meta, k('block_count')));
  const width = positiveInt('embedding_length', scalar(meta, k('embedding_length')));
  const headCount = positiveInt('head_count', scalar(meta, k('attention.head_count')));
  const headDimGlobal = positiveInt('key_length', scalar(meta, k('attention.key_length')));
  const headDimSliding = positiveInt('key_length_swa', scalar(meta, k('attention.key_length_swa'), headDimGlobal));
  const valueGlobal = scalar(meta, k('attention.value_length'), headDimGlobal);
  const valueSliding = scalar(meta, k('attention.value_length_swa'), headDimSliding);
  if (valueGlobal !== headDimGlobal || valueSliding !== headDimSliding) {
    throw new RullamaError('unsupported', `value head dims (${valueGlobal}, ${valueSliding}) that differ from key head dims are not supported`);
  }
  const ffn = perLayer(meta, k('feed_forward_length'), layerCount);
  const kvHeads = perLayer(meta, k('attention.head_count_kv'), layerCount);
  for (const [i, n] of kvHeads.entries()) {
    if (headCount % n !== 0) throw new RullamaError('bad-gguf', `layer ${i}: ${headCount} query heads cannot be grouped over ${n} KV heads`);
  }

  const pattern = required(meta, k('attention.sliding_window_pattern'));
  if (!Array.isArray(pattern) || pattern.length !== layerCount || !pattern.every((x) => typeof x === 'boolean')) {
    throw new RullamaError('bad-gguf', `gemma4.attention.sliding_window_pattern must hold ${layerCount} booleans`);
  }
  const sliding = pattern as boolean[];
  const sharedKvLayers = scalar(meta, k('attention.shared_kv_layers'), 0);
  if (!Number.isInteger(sharedKvLayers) || sharedKvLayers < 0 || sharedKvLayers >= layerCount) {
    throw new RullamaError('bad-gguf', `gemma4.attention.shared_kv_layers = ${sharedKvLayers} is impossible with ${layerCount} layers`);
  }
  const firstShared = layerCount - sharedKvLayers;
  const ropeBase = scalar(meta, k('rope.freq_base'), 1e6);
  const ropeBaseSwa = scalar(meta, k('rope.freq_base_swa'), 1e4);
  const ropeDims = scalar(meta, k('rope.dimension_count'), headDimGlobal);
  const ropeDimsSwa = scalar(meta, k('rope.dimension_count_swa'), headDimSliding);

  const layers: LayerConfig[] = [];
  for (let i = 0; i < layerCount; i++) {
    const isSliding = sliding[i]!;
    // The donor rule (spec §0.6): a shared layer reads the last KV-owning layer of its own type.
    let kvLayer = i;
    if (i >= firstShared) {
      kvLayer = -1;
      for (let j = firstShared - 1; j >= 0; j--) if (sliding[j] === isSliding) { kvLayer = j; break; }
      if (kvLayer < 0) throw new RullamaError('bad-gguf', `layer ${i} shares KV but no earlier ${isSliding ? 'sliding' : 'global'} layer owns one`);
    }
    layers.push({
      index: i,
      sliding: isSliding,
      headDim: isSliding ? headDimSliding : headDimGlobal,
      kvHeads: kvHeads[i]!,
      ffnWidth: ffn[i]!,
      ropeBase: isSliding ? ropeBaseSwa : ropeBase,
      ropeDims: isSliding ? ropeDimsSwa : ropeDims,
      kvLayer,
    });
  }

  const tokens = meta.get('tokenizer.ggml.tokens');
  const embd = file.tensors.find((t) => t.name === 'token_embd.weight');
  const vocabSize = embd?.dims[1] ?? (Array.isArray(tokens) ? tokens.length : 0);
  return {
    architecture: 'gemma4',
    layerCount,
    width,
    headCount,
    headDimGlobal,
    headDimSliding,
    slidingWindow: positiveInt('sliding_window', scalar(meta, k('attention.sliding_window'))),
    rmsEpsilon: scalar(meta, k('attention.layer_norm_rms_epsilon'), 1e-6),
    logitSoftcap: scalar(meta, k('final_logit_softcapping'), 0),
    pleWidth: scalar(meta, k('embedding_length_per_layer_input'), 0),
    contextLength: scalar(meta, k('context_length'), 8192),
    sharedKvLayers,
    vocabSize,
    layers,
  };
}
