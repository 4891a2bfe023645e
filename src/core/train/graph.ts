import { RullamaError, throwIfAborted } from '../errors.js';
import { checkBufferSize, readFirstFloats } from '../gpu/buffers.js';
import { DropoutKernels } from '../gpu/dropout.js';
import { LinearKernels, type Dispatch } from '../gpu/linear.js';
import { LinearBackwardKernels } from '../gpu/linear-backward.js';
import { LossKernels, MASKED_LABEL, type CrossEntropyDispatch } from '../gpu/loss.js';
import { OpBackwardKernels } from '../gpu/ops-backward.js';
import { OpKernels, PositionUniform } from '../gpu/ops.js';
import type { GGUFTensorInfo } from '../gguf/types.js';
import type { Gemma4Model } from '../model/model.js';
import type { LoraLayout, LoraSlot } from './lora-params.js';

/** One piece of recorded work (a dispatch, or several in order). */
interface Step {
  encode(pass: GPUComputePassEncoder, tokens: number): void;
}

/** Which part of a training step the GPU is in, for progress reports. */
export type GraphPhase = 'forward' | 'loss' | 'backward';

export interface TrainingGraphOptions {
  /** The longest sequence (tokens) a step takes; buffers are sized for it. */
  maxTokens: number;
  /** Tokens whose logits are materialised at once for the loss (default 64): bounds the [chunk][vocab] buffer. */
  lossChunk?: number;
  /** LoRA dropout probability on each adapted weight's input (default 0). */
  dropout?: number;
}

const f32 = 4;

/**
 * One sequence's forward pass, causal-LM loss and backward pass to the LoRA parameters on the
 * GPU (spec §3 and its exact derivative), built once and recorded per sequence.
 *
 * Memory is bounded by recomputation: the forward keeps only each layer's input h (and the keys
 * and values of KV-owning layers, which later layers read); the backward recomputes one layer's
 * activations from its input into shared scratch buffers, then runs back through it. The logits
 * exist for `lossChunk` tokens at a time. The frozen weights stay in their GGUF bytes (dequantised
 * on the fly, forward and backward); the LoRA terms read A and B straight from the flat
 * parameter vector and add their gradients to the flat gradient vector.
 *
 * Activation names follow the reference (src/core/reference/backward.ts): per layer
 *   h ─norm→ x ─q/k/v→ qRaw,kRaw,vRaw ─norms,rope→ q,k,v ─attention→ o ─o→ a
 *   h1 = h + RMS(a)         x2 = RMS(h1) ─gate,up→ gate,up ─gelu·→ m ─down→ f
 *   h2 = h1 + RMS(f)        PLE: gp = W·h2, gm = gelu(gp)·ple, pp = W·gm,
 *   out = (h2 + RMS(pp))·layer scale
 */
export class TrainingGraph {
  private readonly buffers: GPUBuffer[] = [];
  private readonly dispatches: Dispatch[] = [];
  private readonly position: PositionUniform;
  private readonly linear: LinearKernels;
  private readonly linearBack: LinearBackwardKernels;
  private readonly ops: OpKernels;
  private readonly opsBack: OpBackwardKernels;
  private readonly lossKernels: LossKernels;
  private readonly dropout: DropoutKernels | null;
  /** Per layer: the forward (also the recomputation), and the backward. */
  private layerForward: Step[][] = [];
  private layerBackward: Step[][] = [];
  private inputs: Step[] = [];
  private output: Step[] = [];
  private zeroKv: { buffer: GPUBuffer; bytes: number }[] = [];
  private crossEntropy: CrossEntropyDispatch[] = [];
  private ids!: GPUBuffer;
  private labels!: GPUBuffer;
  private pleRows: GPUBuffer | null = null;
  /** Per-token loss of the last sequence (0 where masked). */
  lossPerToken!: GPUBuffer;

