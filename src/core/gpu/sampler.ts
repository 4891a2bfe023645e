/**
 * Sampling on the GPU: the next token is chosen from the logits where they are, and only 16 bytes
 * ({id, logprob, threshold, total weight}) come back. The semantics are those of the CPU sampler
 * in ../sampling.ts (which is the reference): the same float32 scores, the same exact top-k, min-p
 * and top-p thresholds, the same draw up to the rounding of the weight sums.
 *
 * Usage: {@link GpuSampler.create} once per model (pipelines, buffers, bind group and uniforms are
 * made there); per token {@link GpuSampler.encode} records the sampling into the command encoder
 * that computed the logits (no extra submit) and writes only a small params uniform and the entry
 * list (bias and penalty window, a few KB at most) with queue.writeBuffer; after the encoder is
 * submitted, {@link GpuSampler.read} maps the result.
 *
 * Passes (src/wgsl/sample.{common,stats,select,draw}.wgsl), one workgroup per 1024 tokens for the
 * full-vocabulary ones:
 *   stats, finalize        every token: scores, max, argmax, log-sum-exp (greedy ends here)
 *   4 × hist for top-k     radix select of the k-th largest score, 8 bits a step
 *   4 × hist for top-p     radix select on 64-bit fixed-point weights (each step's pick is made by
 *                          every workgroup of the next dispatch: no dispatch of its own)
 *   draw_sums (when a filter is on), draw_pick
 * so greedy is 2 dispatches, temperature alone 3, min-p 4, top-k or top-p 8, all of them 12. On
 * Dawn/Vulkan on an H100 each dependent dispatch costs about 5–10 µs whatever its size, so the count
 * is what matters there; on software Vulkan (SwiftShader) workgroup size and barriers matter, hence
 * workgroups of 64 threads taking 16 tokens each.
 */
import commonSource from '../../wgsl/sample.common.wgsl';
import drawSource from '../../wgsl/sample.draw.wgsl';
import selectSource from '../../wgsl/sample.select.wgsl';
import statsSource from '../../wgsl/sample.stats.wgsl';
import { RullamaError } from '../errors.js';
import { checkSamplingOptions, minPOffset, penaltyAmount, samplingEntries, type SampledToken, type SamplingOptions } from '../sampling.js';
import type { PipelineCache, ShaderPart } from './pipelines.js';

/** Reads `const NAME: u32 = 123u;` from a WGSL source, so TS and WGSL share one definition. */
function wgslConst(source: string, name: string): number {
  const m = new RegExp(`\\bconst\\s+${name}\\s*:\\s*u32\\s*=\\s*(\\d+)u?\\s*;`).exec(source);
  if (!m) throw new Error(`WGSL constant ${name} not found`);
  return Number(m[1]);
}

/** Tokens per workgroup of the full-vocabulary passes. */
export const SAMPLER_CHUNK = wgslConst(commonSource, 'CHUNK');
const FLAG_SAMPLE = wgslConst(commonSource, 'FLAG_SAMPLE');
const FLAG_MIN_P = wgslConst(commonSource, 'FLAG_MIN_P');
const FLAG_FILTERED = wgslConst(commonSource, 'FLAG_FILTERED');

const COMMON: ShaderPart = { name: 'sample.common.wgsl', source: commonSource };
const STATS: ShaderPart = { name: 'sample.stats.wgsl', source: statsSource };
const SELECT: ShaderPart = { name: 'sample.select.wgsl', source: selectSource };
const DRAW: ShaderPart = { name: 'sample.draw.wgsl', source: drawSource };

/** Bytes of the Params uniform, one Entry, one Partial, the State and the Result (see sample.common.wgsl). */
const PARAMS_BYTES = 48;
const ENTRY_BYTES = 16;
const PARTIAL_BYTES = 32;
const STATE_BYTES = 32 + 8 * 32;
const RESULT_BYTES = 16;
const STEPS = wgslConst(commonSource, 'STEPS');
const HIST_BYTES = STEPS * 256 * 8;
/** Bytes of the Step uniform. */
const STEP_BYTES = 16;
const NONE = 0xffffffff;

