import { RullamaError, throwIfAborted } from '../errors.js';
import { readGGUF, readTensorBytes } from '../gguf/read.js';
import type { ByteSource } from '../gguf/source.js';
import type { GGUFFile, GGUFTensorInfo } from '../gguf/types.js';
import { readGemma4Config, type Gemma4Config } from '../model/config.js';
import { resolveTensors, type LayerTensors, type ModelTensors } from '../model/tensors.js';
import { dequantize } from '../quant/dequant.js';
import { checkAdapterFits, loraBaseName, loraScale, type LoraAdapter, type LoraTarget, type LoraTensor } from '../lora/adapter.js';
import { loraLossAndGradients, type LoraParameter, type LossAndGradients, type ReferenceWeights } from './backward.js';
import { add, gelu, matVec, rmsNorm, rope } from './math.js';

type Weights<T> = { [K in keyof T]: T[K] extends GGUFTensorInfo ? Float32Array : T[K] extends GGUFTensorInfo | null ? Float32Array | null : never };

/** One KV-owning layer's cache: keys and values per position, each nkv·hd long. */
interface LayerCache {
  keys: Float64Array[];
  values: Float64Array[];
}

/**
 * The Gemma 4 forward pass on the CPU in float64 (spec §3), from dequantised weights. It is the
 * precision judge for the GPU path and the tool for layer-by-layer debugging: slow and exact,
 * for tiny models. Token and per-layer embedding rows are read from the source on demand.
 */
export class ReferenceModel {
  private caches = new Map<number, LayerCache>();
  private position = 0;
  /** LoRA terms per base tensor name: each adds scale·B·(A·x). */
  private lora = new Map<string, { tensor: LoraTensor; scale: number }[]>();

  private constructor(
    readonly config: Gemma4Config,
    private readonly file: GGUFFile,
    private readonly source: ByteSource,
    private readonly tensors: ModelTensors,
    private readonly layers: Weights<LayerTensors>[],
    private readonly outputMatrix: Float32Array,
    private readonly outputNorm: Float32Array,
    private readonly ropeFreqs: Float32Array | null,
    private readonly pleModelProj: Float32Array | null,
    private readonly pleProjNorm: Float32Array | null,
  ) {}

  static async load(source: ByteSource, file?: GGUFFile): Promise<ReferenceModel> {
    const gguf = file ?? (await readGGUF(source));
    const config = readGemma4Config(gguf);
    const tensors = resolveTensors(gguf, config);
    const load = async (t: GGUFTensorInfo) => dequantize(t.type, await readTensorBytes(source, t), t.elementCount);
    const loadOptional = async (t: GGUFTensorInfo | null) => (t ? load(t) : null);
    const layers: Weights<LayerTensors>[] = [];
    for (const lt of tensors.layers) {
      const w: Record<string, Float32Array | null> = {};
      for (const [key, t] of Object.entries(lt)) w[key] = await loadOptional(t as GGUFTensorInfo | null);
      layers.push(w as Weights<LayerTensors>);
    }
    return new ReferenceModel(
      config,
      gguf,
      source,
      tensors,
      layers,
      await load(tensors.tokenEmbd),
      await load(tensors.outputNorm),
      await loadOptional(tensors.ropeFreqs),
      await loadOptional(tensors.pleModelProj),
      await loadOptional(tensors.pleProjNorm),
    );
  }

  /** Applies these LoRA adapters (replacing any before), each at its scale; [] removes them. */
  setAdapters(adapters: readonly { adapter: LoraAdapter; scale?: number }[]): void {
    const lora = new Map<string, { tensor: LoraTensor; scale: number }[]>();
    for (const { adapter, scale = 1 } of adapters) {
      checkAdapterFits(adapter, this.file);
      for (const tensor of adapter.tensors.values()) {
        lora.set(tensor.base, [...(lora.get(tensor.base) ?? []), { tensor, scale: loraScale(adapter, tensor, scale) }]);
      }
    }
    this.lora = lora;
  }

  /** y = W·x (rows outputs) plus the LoRA terms of the weight named `name`. */
  private linear(name: string, w: Float32Array, x: Float64Array, rows: number): Float64Array {
    const y = matVec(w, x, rows);
    for (const { tensor, scale } of this.lora.get(name) ?? []) {
      const ax = matVec(tensor.a, x, tensor.rank);
      const bax = matVec(tensor.b, ax, rows);
      for (let i = 0; i < rows; i++) y[i]! += scale * bax[i]!;
    }
    return y;
  }

  /**
   * Loss of one sequence (every position predicts the next token, or `labels`) and its exact
   * gradients with respect to the given LoRA parameters, in float64 (see backward.ts).
   */
  async lossAndGradients(tokens: readonly number[], lora: readonly LoraParameter[], labels?: readonly number[]): Promise<LossAndGradients> {
    const c = this.config;
    for (const t of tokens) if (!Number.isInteger(t) || t < 0 || t >= c.vocabSize) throw new RullamaError('bad-token', `token id ${t} is outside the vocabulary`);
    const pleRows = c.pleWidth > 0 ? await Promise.all(tokens.map((t) => this.row(this.tensors.pleTokenEmbd!, t))) : null;
    const weights: ReferenceWeights = {
      config: c, layers: this.layers, embedding: this.outputMatrix, outputNorm: this.outputNorm,
      ropeFreqs: this.ropeFreqs, pleModelProj: this.pleModelProj, pleProjNorm: this.pleProjNorm,
    };
    return loraLossAndGradients(weights, tokens, pleRows, lora, labels);
  }