  private constructor(
    private readonly model: Gemma4Model,
    readonly layout: LoraLayout,
    /** The flat LoRA parameter and gradient vectors ({@link LoraLayout}). */
    readonly params: GPUBuffer,
    readonly grads: GPUBuffer,
    readonly options: Required<TrainingGraphOptions>,
  ) {
    const { device, pipelines } = model.parts;
    this.position = new PositionUniform(device);
    this.linear = new LinearKernels(device, { pipelines });
    this.linearBack = new LinearBackwardKernels(device, { pipelines });
    this.ops = new OpKernels(device, pipelines);
    this.opsBack = new OpBackwardKernels(device, pipelines);
    this.lossKernels = new LossKernels(device, { pipelines });
    this.dropout = options.dropout > 0 ? new DropoutKernels(device, pipelines) : null;
  }

  static async create(model: Gemma4Model, layout: LoraLayout, params: GPUBuffer, grads: GPUBuffer, options: TrainingGraphOptions): Promise<TrainingGraph> {
    const maxTokens = options.maxTokens;
    if (!Number.isInteger(maxTokens) || maxTokens < 2) throw new RullamaError('bad-argument', `a training sequence holds at least 2 tokens, not ${maxTokens}`);
    const lossChunk = Math.min(options.lossChunk ?? 64, maxTokens);
    const dropout = options.dropout ?? 0;
    if (!(dropout >= 0 && dropout < 1)) throw new RullamaError('bad-argument', `LoRA dropout ${dropout} must be in [0, 1)`);
    const graph = new TrainingGraph(model, layout, params, grads, { maxTokens, lossChunk, dropout });
    const { device } = model.parts;
    device.pushErrorScope('out-of-memory');
    let oom: GPUError | null = null;
    try {
      await graph.build();
    } catch (e) {
      graph.destroy();
      throw e;
    } finally {
      oom = await device.popErrorScope();
    }
    if (oom) {
      graph.destroy();
      throw new RullamaError('oom', `the GPU ran out of memory for training on ${maxTokens}-token sequences: use shorter sequences or a smaller rank`);
    }
    return graph;
  }

  /** GPU bytes of activations, gradients and scratch (not the weights or the LoRA vectors). */
  get bytes(): number {
    return this.buffers.reduce((n, b) => n + b.size, 0);
  }

  private buffer(label: string, floats: number): GPUBuffer {
    checkBufferSize(this.model.parts.device, label, floats * f32);
    const b = this.model.parts.device.createBuffer({ label, size: Math.max(16, floats * f32), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC });
    this.buffers.push(b);
    return b;
  }

  private async bind<D extends Dispatch>(d: Promise<D>): Promise<D> {
    const dispatch = await d;
    this.dispatches.push(dispatch);
    return dispatch;
  }