/** The largest float32 below 1: r is rounded to float32 and must stay below 1. */
const R_MAX = 1 - 2 ** -24;

export interface GpuSamplerBinding {
  /** f32 logits, STORAGE usage; the row sampled is the first `vocabSize` values. */
  logits: GPUBuffer;
  vocabSize: number;
  /** The most distinct entries (penalty-window tokens plus biased tokens) one token may use; default 4096. */
  maxEntries?: number;
  /** Results that may be in flight (encoded and not yet read) at once; default 3 (at least 2). */
  slots?: number;
  label?: string;
}

/** A sampled token as the GPU reports it. */
export interface GpuSample extends SampledToken {
  /** The smallest kept score (−Infinity when every token was kept; the max score when greedy). */
  threshold: number;
  /** The total kept weight Σ exp((s − max s)/T) over the kept tokens (1 when greedy). */
  totalWeight: number;
}

interface Slot {
  readonly staging: GPUBuffer;
  readonly paramsOffset: number;
  readonly entriesOffset: number;
  /** The ticket of the encode that last used the slot (0: none). */
  ticket: number;
  state: 'idle' | 'encoded' | 'mapping';
}

interface Pipelines {
  stats: GPUComputePipeline;
  finalize: GPUComputePipeline;
  hist: GPUComputePipeline;
  drawSums: GPUComputePipeline;
  drawPick: GPUComputePipeline;
}

function bad(message: string): never {
  throw new RullamaError('bad-argument', message);
}

/** The float whose order-preserving key (sample.common.wgsl key_of) is `key`; key 0 (nothing below it) → −Infinity. */
export function keyToFloat(key: number): number {
  if (key === 0) return -Infinity;
  const bits = key & 0x80000000 ? key ^ 0x80000000 : ~key;
  return new Float32Array(Uint32Array.of(bits >>> 0).buffer)[0]!;
}

/** The bind group layout every sampler kernel uses (see sample.common.wgsl). */
function layoutEntries(): GPUBindGroupLayoutEntry[] {
  const compute = GPUShaderStage.COMPUTE;
  return [
    { binding: 0, visibility: compute, buffer: { type: 'read-only-storage' } },
    { binding: 1, visibility: compute, buffer: { type: 'read-only-storage', hasDynamicOffset: true } },
    { binding: 2, visibility: compute, buffer: { type: 'storage' } },
    { binding: 3, visibility: compute, buffer: { type: 'storage' } },
    { binding: 4, visibility: compute, buffer: { type: 'storage' } },
    { binding: 5, visibility: compute, buffer: { type: 'storage' } },
    { binding: 6, visibility: compute, buffer: { type: 'storage' } },
    { binding: 7, visibility: compute, buffer: { type: 'uniform', hasDynamicOffset: true, minBindingSize: PARAMS_BYTES } },
    { binding: 8, visibility: compute, buffer: { type: 'uniform', hasDynamicOffset: true, minBindingSize: STEP_BYTES } },
  ];
}

const align = (n: number, a: number) => Math.ceil(n / a) * a;

export class GpuSampler {
  /** {id u32, logprob f32, threshold key u32, total weight f32} of the last token whose work ran (STORAGE | COPY_SRC). */
  readonly result: GPUBuffer;
  readonly vocabSize: number;
  readonly maxEntries: number;
  private readonly blocks: number;
  private readonly massScale: number;
  private readonly owned: GPUBuffer[] = [];
  private readonly params: GPUBuffer;
  private readonly entries: GPUBuffer;
  private readonly bindGroup: GPUBindGroup;
  /** Byte stride of the step table: entry 2t + first is {t, first} (t < STEPS), entry 2·STEPS is {NONE, 0}. */
  private readonly stepStride: number;
  private readonly slots: Slot[] = [];
  private readonly paramWords = new ArrayBuffer(PARAMS_BYTES);
  private readonly entryWords: ArrayBuffer;
  private nextSlot = 0;
  private tickets = 0;
  private destroyed = false;