  /** Forgets the conversation. */
  reset(): void {
    this.caches.clear();
    this.position = 0;
  }

  /** Logits (after soft-capping) for each of `tokens`, continuing from the current position. */
  async forward(tokens: readonly number[], signal?: AbortSignal): Promise<Float64Array[]> {
    const out: Float64Array[] = [];
    for (const token of tokens) {
      throwIfAborted(signal);
      out.push(await this.step(token));
    }
    return out;
  }

  private async row(t: GGUFTensorInfo, index: number): Promise<Float32Array> {
    return dequantize(t.type, await readTensorBytes(this.source, t, index, 1), t.dims[0]!);
  }

  private async step(token: number): Promise<Float64Array> {
    const c = this.config;
    if (!Number.isInteger(token) || token < 0 || token >= c.vocabSize) {
      throw new RullamaError('bad-token', `token id ${token} is outside the vocabulary (0..${c.vocabSize - 1})`);
    }
    const d = c.width;
    const p = this.position;

    // §3.1 inputs: scaled embedding and the per-layer inputs.
    let h = Float64Array.from(this.outputMatrix.subarray(token * d, (token + 1) * d), (v) => v * Math.sqrt(d));
    let ple: Float64Array | null = null;
    if (c.pleWidth > 0) {
      const P = c.pleWidth;
      const e = await this.row(this.tensors.pleTokenEmbd!, token);
      const proj = matVec(this.pleModelProj!, h, c.layerCount * P).map((v) => v / Math.sqrt(d));
      const normed = rmsNorm(proj, c.rmsEpsilon, this.pleProjNorm, P);
      ple = normed.map((v, i) => (v + e[i]! * Math.sqrt(P)) * Math.SQRT1_2);
    }

    for (const layer of c.layers) {
      const w = this.layers[layer.index]!;
      const hd = layer.headDim;
      const lin = (target: LoraTarget, weight: Float32Array, input: Float64Array, rows: number) =>
        this.linear(loraBaseName(layer.index, target), weight, input, rows);
      // §3.2 attention block.
      const x = rmsNorm(h, c.rmsEpsilon, w.attnNorm);
      const q = rmsNorm(lin('q', w.q, x, c.headCount * hd), c.rmsEpsilon, w.qNorm, hd);
      const factors = layer.sliding ? null : this.ropeFreqs;
      rope(q, hd, layer.ropeDims, p, layer.ropeBase, factors);
      if (layer.kvLayer === layer.index) {
        const kvWidth = layer.kvHeads * hd;
        const k = rmsNorm(lin('k', w.k!, x, kvWidth), c.rmsEpsilon, w.kNorm, hd);
        rope(k, hd, layer.ropeDims, p, layer.ropeBase, factors);
        const v = rmsNorm(lin('v', w.v!, x, kvWidth), c.rmsEpsilon, null, hd);
        const cache = this.caches.get(layer.index) ?? { keys: [], values: [] };
        cache.keys.push(k);
        cache.values.push(v);
        this.caches.set(layer.index, cache);
      }
      const cache = this.caches.get(layer.kvLayer)!;
      const first = layer.sliding ? Math.max(0, p - c.slidingWindow + 1) : 0;
      const group = c.headCount / layer.kvHeads;
      const o = new Float64Array(c.headCount * hd);
      for (let head = 0; head < c.headCount; head++) {
        const kvOff = Math.floor(head / group) * hd;
        const scores: number[] = [];
        let max = -Infinity;
        for (let j = first; j <= p; j++) {
          let s = 0;
          for (let i = 0; i < hd; i++) s += q[head * hd + i]! * cache.keys[j]![kvOff + i]!;
          scores.push(s);
          max = Math.max(max, s);
        }
        let total = 0;
        for (let j = 0; j < scores.length; j++) total += scores[j] = Math.exp(scores[j]! - max);
        for (let j = first; j <= p; j++) {
          const weight = scores[j - first]! / total;
          for (let i = 0; i < hd; i++) o[head * hd + i]! += weight * cache.values[j]![kvOff + i]!;
        }
      }
      const a = lin('o', w.attnOutput, o, d);
      const h1 = add(h, rmsNorm(a, c.rmsEpsilon, w.postAttnNorm));

      // MLP block.
      const y = rmsNorm(h1, c.rmsEpsilon, w.ffnNorm);
      const gate = lin('gate', w.gate, y, layer.ffnWidth);
      const up = lin('up', w.up, y, layer.ffnWidth);
      const m = lin('down', w.down, gate.map((g, i) => gelu(g) * up[i]!), d);
      let h2 = add(h1, rmsNorm(m, c.rmsEpsilon, w.postFfnNorm));

      // Per-layer-embedding block.
      if (ple) {
        const P = c.pleWidth;
        const g = matVec(w.pleGate!, h2, P).map((v, i) => gelu(v) * ple![layer.index * P + i]!);
        h2 = add(h2, rmsNorm(matVec(w.pleProj!, g, d), c.rmsEpsilon, w.plePostNorm));
      }
      // Layer scale (every layer).
      const scale = w.outputScale[0]!;
      h = h2.map((v) => v * scale);
    }

    // §3.3 output: final norm, tied output matrix, soft-cap.
    const xf = rmsNorm(h, c.rmsEpsilon, this.outputNorm);
    const logits = matVec(this.outputMatrix, xf, c.vocabSize);
    if (c.logitSoftcap > 0) for (let i = 0; i < logits.length; i++) logits[i] = c.logitSoftcap * Math.tanh(logits[i]! / c.logitSoftcap);
    this.position++;
    return logits;
  }
}