  private async build(): Promise<void> {
    const { config: c, tensors, weights, ropeFactors } = this.model.parts;
    const T = this.options.maxTokens;
    const d = c.width;
    const L = c.layerCount;
    const P = c.pleWidth;
    const eps = c.rmsEpsilon;
    const nq = c.headCount;
    const maxQ = nq * Math.max(...c.layers.map((l) => l.headDim));
    const maxKv = Math.max(...c.layers.map((l) => l.kvHeads * l.headDim));
    const maxF = Math.max(...c.layers.map((l) => l.ffnWidth));
    const rank = this.layout.rank;
    const scale = this.layout.scale;
    const slots = new Map<string, LoraSlot>(this.layout.slots.map((s) => [s.base, s]));
    const single = (info: GGUFTensorInfo) => weights.single(info);
    const linear = this.linear;
    const back = this.linearBack;
    const ops = this.ops;
    const opsBack = this.opsBack;
    const step = (...ds: Dispatch[]): Step => ({ encode: (pass, tokens) => ds.forEach((x) => x.encode(pass, tokens)) });

    // The loss works on whole chunks of C tokens: what it reads and writes per token is padded to them.
    const C = this.options.lossChunk;
    const padded = Math.ceil(T / C) * C;
    this.ids = this.buffer('train.ids', T);
    this.labels = this.buffer('train.labels', padded);
    this.lossPerToken = this.buffer('train.loss', padded);
    // The residual stream at each layer's input (hs[l]) and at the end (hs[L]).
    const hs = Array.from({ length: L + 1 }, (_, l) => this.buffer(`train.h${l}`, T * d));
    // Keys and values of the KV-owning layers (post norm and RoPE), read by the layers sharing them, and their gradients.
    const kv = new Map<number, { k: GPUBuffer; v: GPUBuffer; dk: GPUBuffer; dv: GPUBuffer }>();
    for (const layer of c.layers) {
      if (layer.kvLayer !== layer.index) continue;
      const w = layer.kvHeads * layer.headDim;
      const entry = { k: this.buffer(`train.k${layer.index}`, T * w), v: this.buffer(`train.v${layer.index}`, T * w), dk: this.buffer(`train.dk${layer.index}`, T * w), dv: this.buffer(`train.dv${layer.index}`, T * w) };
      kv.set(layer.index, entry);
      this.zeroKv.push({ buffer: entry.dk, bytes: T * w * f32 }, { buffer: entry.dv, bytes: T * w * f32 });
    }
    // One layer's activations (recomputed per layer in the backward) and gradients.
    const x = this.buffer('train.x', T * d);
    const qRaw = this.buffer('train.qRaw', T * maxQ);
    const q = this.buffer('train.q', T * maxQ);
    const kRaw = this.buffer('train.kRaw', T * maxKv);
    const vRaw = this.buffer('train.vRaw', T * maxKv);
    const o = this.buffer('train.o', T * maxQ);
    const a = this.buffer('train.a', T * d);
    const h1 = this.buffer('train.h1', T * d);
    const x2 = this.buffer('train.x2', T * d);
    const gate = this.buffer('train.gate', T * maxF);
    const up = this.buffer('train.up', T * maxF);
    const m = this.buffer('train.m', T * maxF);
    const f = this.buffer('train.f', T * d);
    const h2 = this.buffer('train.h2', T * d);
    const dh = this.buffer('train.dh', T * d);
    const dx = this.buffer('train.dx', T * d);
    const dq = this.buffer('train.dq', T * maxQ);
    const dkRaw = this.buffer('train.dkRaw', T * maxKv);
    const dvRaw = this.buffer('train.dvRaw', T * maxKv);
    const dO = this.buffer('train.do', T * maxQ);
    const da = this.buffer('train.da', T * d);
    const dx2 = this.buffer('train.dx2', T * d);
    const dGate = this.buffer('train.dgate', T * maxF);
    const dUp = this.buffer('train.dup', T * maxF);
    const dm = this.buffer('train.dm', T * maxF);
    const df = this.buffer('train.df', T * d);
    const loraT = this.buffer('train.lora_t', T * rank);
    const loraDt = this.buffer('train.lora_dt', T * rank);
    // With dropout, the LoRA branch reads a masked copy of the input (xd) and its input gradient
    // goes through the same mask (dxd, left zeroed by the kernel that reads it).
    const maxIn = Math.max(...this.layout.slots.map((s) => s.inFeatures));
    const drop = this.dropout;
    const xd = drop ? this.buffer('train.lora_xd', T * maxIn) : null;
    const dxd = drop ? this.buffer('train.lora_dxd', T * maxIn) : null;
    const saltOf = new Map(this.layout.slots.map((s, i) => [s.base, i]));
    const masked = async (slot: LoraSlot, input: GPUBuffer): Promise<{ input: GPUBuffer; steps: Dispatch[] }> => {
      if (!drop || !xd) return { input, steps: [] };
      const mask = await this.bind(drop.bindForward({ width: slot.inFeatures, maxTokens: T, p: this.options.dropout, salt: saltOf.get(slot.base)!, from: input, to: xd, label: `${slot.base}.lora_dropout` }));
      return { input: xd, steps: [mask] };
    };

    // y = W·x (+ s·B·(A·x) when W is adapted), and its backward dx (+)= Wᵀ·dy (+ LoRA terms, and their dA, dB).
    const forwardLinear = async (info: GGUFTensorInfo, input: GPUBuffer, output: GPUBuffer): Promise<Step> => {
      const [cols, rows] = info.dims as [number, number];
      const base = await this.bind(linear.bindMatMul({ weight: single(info), type: info.type, rows, cols, x: input, y: output, tokens: T, label: info.name }));
      const slot = slots.get(info.name);
      if (!slot) return step(base);
      const branch = await masked(slot, input);
      const down = await this.bind(back.bindGemm({
        m: T, n: rank, k: cols, countDim: 'm', a: branch.input, aStrides: [cols, 1], b: this.params, bOffset: slot.aOffset, bStrides: [1, cols],
        c: loraT, cStrides: [rank, 1], label: `${info.name}.lora_a`,
      }));
      const upTerm = await this.bind(back.bindGemm({
        m: T, n: rows, k: rank, countDim: 'm', a: loraT, aStrides: [rank, 1], b: this.params, bOffset: slot.bOffset, bStrides: [1, rank],
        c: output, cStrides: [rows, 1], alpha: scale, accumulate: true, label: `${info.name}.lora_b`,
      }));
      return step(base, ...branch.steps, down, upTerm);
    };
    const backwardLinear = async (info: GGUFTensorInfo, input: GPUBuffer, dOut: GPUBuffer, dIn: GPUBuffer, accumulate: boolean): Promise<Step> => {
      const [cols, rows] = info.dims as [number, number];
      const base = await this.bind(back.bindMatMulBackward({ weight: single(info), type: info.type, rows, cols, dy: dOut, dx: dIn, tokens: T, accumulate, label: `${info.name}.backward` }));
      const slot = slots.get(info.name);
      if (!slot) return step(base);
      // The mask is made again (the recomputed layer's later weights overwrote xd).
      const branch = await masked(slot, input);
      const lora = await this.bind(back.bindLoraBackward({
        rank, inFeatures: cols, outFeatures: rows, scale, tokens: T,
        a: this.params, aOffset: slot.aOffset, b: this.params, bOffset: slot.bOffset,
        da: this.grads, daOffset: slot.aOffset, db: this.grads, dbOffset: slot.bOffset,
        x: { buffer: branch.input }, dy: { buffer: dOut }, t: { buffer: loraT }, dt: { buffer: loraDt }, dx: { buffer: dxd ?? dIn }, label: `${info.name}.lora.backward`,
      }));
      if (!drop || !dxd) return step(base, lora);
      const unmask = await this.bind(drop.bindBackward({ width: cols, maxTokens: T, p: this.options.dropout, salt: saltOf.get(slot.base)!, from: dxd, to: dIn, label: `${info.name}.lora_dropout.backward` }));
      return step(base, ...branch.steps, lora, unmask);
    };

    // §3.1 inputs: the scaled embedding into hs[0], the per-layer inputs.
    const embd = weights.get(tensors.tokenEmbd);
    this.inputs.push(step(await this.bind(ops.bindEmbed({
      maxTokens: T, type: tensors.tokenEmbd.type, cols: d, tiles: embd.tiles.map((t) => ({ weight: t.buffer, firstRow: t.firstRow, rows: t.rows })),
      ids: this.ids, out: hs[0]!, scale: Math.sqrt(d), label: 'train.embed',
    }))));
    let ple: GPUBuffer | null = null;
    let gp: GPUBuffer | null = null;
    let gm: GPUBuffer | null = null;
    let pp: GPUBuffer | null = null;
    if (P > 0) {
      const pleProj = this.buffer('train.pleProj', T * L * P);
      this.pleRows = this.buffer('train.pleRows', T * L * P);
      ple = this.buffer('train.ple', T * L * P);
      gp = this.buffer('train.gp', T * P);
      gm = this.buffer('train.gm', T * P);
      pp = this.buffer('train.pp', T * d);
      this.inputs.push(await forwardLinear(tensors.pleModelProj!, hs[0]!, pleProj));
      this.inputs.push(step(await this.bind(ops.bindPleCombine({
        maxTokens: T, proj: pleProj, projScale: 1 / Math.sqrt(d), tokenRows: this.pleRows,
        weight: single(tensors.pleProjNorm!), layers: L, size: P, out: ple, eps, label: 'train.ple_combine',
      }))));
    }

    const layerScales = await readFirstFloats(this.model.parts.device, c.layers.map((l) => single(tensors.layers[l.index]!.outputScale)));
    for (const layer of c.layers) {
      const w = tensors.layers[layer.index]!;
      const hd = layer.headDim;
      const owns = layer.kvLayer === layer.index;
      const cache = kv.get(layer.kvLayer)!;
      const h = hs[layer.index]!;
      const out = hs[layer.index + 1]!;
      const tag = `train.layer${layer.index}`;
      const layerScale = layerScales[layer.index]!;
      const rope = {
        maxTokens: T, headDim: hd, dims: layer.ropeDims, base: layer.ropeBase,
        factors: layer.sliding || !ropeFactors ? undefined : ropeFactors.subarray(0, layer.ropeDims / 2), position: this.position.buffer,
      };
      const window = layer.sliding ? c.slidingWindow : 0;
      const fwd: Step[] = [];
      // Attention block.
      fwd.push(step(await this.bind(ops.bindRmsNorm({ maxTokens: T, size: d, x: h, weight: single(w.attnNorm), out: x, eps, label: `${tag}.attn_norm` }))));
      fwd.push(await forwardLinear(w.q, x, qRaw));
      fwd.push(step(
        await this.bind(ops.bindRmsNorm({ maxTokens: T, size: hd, count: nq, x: qRaw, weight: single(w.qNorm), out: q, eps, label: `${tag}.q_norm` })),
        await this.bind(ops.bindRope({ ...rope, x: q, heads: nq, label: `${tag}.rope_q` })),
      ));
      if (owns) {
        fwd.push(await forwardLinear(w.k!, x, kRaw));
        fwd.push(step(
          await this.bind(ops.bindRmsNorm({ maxTokens: T, size: hd, count: layer.kvHeads, x: kRaw, weight: single(w.kNorm!), out: cache.k, eps, label: `${tag}.k_norm` })),
          await this.bind(ops.bindRope({ ...rope, x: cache.k, heads: layer.kvHeads, label: `${tag}.rope_k` })),
        ));
        fwd.push(await forwardLinear(w.v!, x, vRaw));
        fwd.push(step(await this.bind(ops.bindRmsNorm({ maxTokens: T, size: hd, count: layer.kvHeads, x: vRaw, out: cache.v, eps, label: `${tag}.v_norm` }))));
      }
      // The sequence's keys and values are the "cache": slot p holds position p.
      fwd.push(step(await this.bind(ops.bindAttention({
        maxTokens: T, q, kCache: cache.k, vCache: cache.v, out: o, heads: nq, kvHeads: layer.kvHeads, headDim: hd,
        capacity: T, window, maxPosition: T - 1, position: this.position.buffer, label: `${tag}.attention`,
      }))));
      fwd.push(await forwardLinear(w.attnOutput, o, a));
      fwd.push(step(await this.bind(ops.bindRmsNorm({ maxTokens: T, size: d, x: a, weight: single(w.postAttnNorm), residual: h, out: h1, eps, label: `${tag}.post_attention_norm` }))));
      // MLP block.
      fwd.push(step(await this.bind(ops.bindRmsNorm({ maxTokens: T, size: d, x: h1, weight: single(w.ffnNorm), out: x2, eps, label: `${tag}.ffn_norm` }))));
      fwd.push(await forwardLinear(w.gate, x2, gate));
      fwd.push(await forwardLinear(w.up, x2, up));
      fwd.push(step(await this.bind(ops.bindGeluMul({ maxTokens: T, width: layer.ffnWidth, gate, up, out: m, label: `${tag}.gelu_mul` }))));
      fwd.push(await forwardLinear(w.down, m, f));
      if (ple && gp && gm && pp) {
        fwd.push(step(await this.bind(ops.bindRmsNorm({ maxTokens: T, size: d, x: f, weight: single(w.postFfnNorm), residual: h1, out: h2, eps, label: `${tag}.post_ffw_norm` }))));
        fwd.push(await forwardLinear(w.pleGate!, h2, gp));
        fwd.push(step(await this.bind(ops.bindGeluMul({ maxTokens: T, width: P, gate: gp, up: ple, upOffset: layer.index * P, upStride: L * P, out: gm, label: `${tag}.ple_gate` }))));
        fwd.push(await forwardLinear(w.pleProj!, gm, pp));
        fwd.push(step(await this.bind(ops.bindRmsNorm({ maxTokens: T, size: d, x: pp, weight: single(w.plePostNorm!), residual: h2, out, outScale: layerScale, eps, label: `${tag}.post_norm+scale` }))));
      } else {
        fwd.push(step(await this.bind(ops.bindRmsNorm({ maxTokens: T, size: d, x: f, weight: single(w.postFfnNorm), residual: h1, out, outScale: layerScale, eps, label: `${tag}.post_ffw_norm+scale` }))));
      }
      this.layerForward.push(fwd);

      // The backward, in reverse: on entry dh holds dL/d out; on exit dL/d h.
      const bwd: Step[] = [];
      const normBack = (b: Parameters<OpBackwardKernels['bindRmsNormBackward']>[0]) => this.bind(opsBack.bindRmsNormBackward(b));
      if (ple && gp && gm && pp) {
        // out = (h2 + RMS(pp)·w)·s: dpp (into df, free until the MLP's backward), and dh ← dh·s.
        bwd.push(step(await normBack({ maxTokens: T, size: d, x: pp, weight: single(w.plePostNorm!), outScale: layerScale, dy: dh, dx: df, dResidual: dh, eps, label: `${tag}.post_norm.backward` })));
        bwd.push(await backwardLinear(w.pleProj!, gm, df, dx2, false)); // dgm (in dx2)
        bwd.push(step(await this.bind(opsBack.bindGeluMulBackward({ maxTokens: T, width: P, dOut: dx2, gate: gp, up: ple, upOffset: layer.index * P, upStride: L * P, dGate: da, label: `${tag}.ple_gate.backward` }))));
        bwd.push(await backwardLinear(w.pleGate!, h2, da, dh, true));
        bwd.push(step(await normBack({ maxTokens: T, size: d, x: f, weight: single(w.postFfnNorm), dy: dh, dx: df, eps, label: `${tag}.post_ffw_norm.backward` })));
      } else {
        bwd.push(step(await normBack({ maxTokens: T, size: d, x: f, weight: single(w.postFfnNorm), outScale: layerScale, dy: dh, dx: df, dResidual: dh, eps, label: `${tag}.post_ffw_norm.backward` })));
      }
      bwd.push(await backwardLinear(w.down, m, df, dm, false));
      bwd.push(step(await this.bind(opsBack.bindGeluMulBackward({ maxTokens: T, width: layer.ffnWidth, dOut: dm, gate, up, dGate, dUp, label: `${tag}.gelu_mul.backward` }))));
      bwd.push(await backwardLinear(w.gate, x2, dGate, dx2, false));
      bwd.push(await backwardLinear(w.up, x2, dUp, dx2, true));
      bwd.push(step(await normBack({ maxTokens: T, size: d, x: h1, weight: single(w.ffnNorm), dy: dx2, dx: dh, accumulate: true, eps, label: `${tag}.ffn_norm.backward` })));
      bwd.push(step(await normBack({ maxTokens: T, size: d, x: a, weight: single(w.postAttnNorm), dy: dh, dx: da, eps, label: `${tag}.post_attention_norm.backward` })));
      bwd.push(await backwardLinear(w.attnOutput, o, da, dO, false));
      bwd.push(step(await this.bind(opsBack.bindAttentionBackward({
        maxTokens: T, heads: nq, kvHeads: layer.kvHeads, headDim: hd, window, q, k: cache.k, v: cache.v, dOut: dO,
        dq, dk: cache.dk, dv: cache.dv, accumulateKv: true, label: `${tag}.attention.backward`,
      }))));
      bwd.push(step(
        await this.bind(opsBack.bindRopeBackward({ ...rope, x: dq, heads: nq, label: `${tag}.rope_q.backward` })),
        await normBack({ maxTokens: T, size: hd, count: nq, x: qRaw, weight: single(w.qNorm), dy: dq, dx: dq, eps, label: `${tag}.q_norm.backward` }),
      ));
      bwd.push(await backwardLinear(w.q, x, dq, dx, false));
      if (owns) {
        // Every layer that shares this one's keys and values came later, so their gradients are all in dk, dv now.
        bwd.push(step(
          await this.bind(opsBack.bindRopeBackward({ ...rope, x: cache.dk, heads: layer.kvHeads, label: `${tag}.rope_k.backward` })),
          await normBack({ maxTokens: T, size: hd, count: layer.kvHeads, x: kRaw, weight: single(w.kNorm!), dy: cache.dk, dx: dkRaw, eps, label: `${tag}.k_norm.backward` }),
          await normBack({ maxTokens: T, size: hd, count: layer.kvHeads, x: vRaw, dy: cache.dv, dx: dvRaw, eps, label: `${tag}.v_norm.backward` }),
        ));
        bwd.push(await backwardLinear(w.k!, x, dkRaw, dx, true));
        bwd.push(await backwardLinear(w.v!, x, dvRaw, dx, true));
      }
      bwd.push(step(await normBack({ maxTokens: T, size: d, x: h, weight: single(w.attnNorm), dy: dx, dx: dh, accumulate: true, eps, label: `${tag}.attn_norm.backward` })));
      this.layerBackward.push(bwd);
    }

    // §3.3 output and loss, lossChunk tokens at a time: logits = E·RMS(h_L), the loss and its
    // gradient over the logits in place, then dx_f = Eᵀ·dz; finally dh = norm backward of dx_f.
    const V = c.vocabSize;
    const xf = this.buffer('train.xf', padded * d);
    const dxf = this.buffer('train.dxf', padded * d);
    const logits = this.buffer('train.logits', C * V);
    this.output.push(step(await this.bind(ops.bindRmsNorm({ maxTokens: T, size: d, x: hs[L]!, weight: single(tensors.outputNorm), out: xf, eps, label: 'train.output_norm' }))));
    const chunks: { first: number; steps: Dispatch[] }[] = [];
    for (let first = 0; first < T; first += C) {
      const ds: Dispatch[] = [];
      for (const tile of embd.tiles) {
        ds.push(await this.bind(linear.bindMatMul({
          weight: tile.buffer, type: tensors.tokenEmbd.type, rows: tile.rows, cols: d, x: xf, xOffset: first * d, y: logits, yOffset: tile.firstRow, yStride: V,
          tokens: C, label: `train.output[${first}][${tile.firstRow}]`,
        })));
      }
      const ce = await this.bind(this.lossKernels.bindCrossEntropy({
        vocab: V, maxTokens: C, z: logits, labels: this.labels, labelsOffset: first, loss: this.lossPerToken, lossOffset: first, softcap: c.logitSoftcap, label: `train.loss[${first}]`,
      }));
      this.crossEntropy.push(ce);
      ds.push(ce);
      for (const [i, tile] of embd.tiles.entries()) {
        ds.push(await this.bind(back.bindMatMulBackward({
          weight: tile.buffer, type: tensors.tokenEmbd.type, rows: tile.rows, cols: d, dy: logits, dyOffset: tile.firstRow, dyStride: V,
          dx: dxf, dxOffset: first * d, tokens: C, accumulate: i > 0, label: `train.output.backward[${first}][${tile.firstRow}]`,
        })));
      }
      chunks.push({ first, steps: ds });
    }
    this.output.push({
      encode: (pass, tokens) => {
        for (const chunk of chunks) {
          const n = Math.min(C, tokens - chunk.first);
          if (n <= 0) break;
          for (const s of chunk.steps) s.encode(pass, n);
        }
      },
    });
    this.output.push(step(await this.bind(opsBack.bindRmsNormBackward({ maxTokens: T, size: d, x: hs[L]!, weight: single(tensors.outputNorm), dy: dxf, dx: dh, eps, label: 'train.output_norm.backward' }))));
  }