  private constructor(
    readonly device: GPUDevice,
    private readonly pipelines: Pipelines,
    layout: GPUBindGroupLayout,
    binding: GpuSamplerBinding,
    readonly label: string,
  ) {
    const V = binding.vocabSize;
    this.vocabSize = V;
    this.maxEntries = binding.maxEntries ?? 4096;
    this.blocks = Math.ceil(V / SAMPLER_CHUNK);
    // Weights w ≤ 1 are summed as w · 2^F in 64 bits; V of them stay below 2^63.
    this.massScale = 2 ** (63 - Math.ceil(Math.log2(V + 1)) - 32);
    const storage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST;
    const make = (name: string, size: number, usage: number) => {
      const b = device.createBuffer({ label: `${label} ${name}`, size: Math.max(16, size), usage });
      this.owned.push(b);
      return b;
    };
    const slots = binding.slots ?? 3;
    const paramsStride = align(PARAMS_BYTES, device.limits.minUniformBufferOffsetAlignment);
    const entriesBytes = this.maxEntries * ENTRY_BYTES;
    const entriesStride = align(entriesBytes, device.limits.minStorageBufferOffsetAlignment);
    this.params = make('params', paramsStride * slots, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST);
    this.entries = make('entries', entriesStride * slots, storage);
    this.entryWords = new ArrayBuffer(entriesBytes);
    const scores = make('scores', 4 * V, storage);
    const partials = make('partials', PARTIAL_BYTES * this.blocks, storage);
    const state = make('state', STATE_BYTES, storage);
    const hist = make('hist', HIST_BYTES, storage);
    this.result = make('result', RESULT_BYTES, storage | GPUBufferUsage.COPY_SRC);
    this.stepStride = align(STEP_BYTES, device.limits.minUniformBufferOffsetAlignment);
    const steps = device.createBuffer({ label: `${label} steps`, size: this.stepStride * (2 * STEPS + 1), usage: GPUBufferUsage.UNIFORM, mappedAtCreation: true });
    const table = new Uint32Array(steps.getMappedRange());
    for (let t = 0; t < STEPS; t++) {
      for (const first of [0, 1]) table.set([t, first], ((2 * t + first) * this.stepStride) / 4);
    }
    table.set([NONE, 0], (2 * STEPS * this.stepStride) / 4);
    steps.unmap();
    this.owned.push(steps);
    for (let i = 0; i < slots; i++) {
      const staging = make(`staging ${i}`, RESULT_BYTES, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST);
      this.slots.push({ staging, paramsOffset: i * paramsStride, entriesOffset: i * entriesStride, ticket: 0, state: 'idle' });
    }
    this.bindGroup = device.createBindGroup({
      label,
      layout,
      entries: [
        { binding: 0, resource: { buffer: binding.logits, offset: 0, size: 4 * V } },
        { binding: 1, resource: { buffer: this.entries, offset: 0, size: entriesBytes } },
        { binding: 2, resource: { buffer: scores } },
        { binding: 3, resource: { buffer: partials } },
        { binding: 4, resource: { buffer: state } },
        { binding: 5, resource: { buffer: hist } },
        { binding: 6, resource: { buffer: this.result } },
        { binding: 7, resource: { buffer: this.params, offset: 0, size: PARAMS_BYTES } },
        { binding: 8, resource: { buffer: steps, offset: 0, size: STEP_BYTES } },
      ],
    });
  }

