import { RullamaError } from '../errors.js';
import type { GGUFFile, GGUFTensorInfo } from '../gguf/types.js';
import type { Gemma4Config, LayerConfig } from './config.js';

/** The tensors of one decoder layer (spec §2). K/V weights are absent on layers that share KV. */
export interface LayerTensors {
  attnNorm: GGUFTensorInfo;       // [d]
  q: GGUFTensorInfo;              // [d, nq·hd]
  qNorm: GGUFTensorInfo;          // [hd]
  k: GGUFTensorInfo | null;       // [d, nkv·hd]
  kNorm: GGUFTensorInfo | null;   // [hd]
  v: GGUFTensorInfo | null;       // [d, nkv·hd]
  attnOutput: GGUFTensorInfo;     // [nq·hd, d]
  postAttnNorm: GGUFTensorInfo;   // [d]
  ffnNorm: GGUFTensorInfo;        // [d]
  gate: GGUFTensorInfo;           // [d, F]
  up: GGUFTensorInfo;             // [d, F]
  down: GGUFTensorInfo;           // [F, d]
  postFfnNorm: GGUFTensorInfo;    // [d]
  pleGate: GGUFTensorInfo | null; // [d, P]
  pleProj: GGUFTensorInfo | null; // [P, d]
  plePostNorm: GGUFTensorInfo | null; // [d]
  outputScale: GGUFTensorInfo;    // [1]
}

export interface ModelTensors {
  tokenEmbd: GGUFTensorInfo;          // [d, V], also the tied output matrix
  outputNorm: GGUFTensorInfo;         // [d]
  ropeFreqs: GGUFTensorInfo | null;   // [hd_global / 2]
  pleTokenEmbd: GGUFTensorInfo | null; // [L·P, V]
  pleModelProj: GGUFTensorInfo | null; // [d, L·P]
  pleProjNorm: GGUFTensorInfo | null;  // [P]
  layers: LayerTensors[];
}

/**
 * Finds every tensor the text model needs and checks its shape against the configuration, so a
 * wrong or incomplete file fails here, with the tensor's name, rather than deep inside a kernel.
 * Tensors of other towers (v.*, a.*, mm.*) are ignored.
 */
export function resolveTensors(file: GGUFFile, config: Gemma4Config): ModelTensors {
  const byName = new Map(file.tensors.map((t) => [t.name, t]));
  const get = (name: string, dims: number[]): GGUFTensorInfo => {
    const t = byName.get(name);
    if (!t) throw new RullamaError('bad-gguf', `the model is missing tensor ${name} (expected shape [${dims.join(', ')}])`);
    const same = t.dims.length >= dims.length && t.dims.every((n, i) => n === (dims[i] ?? 1));
    if (!same) throw new RullamaError('bad-gguf', `tensor ${name} has shape [${t.dims.join(', ')}], expected [${dims.join(', ')}]`);
    return t;
  };
  const optional = (name: string, dims: number[]) => (byName.has(name) ? get(name, dims) : null);

  const d = config.width;
  const V = config.vocabSize;
  const L = config.layerCount;
  const P = config.pleWidth;
  const ple = P > 0;

  const layers = config.layers.map((layer: LayerConfig): LayerTensors => {
    const b = `blk.${layer.index}.`;
    const hd = layer.headDim;
    const qWidth = config.headCount * hd;
    const kvWidth = layer.kvHeads * hd;
    const ownsKv = layer.kvLayer === layer.index;
    return {
      attnNorm: get(`${b}attn_norm.weight`, [d]),
      q: get(`${b}attn_q.weight`, [d, qWidth]),
      qNorm: get(`${b}attn_q_norm.weight`, [hd]),
      k: ownsKv ? get(`${b}attn_k.weight`, [d, kvWidth]) : null,
      kNorm: ownsKv ? get(`${b}attn_k_norm.weight`, [hd]) : null,
      v: ownsKv ? get(`${b}attn_v.weight`, [d, kvWidth]) : null,
      attnOutput: get(`${b}attn_output.weight`, [qWidth, d]),
      postAttnNorm: get(`${b}post_attention_norm.weight`, [d]),
      ffnNorm: get(`${b}ffn_norm.weight`, [d]),
      gate: get(`${b}ffn_gate.weight`, [d, layer.ffnWidth]),
      up: get(`${b}ffn_up.weight`, [d, layer.ffnWidth]),
      down: get(`${b}ffn_down.weight`, [layer.ffnWidth, d]),
      postFfnNorm: get(`${b}post_ffw_norm.weight`, [d]),
      pleGate: ple ? get(`${b}inp_gate.weight`, [d, P]) : null,
      pleProj: ple ? get(`${b}proj.weight`, [P, d]) : null,
      plePostNorm: ple ? get(`${b}post_norm.weight`, [d]) : null,
      outputScale: get(`${b}layer_output_scale.weight`, [1]),
    };
  });

  return {
    tokenEmbd: get('token_embd.weight', [d, V]),
    outputNorm: get('output_norm.weight', [d]),
    ropeFreqs: optional('rope_freqs.weight', [config.headDimGlobal / 2]),
    pleTokenEmbd: ple ? get('per_layer_token_embd.weight', [L * P, V]) : null,
    pleModelProj: ple ? get('per_layer_model_proj.weight', [d, L * P]) : null,
    pleProjNorm: ple ? get('per_layer_proj_norm.weight', [P]) : null,
    layers,
  };
}