  /**
   * Runs one sequence forward and backward, adding its LoRA gradients to `grads`. `labels[t]` is
   * the token position t must predict (−1: no loss); `count` is the number of labelled tokens the
   * loss is averaged over (the whole batch's, for gradient accumulation). Without a signal the
   * whole sequence is one submit; with one, each layer's work is its own submit and the signal is
   * checked between them. `onPhase` hears each phase (and layer) as it is submitted.
   */
  async run(
    tokens: readonly number[], labels: readonly number[], count: number,
    options: { signal?: AbortSignal; onPhase?: (phase: GraphPhase, layer: number) => void; backward?: boolean; dropoutSeed?: number } = {},
  ): Promise<void> {
    const T = tokens.length;
    const { device, config, ple } = this.model.parts;
    if (T < 1 || T > this.options.maxTokens) throw new RullamaError('bad-argument', `a training sequence holds 1 to ${this.options.maxTokens} tokens, not ${T}`);
    if (labels.length !== T) throw new RullamaError('bad-argument', `${labels.length} labels for ${T} tokens`);
    for (const t of [...tokens, ...labels]) {
      if (t !== -1 && (!Number.isInteger(t) || t < 0 || t >= config.vocabSize)) throw new RullamaError('bad-token', `token id ${t} is outside the vocabulary`);
    }
    const backward = options.backward ?? true;
    const queue = device.queue;
    queue.writeBuffer(this.ids, 0, Uint32Array.from(tokens));
    queue.writeBuffer(this.labels, 0, Uint32Array.from(labels, (l) => (l < 0 ? MASKED_LABEL : l)));
    if (this.pleRows && ple) queue.writeBuffer(this.pleRows, 0, (await ple.rows(tokens, options.signal)) as Float32Array<ArrayBuffer>);
    this.position.set(0);
    // Dropout only while training (a sequence with a backward pass); evaluation sees the whole input.
    this.dropout?.setSeed(options.dropoutSeed ?? 0, backward);
    for (const ce of this.crossEntropy) ce.setCount(Math.max(1, count));

    const { signal, onPhase } = options;
    let encoder = device.createCommandEncoder({ label: 'train' });
    for (const z of this.zeroKv) encoder.clearBuffer(z.buffer, 0, z.bytes);
    let pass = encoder.beginComputePass();
    const boundary = async () => {
      if (!signal) return;
      pass.end();
      queue.submit([encoder.finish()]);
      await queue.onSubmittedWorkDone();
      throwIfAborted(signal);
      encoder = device.createCommandEncoder({ label: 'train' });
      pass = encoder.beginComputePass();
    };
    const L = config.layerCount;
    onPhase?.('forward', 0);
    for (const s of this.inputs) s.encode(pass, T);
    for (let l = 0; l < L; l++) {
      for (const s of this.layerForward[l]!) s.encode(pass, T);
      await boundary();
      onPhase?.('forward', l + 1);
    }
    onPhase?.('loss', L);
    for (const s of this.output) s.encode(pass, T);
    if (backward) {
      // No LoRA parameter lives below the lowest adapted layer, so the gradient need not go further.
      const lowest = Math.min(...this.layout.slots.map((s) => s.layer));
      for (let l = L - 1; l >= lowest; l--) {
        await boundary();
        onPhase?.('backward', l);
        for (const s of this.layerForward[l]!) s.encode(pass, T); // recompute the layer's activations
        for (const s of this.layerBackward[l]!) s.encode(pass, T);
      }
    }
    pass.end();
    queue.submit([encoder.finish()]);
  }

  destroy(): void {
    for (const d of this.dispatches) d.destroy();
    for (const b of this.buffers) b.destroy();
    this.position.destroy();
    this.linear.destroy();
    this.linearBack.destroy();
    this.ops.destroy();
    this.opsBack.destroy();
    this.dropout?.destroy();
  }
}