  /**
   * A sampler over row 0 of `logits` (vocabSize f32 values). Compiles (or fetches from `pipelines`)
   * the kernels and makes every buffer; rejects with RullamaError('bad-argument') for bad sizes and
   * ShaderCompileError when a kernel does not compile.
   */
  static async create(device: GPUDevice, pipelines: PipelineCache, binding: GpuSamplerBinding): Promise<GpuSampler> {
    const label = binding.label ?? 'sampler';
    const V = binding.vocabSize;
    if (!Number.isSafeInteger(V) || V < 1 || V >= 2 ** 31) bad(`${label}: vocabSize must be a positive integer below 2^31, not ${V}`);
    const blocks = Math.ceil(V / SAMPLER_CHUNK);
    if (blocks > device.limits.maxComputeWorkgroupsPerDimension) bad(`${label}: a vocabulary of ${V} needs ${blocks} workgroups, past this device's limit`);
    if (!(binding.logits.usage & GPUBufferUsage.STORAGE)) bad(`${label}: the logits buffer needs STORAGE usage`);
    if (binding.logits.size < 4 * V) bad(`${label}: the logits buffer has ${binding.logits.size} bytes, ${4 * V} are needed`);
    const maxEntries = binding.maxEntries ?? 4096;
    if (!Number.isSafeInteger(maxEntries) || maxEntries < 1) bad(`${label}: maxEntries must be a positive integer, not ${maxEntries}`);
    const slots = binding.slots ?? 3;
    if (!Number.isSafeInteger(slots) || slots < 2 || slots > 64) bad(`${label}: slots must be an integer in 2..64, not ${slots}`);
    if (maxEntries * ENTRY_BYTES > device.limits.maxStorageBufferBindingSize) bad(`${label}: maxEntries ${maxEntries} exceeds the storage binding limit`);

    const group = device.createBindGroupLayout({ label: 'sampler', entries: layoutEntries() });
    const layout = device.createPipelineLayout({ label: 'sampler', bindGroupLayouts: [group] });
    const get = (name: string, parts: ShaderPart[], entryPoint: string) => pipelines.get({ name: `sample.${name}`, parts: [COMMON, ...parts], layout, entryPoint });
    const [stats, finalize, hist, drawSums, drawPick] = await Promise.all([
      get('stats', [STATS], 'stats'),
      get('finalize', [STATS], 'finalize'),
      get('hist', [SELECT], 'hist_main'),
      get('draw_sums', [SELECT, DRAW], 'draw_sums'),
      get('draw_pick', [SELECT, DRAW], 'draw_pick'),
    ]);
    return new GpuSampler(device, { stats, finalize, hist, drawSums, drawPick }, group, binding, label);
  }

