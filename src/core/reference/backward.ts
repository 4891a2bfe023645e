// The float64 reference for LoRA training: one sequence forward with every activation kept, the
// causal-LM loss over every position, and the exact backward pass to the LoRA parameters. It is
// the judge for the GPU backward kernels (as forward.ts is for the forward ones); slow, tiny models.
import { RullamaError } from '../errors.js';
import type { Gemma4Config } from '../model/config.js';
import type { LayerTensors } from '../model/tensors.js';
import type { GGUFTensorInfo } from '../gguf/types.js';
import { loraBaseName, type LoraTarget } from '../lora/adapter.js';
import { gelu, rmsNorm, rope } from './math.js';

type Matrix = Float32Array | Float64Array;
type Weights<T> = { [K in keyof T]: T[K] extends GGUFTensorInfo ? Float32Array : T[K] extends GGUFTensorInfo | null ? Float32Array | null : never };

/** What the reference model holds, dequantised (see ReferenceModel). */
export interface ReferenceWeights {
  config: Gemma4Config;
  layers: Weights<LayerTensors>[];
  /** Token embedding, also the tied output matrix [V][d]. */
  embedding: Float32Array;
  outputNorm: Float32Array;
  ropeFreqs: Float32Array | null;
  pleModelProj: Float32Array | null;
  pleProjNorm: Float32Array | null;
}

/** One trainable LoRA pair on a base weight: y += scale·B·(A·x), A [rank][in], B [out][rank]. */
export interface LoraParameter {
  base: string;
  rank: number;
  a: Matrix;
  b: Matrix;
  scale: number;
}

export interface LossAndGradients {
  /** Mean cross-entropy over the positions with a label. */
  loss: number;
  /** Positions that counted. */
  count: number;
  /** d loss / d A and d loss / d B per base tensor name. */
  gradients: Map<string, { a: Float64Array; b: Float64Array }>;
}

// ---- building blocks and their backward ----

function matVec(w: Matrix, x: Float64Array, rows: number): Float64Array {
  const cols = x.length;
  const y = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let c = 0; c < cols; c++) s += w[r * cols + c]! * x[c]!;
    y[r] = s;
  }
  return y;
}

/** Wᵀ·dy for W [rows][cols]. */
function matVecT(w: Matrix, dy: Float64Array, cols: number): Float64Array {
  const dx = new Float64Array(cols);
  for (let r = 0; r < dy.length; r++) {
    const g = dy[r]!;
    if (g === 0) continue;
    for (let c = 0; c < cols; c++) dx[c]! += w[r * cols + c]! * g;
  }
  return dx;
}

/** into += scale · u ⊗ v (a [u.length][v.length] matrix). */
function addOuter(into: Float64Array, u: Float64Array, v: Float64Array, scale: number): void {
  for (let i = 0; i < u.length; i++) {
    const s = u[i]! * scale;
    for (let j = 0; j < v.length; j++) into[i * v.length + j]! += s * v[j]!;
  }
}

/** Backward of rmsNorm (y = x·r·w per slice of `size`, r = (mean x² + eps)^(-1/2)). */
export function rmsNormBackward(x: Float64Array, dy: Float64Array, eps: number, w: Float32Array | null, size = x.length): Float64Array {
  const dx = new Float64Array(x.length);
  for (let s = 0; s < x.length; s += size) {
    let sum = 0;
    for (let i = 0; i < size; i++) sum += x[s + i]! ** 2;
    const r = 1 / Math.sqrt(sum / size + eps);
    let dot = 0;
    for (let i = 0; i < size; i++) dot += dy[s + i]! * (w ? w[i]! : 1) * x[s + i]!;
    for (let i = 0; i < size; i++) dx[s + i] = r * dy[s + i]! * (w ? w[i]! : 1) - (x[s + i]! * r ** 3 * dot) / size;
  }
  return dx;
}