  /**
   * Records the sampling of the current logits row into `encoder` (its own compute pass, after
   * whatever the encoder already holds) and a copy of the 16-byte result into a staging buffer.
   * `recent` is the penalty window (only counts matter), `r` the uniform draw in [0, 1) (unused when
   * greedy). Writes this token's params and entries with queue.writeBuffer now, into a slot of its
   * own, so up to `slots` tokens may be encoded before their results are read. Returns a ticket
   * for {@link read}. Throws RullamaError('bad-argument') for bad options, ids or r.
   */
  encode(encoder: GPUCommandEncoder, options: SamplingOptions, recent: readonly number[], r: number): number {
    if (this.destroyed) bad(`${this.label}: the sampler was destroyed`);
    const V = this.vocabSize;
    const o = checkSamplingOptions(options, V);
    if (typeof r !== 'number' || !(r >= 0 && r < 1)) bad(`${this.label}: the uniform draw must be in [0, 1), not ${r}`);
    const list = samplingEntries(o, recent, V);
    if (list.length > this.maxEntries) bad(`${this.label}: ${list.length} distinct penalised or biased tokens, at most ${this.maxEntries} fit`);
    const slot = this.slots[this.nextSlot]!;
    if (slot.state === 'mapping') bad(`${this.label}: all ${this.slots.length} result buffers are being read; await read() before encoding more`);
    this.nextSlot = (this.nextSlot + 1) % this.slots.length;

    const sample = o.temperature > 0;
    const topK = sample && o.topK > 0 && o.topK < V;
    const minP = sample && o.minP > 0;
    const topP = sample && o.topP < 1;
    const filtered = topK || minP || topP;
    const u = new Uint32Array(this.paramWords);
    const f = new Float32Array(this.paramWords);
    u[0] = V;
    u[1] = this.blocks;
    u[2] = list.length;
    u[3] = (sample ? FLAG_SAMPLE : 0) | (minP ? FLAG_MIN_P : 0) | (filtered ? FLAG_FILTERED : 0);
    f[4] = sample ? Math.min(1 / o.temperature, 1e30) : 0;
    f[5] = o.repetitionPenalty;
    f[6] = minP ? minPOffset(o) : 0;
    f[7] = o.topP;
    u[8] = topK ? o.topK : 0;
    f[9] = Math.min(Math.fround(r), R_MAX);
    f[10] = this.massScale;
    u[11] = 0;
    this.device.queue.writeBuffer(this.params, slot.paramsOffset, this.paramWords);
    if (list.length > 0) {
      const eu = new Uint32Array(this.entryWords, 0, 4 * list.length);
      const ef = new Float32Array(this.entryWords, 0, 4 * list.length);
      list.forEach((e, i) => {
        eu[4 * i] = e.id;
        eu[4 * i + 1] = e.count;
        ef[4 * i + 2] = e.bias;
        ef[4 * i + 3] = penaltyAmount(e, o);
      });
      this.device.queue.writeBuffer(this.entries, slot.entriesOffset, this.entryWords, 0, list.length * ENTRY_BYTES);
    }

    const p = this.pipelines;
    const pass = encoder.beginComputePass({ label: this.label });
    const run = (pipeline: GPUComputePipeline, groups: number, step = 2 * STEPS) => {
      pass.setBindGroup(0, this.bindGroup, [slot.entriesOffset, slot.paramsOffset, step * this.stepStride]);
      pass.setPipeline(pipeline);
      pass.dispatchWorkgroups(groups);
    };
    run(p.stats, this.blocks);
    run(p.finalize, 1);
    if (sample) {
      // Radix steps: 0..3 top-k, 4..7 top-p; the first of the chain takes its state from finalize.
      const steps = [...(topK ? [0, 1, 2, 3] : []), ...(topP ? [4, 5, 6, 7] : [])];
      steps.forEach((t, i) => run(p.hist, this.blocks, 2 * t + (i === 0 ? 1 : 0)));
      if (filtered) run(p.drawSums, this.blocks, steps.length > 0 ? 2 * steps[steps.length - 1]! + 1 : 2 * STEPS);
      run(p.drawPick, 1);
    }
    pass.end();
    encoder.copyBufferToBuffer(this.result, 0, slot.staging, 0, RESULT_BYTES);
    slot.ticket = ++this.tickets;
    slot.state = 'encoded';
    return slot.ticket;
  }

  /**
   * The token of an encode (default: the last one), once the encoder holding it has been submitted:
   * maps its staging buffer. Rejects with RullamaError('bad-argument') when the ticket's slot was
   * reused by later encodes or already read.
   */
  async read(ticket = this.tickets): Promise<GpuSample> {
    const slot = this.slots.find((s) => s.ticket === ticket && ticket > 0);
    if (!slot || slot.state !== 'encoded') bad(`${this.label}: no unread sample with ticket ${ticket}`);
    slot.state = 'mapping';
    let words: ArrayBuffer;
    try {
      await slot.staging.mapAsync(GPUMapMode.READ, 0, RESULT_BYTES);
      words = slot.staging.getMappedRange(0, RESULT_BYTES).slice(0);
      slot.staging.unmap();
    } finally {
      slot.state = 'idle';
    }
    const view = new DataView(words);
    const key = view.getUint32(8, true);
    return {
      id: view.getUint32(0, true),
      logprob: view.getFloat32(4, true),
      threshold: keyToFloat(key),
      totalWeight: view.getFloat32(12, true),
    };
  }

  /** Frees the sampler's buffers (not the logits). */
  destroy(): void {
    this.destroyed = true;
    for (const b of this.owned) b.destroy();
  }
}