/** d gelu(x) / dx for the tanh approximation. */
export function geluDerivative(x: number): number {
  const k = 0.7978845608028654;
  const u = k * (x + 0.044715 * x ** 3);
  const t = Math.tanh(u);
  return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x);
}

// ---- the sequence ----

interface LayerActivations {
  h: Float64Array; // input residual
  x: Float64Array; // attn-normed input
  qRaw: Float64Array; // before q norm
  q: Float64Array; // normed, roped
  kRaw: Float64Array | null;
  vRaw: Float64Array | null;
  o: Float64Array; // attention output (before o proj)
  a: Float64Array; // o proj output
  h1: Float64Array;
  y: Float64Array; // ffn-normed
  gate: Float64Array;
  up: Float64Array;
  m: Float64Array; // gelu(gate)·up
  f: Float64Array; // down output
  h2: Float64Array;
  gp: Float64Array | null; // PLE gate pre-activation
  gm: Float64Array | null; // gelu(gp)·ple
  pp: Float64Array | null; // PLE projection output
}

/**
 * Loss and LoRA gradients of one sequence: `tokens` in, `labels[t]` the token that should follow
 * position t (−1 = not counted; default: the next token, the last position not counted).
 * `pleRows[t]` is token t's per-layer embedding row (dequantised) when the model has PLE.
 */
export function loraLossAndGradients(
  weights: ReferenceWeights,
  tokens: readonly number[],
  pleRows: readonly Float32Array[] | null,
  lora: readonly LoraParameter[],
  labels: readonly number[] = [...tokens.slice(1), -1],
): LossAndGradients {
  const c = weights.config;
  const T = tokens.length;
  const d = c.width;
  const eps = c.rmsEpsilon;
  const P = c.pleWidth;
  if (labels.length !== T) throw new RullamaError('bad-argument', `${labels.length} labels for ${T} tokens`);
  const byBase = new Map(lora.map((l) => [l.base, l]));
  const grads = new Map(lora.map((l) => [l.base, { a: new Float64Array(l.a.length), b: new Float64Array(l.b.length) }]));
  const lin = (layer: number, target: LoraTarget, w: Float32Array, x: Float64Array, rows: number) => {
    const y = matVec(w, x, rows);
    const p = byBase.get(loraBaseName(layer, target));
    if (p) {
      const bax = matVec(p.b, matVec(p.a, x, p.rank), rows);
      for (let i = 0; i < rows; i++) y[i]! += p.scale * bax[i]!;
    }
    return y;
  };
  /** Backward of lin: accumulates LoRA gradients, returns dx. */
  const linBack = (layer: number, target: LoraTarget, w: Float32Array, x: Float64Array, dy: Float64Array) => {
    const dx = matVecT(w, dy, x.length);
    const p = byBase.get(loraBaseName(layer, target));
    if (p) {
      const g = grads.get(p.base)!;
      const ax = matVec(p.a, x, p.rank);
      const btdy = matVecT(p.b, dy, p.rank);
      addOuter(g.b, dy, ax, p.scale);
      addOuter(g.a, btdy, x, p.scale);
      const back = matVecT(p.a, btdy, x.length);
      for (let i = 0; i < dx.length; i++) dx[i]! += p.scale * back[i]!;
    }
    return dx;
  };

  // §3.1 inputs (nothing trainable upstream, so no gradient is needed here).
  const ple: (Float64Array | null)[] = tokens.map((token, t) => {
    if (P === 0) return null;
    const h0 = Float64Array.from(weights.embedding.subarray(token * d, (token + 1) * d), (v) => v * Math.sqrt(d));
    const proj = matVec(weights.pleModelProj!, h0, c.layerCount * P).map((v) => v / Math.sqrt(d));
    const normed = rmsNorm(proj, eps, weights.pleProjNorm, P);
    return normed.map((v, i) => (v + pleRows![t]![i]! * Math.sqrt(P)) * Math.SQRT1_2);
  });

  // Forward, keeping activations.
  let hs: Float64Array[] = tokens.map((token) => Float64Array.from(weights.embedding.subarray(token * d, (token + 1) * d), (v) => v * Math.sqrt(d)));
  const acts: LayerActivations[][] = [];
  /** Roped keys and values per KV-owning layer and position. */
  const kv = new Map<number, { k: Float64Array[]; v: Float64Array[] }>();
  /** Attention probabilities per layer, position, head (for the backward). */
  const probs: Float64Array[][][] = [];
  for (const layer of c.layers) {
    const w = weights.layers[layer.index]!;
    const hd = layer.headDim;
    const nq = c.headCount;
    const factors = layer.sliding ? null : weights.ropeFreqs;
    const owner = layer.kvLayer === layer.index;
    const layerActs: LayerActivations[] = [];
    const layerProbs: Float64Array[][] = [];
    const cache = owner ? { k: [] as Float64Array[], v: [] as Float64Array[] } : kv.get(layer.kvLayer)!;
    if (owner) kv.set(layer.index, cache);
    // Q, K, V for every position first (keys of later positions are not used by earlier queries).
    const pre = hs.map((h, t) => {
      const x = rmsNorm(h, eps, w.attnNorm);
      const qRaw = lin(layer.index, 'q', w.q, x, nq * hd);
      const q = rmsNorm(qRaw, eps, w.qNorm, hd);
      rope(q, hd, layer.ropeDims, t, layer.ropeBase, factors);
      let kRaw: Float64Array | null = null;
      let vRaw: Float64Array | null = null;
      if (owner) {
        kRaw = lin(layer.index, 'k', w.k!, x, layer.kvHeads * hd);
        vRaw = lin(layer.index, 'v', w.v!, x, layer.kvHeads * hd);
        const k = rmsNorm(kRaw, eps, w.kNorm, hd);
        rope(k, hd, layer.ropeDims, t, layer.ropeBase, factors);
        cache.k.push(k);
        cache.v.push(rmsNorm(vRaw, eps, null, hd));
      }
      return { x, qRaw, q, kRaw, vRaw };
    });
    const group = nq / layer.kvHeads;
    const next: Float64Array[] = [];
    for (let t = 0; t < T; t++) {
      const { x, qRaw, q, kRaw, vRaw } = pre[t]!;
      const h = hs[t]!;
      const first = layer.sliding ? Math.max(0, t - c.slidingWindow + 1) : 0;
      const o = new Float64Array(nq * hd);
      const headProbs: Float64Array[] = [];
      for (let head = 0; head < nq; head++) {
        const kvOff = Math.floor(head / group) * hd;
        const p = new Float64Array(t - first + 1);
        let max = -Infinity;
        for (let j = first; j <= t; j++) {
          let s = 0;
          for (let i = 0; i < hd; i++) s += q[head * hd + i]! * cache.k[j]![kvOff + i]!;
          p[j - first] = s;
          max = Math.max(max, s);
        }
        let total = 0;
        for (let j = 0; j < p.length; j++) total += p[j] = Math.exp(p[j]! - max);
        for (let j = 0; j < p.length; j++) p[j]! /= total;
        for (let j = first; j <= t; j++) for (let i = 0; i < hd; i++) o[head * hd + i]! += p[j - first]! * cache.v[j]![kvOff + i]!;
        headProbs.push(p);
      }
      layerProbs.push(headProbs);
      const a = lin(layer.index, 'o', w.attnOutput, o, d);
      const an = rmsNorm(a, eps, w.postAttnNorm);
      const h1 = h.map((v, i) => v + an[i]!);
      const y = rmsNorm(h1, eps, w.ffnNorm);
      const gate = lin(layer.index, 'gate', w.gate, y, layer.ffnWidth);
      const up = lin(layer.index, 'up', w.up, y, layer.ffnWidth);
      const m = gate.map((g, i) => gelu(g) * up[i]!);
      const f = lin(layer.index, 'down', w.down, m, d);
      const fn = rmsNorm(f, eps, w.postFfnNorm);
      let h2 = h1.map((v, i) => v + fn[i]!);
      let gp: Float64Array | null = null;
      let gm: Float64Array | null = null;
      let pp: Float64Array | null = null;
      const h2kept = h2;
      if (P > 0) {
        gp = matVec(w.pleGate!, h2, P);
        gm = gp.map((v, i) => gelu(v) * ple[t]![layer.index * P + i]!);
        pp = matVec(w.pleProj!, gm, d);
        const ppn = rmsNorm(pp, eps, w.plePostNorm);
        h2 = h2.map((v, i) => v + ppn[i]!);
      }
      const scale = w.outputScale[0]!;
      next.push(h2.map((v) => v * scale));
      layerActs.push({ h, x, qRaw, q, kRaw, vRaw, o, a, h1, y, gate, up, m, f, h2: h2kept, gp, gm, pp });
    }
    acts.push(layerActs);
    probs.push(layerProbs);
    hs = next;
  }

  // Output and loss.
  const dh: Float64Array[] = [];
  let loss = 0;
  let count = 0;
  const cap = c.logitSoftcap;
  for (let t = 0; t < T; t++) {
    const xf = rmsNorm(hs[t]!, eps, weights.outputNorm);
    if (labels[t]! < 0) {
      dh.push(new Float64Array(d));
      continue;
    }
    const z = matVec(weights.embedding, xf, c.vocabSize);
    const capped = cap > 0 ? z.map((v) => cap * Math.tanh(v / cap)) : z;
    let max = -Infinity;
    for (const v of capped) max = Math.max(max, v);
    let total = 0;
    for (const v of capped) total += Math.exp(v - max);
    loss += Math.log(total) + max - capped[labels[t]!]!;
    count++;
    // d loss / d capped = softmax − onehot; through the soft-cap: × (1 − tanh²).
    const dz = capped.map((v, i) => (Math.exp(v - max) / total - (i === labels[t] ? 1 : 0)) * (cap > 0 ? 1 - (v / cap) ** 2 : 1));
    dh.push(rmsNormBackward(hs[t]!, matVecT(weights.embedding, dz, d), eps, weights.outputNorm));
  }
  if (count === 0) throw new RullamaError('bad-argument', 'no position has a label');
  for (const g of dh) for (let i = 0; i < d; i++) g[i]! /= count;

  // Backward through the layers, last first. dK/dV of shared caches gather from every reader.
  const dkv = new Map<number, { k: Float64Array[]; v: Float64Array[] }>();
  let dHs: Float64Array[] = dh;
  for (let li = c.layers.length - 1; li >= 0; li--) {
    const layer = c.layers[li]!;
    const w = weights.layers[li]!;
    const hd = layer.headDim;
    const nq = c.headCount;
    const group = nq / layer.kvHeads;
    const factors = layer.sliding ? null : weights.ropeFreqs;
    const cache = kv.get(layer.kvLayer)!;
    const kvWidth = layer.kvHeads * hd;
    let dCache = dkv.get(layer.kvLayer);
    if (!dCache) {
      dCache = { k: tokens.map(() => new Float64Array(kvWidth)), v: tokens.map(() => new Float64Array(kvWidth)) };
      dkv.set(layer.kvLayer, dCache);
    }
    const dq: Float64Array[] = [];
    const dx: Float64Array[] = [];
    const dHin: Float64Array[] = [];
    for (let t = 0; t < T; t++) {
      const s = acts[li]![t]!;
      const dOut = dHs[t]!.map((v) => v * w.outputScale[0]!);
      // PLE block: h3 = h2 + norm(Wpp·(gelu(Wpg·h2)·ple)).
      let dh2 = dOut.slice();
      if (P > 0) {
        const dpp = rmsNormBackward(s.pp!, dOut, eps, w.plePostNorm);
        const dgm = matVecT(w.pleProj!, dpp, P);
        const dgp = dgm.map((g, i) => g * ple[t]![li * P + i]! * geluDerivative(s.gp![i]!));
        const back = matVecT(w.pleGate!, dgp, d);
        dh2 = dh2.map((v, i) => v + back[i]!);
      }
      // MLP block: h2 = h1 + norm(down(gelu(gate(y))·up(y))), y = norm(h1).
      const df = rmsNormBackward(s.f, dh2, eps, w.postFfnNorm);
      const dm = linBack(li, 'down', w.down, s.m, df);
      const dgate = dm.map((g, i) => g * s.up[i]! * geluDerivative(s.gate[i]!));
      const dup = dm.map((g, i) => g * gelu(s.gate[i]!));
      const dyv = linBack(li, 'gate', w.gate, s.y, dgate);
      const dyu = linBack(li, 'up', w.up, s.y, dup);
      const dh1back = rmsNormBackward(s.h1, dyv.map((v, i) => v + dyu[i]!), eps, w.ffnNorm);
      const dh1 = dh2.map((v, i) => v + dh1back[i]!);
      // Attention output: h1 = h + norm(o_proj(o)).
      const da = rmsNormBackward(s.a, dh1, eps, w.postAttnNorm);
      const dO = linBack(li, 'o', w.attnOutput, s.o, da);
      // Attention: o_head = Σ_j p_j v_j, p = softmax(q·k_j).
      const first = layer.sliding ? Math.max(0, t - c.slidingWindow + 1) : 0;
      const dqt = new Float64Array(nq * hd);
      for (let head = 0; head < nq; head++) {
        const kvOff = Math.floor(head / group) * hd;
        const p = probs[li]![t]![head]!;
        const dp = new Float64Array(p.length);
        let dot = 0;
        for (let j = first; j <= t; j++) {
          let sum = 0;
          for (let i = 0; i < hd; i++) sum += dO[head * hd + i]! * cache.v[j]![kvOff + i]!;
          dp[j - first] = sum;
          dot += p[j - first]! * sum;
        }
        for (let j = first; j <= t; j++) {
          const pj = p[j - first]!;
          const ds = pj * (dp[j - first]! - dot);
          for (let i = 0; i < hd; i++) {
            dqt[head * hd + i]! += ds * cache.k[j]![kvOff + i]!;
            dCache.k[j]![kvOff + i]! += ds * s.q[head * hd + i]!;
            dCache.v[j]![kvOff + i]! += pj * dO[head * hd + i]!;
          }
        }
      }
      dq.push(dqt);
      dHin.push(dh1);
      dx.push(new Float64Array(d));
    }
    // Q (and, on KV-owning layers, K and V, whose gradients are complete once this layer is reached).
    for (let t = 0; t < T; t++) {
      const s = acts[li]![t]!;
      const dqr = dq[t]!.slice();
      rope(dqr, hd, layer.ropeDims, -t, layer.ropeBase, factors); // the inverse rotation
      const dqRaw = rmsNormBackward(s.qRaw, dqr, eps, w.qNorm, hd);
      const dxq = linBack(li, 'q', w.q, s.x, dqRaw);
      for (let i = 0; i < d; i++) dx[t]![i]! += dxq[i]!;
      if (layer.kvLayer === layer.index) {
        const dk = dCache.k[t]!.slice();
        rope(dk, hd, layer.ropeDims, -t, layer.ropeBase, factors);
        const dkRaw = rmsNormBackward(s.kRaw!, dk, eps, w.kNorm, hd);
        const dvRaw = rmsNormBackward(s.vRaw!, dCache.v[t]!, eps, null, hd);
        const dxk = linBack(li, 'k', w.k!, s.x, dkRaw);
        const dxv = linBack(li, 'v', w.v!, s.x, dvRaw);
        for (let i = 0; i < d; i++) dx[t]![i]! += dxk[i]! + dxv[i]!;
      }
    }
    dHs = dHin.map((g, t) => {
      const back = rmsNormBackward(acts[li]![t]!.h, dx[t]!, eps, w.attnNorm);
      return g.map((v, i) => v + back[i]!);
    });
  }
  return { loss: loss / count, count, gradients: grads };
}
