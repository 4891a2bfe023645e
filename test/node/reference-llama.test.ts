/**
 * The float64 CPU reference (src/core/reference) and the GPU engine (src/core/model, float32 on
 * Dawn; SwiftShader where there is no GPU) against llama.cpp (node-llama-cpp 3.21.1, CPU) on every
 * tiny Gemma 4 fixture: a real-text prompt tokenized by our tokenizer (with BOS) that is longer
 * than twice the largest sliding window, so every sliding layer wraps its window. llama.cpp runs
 * once per config (it is the slow part); both of our paths are judged against the same outputs,
 * with the same bars. The GPU prefills the prompt in blocks of 16, so blocks cross the windows.
 *
 * Per prompt position we compare our logits, turned into log-probabilities, with llama.cpp's
 * log-probabilities over the WHOLE vocabulary (262,144 entries; llama.cpp's greedy sampler returns
 * the untruncated softmax, see test/shared/llama-oracle.ts; an entry llama.cpp gave probability 0
 * would be skipped, and with the soft-cap of 30 there are none):
 *
 * - cosine of the log-probability vectors ≥ 0.995 at every position (as asked). On its own this
 *   says little: every log-probability sits near −log(262144) ≈ −12.5, so even very different
 *   distributions score above 0.995. Forward-pass bugs planted on purpose (sliding window off by
 *   one, RoPE pairs (j, j + hd/8), no rope_freqs, no V norm, wrong KV donor, layer scale on global
 *   layers only, PLE token part unscaled, (1 + w) norms) never pushed it below 0.9952.
 * - therefore also the cosine of the CENTERED log-probability vectors (mean removed; equal to the
 *   cosine of the centered logits): ≥ 0.99 at every position and ≥ 0.999 on average over the
 *   prompt. The correct reference measures worst ≥ 0.999 and mean ≥ 0.9996 on every config (an
 *   earlier tiny-e2b, with PLE width 8, had one position at 0.9949, hence the looser per-position
 *   bound); every planted bug above fails the mean on at least one config (the subtlest, no
 *   rope_freqs, gives 0.9989 on tiny-float and 0.9969 on tiny-q8; the others fall to 0.82–0.99).
 *   The spec's calibration figure (worst about 0.998) is this centered cosine.
 * - argmax agreement at every position where llama.cpp's top-two margin exceeds 0.1 (the margin
 *   in log-probability equals the logit margin).
 * - greedy generation: 16 tokens from our reference, and 64 from the GPU (one token per feed after
 *   the prompt), equal llama.cpp's own greedy continuation (64 tokens; cheap, since no
 *   distribution crosses into JavaScript); ours may part from it only at a step where llama.cpp's
 *   top-two margin is below 0.1 (a near-tie), after which nothing is compared. llama.cpp's
 *   distribution is fetched only at the parting step (about 0.3 s each), not at every step
 *   (64 of them would cost about 20 s a config); so a decided step after an agreed near-tie is
 *   still held to agreement, which is stricter than stopping at the first near-tie.
 *
 * Why the gap is not zero: llama.cpp rounds activations to 8 bits before quantized matmuls
 * (Q8_0/Q8_1/Q8_K), keeps the KV cache in f16, accumulates attention·V in f16 (CPU flash
 * attention for small batches) and takes GELU from an f16 table. A throwaway copy of the
 * reference that imitated exactly those roundings matched llama.cpp on tiny-float at every
 * position (max |Δ log p| 0.004), and on tiny-q8, tiny-e2b and tiny-kquant to float32 precision
 * (1 − cosine ≈ 1e−13) up to the first position where one 8-bit rounding flips on a last-bit
 * float32 difference (centered cosine ≥ 0.9996 from there on, also at the 0.9949 position above;
 * tiny-legacy's Q8_1 path was not imitated). What remains is llama.cpp's rounding, not a
 * different function; the smallest quantized model (tiny-e2b, d = 64) amplifies it most.
 *
 * Every measured figure is printed on lines starting with '# '.
 *
 * Cost (2 cores, lightly loaded): about 5 minutes. The GPU path on SwiftShader dominates: every
 * prompt position and every greedy step runs the 262,144-row LM head, about 1 s a row for
 * tiny-kquant (d = 256, Q4_K) and 0.1–0.4 s for the others; llama.cpp takes about 20 s a config
 * and the reference 4–11 s, both mostly overlapped with the GPU (see compareConfig).
 * GPU_GREEDY_STEPS is the knob: 32 instead of 64 saves about a minute.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { getLlama, LlamaLogLevel, type Llama } from 'node-llama-cpp';
import { nodeFileSource } from '../../src/core/gguf/node-source.js';
import { readGGUF } from '../../src/core/gguf/read.js';
import { Gemma4Model } from '../../src/core/model/model.js';
import { ReferenceModel } from '../../src/core/reference/forward.js';
import { Tokenizer } from '../../src/core/tokenizer/tokenizer.js';
import { TINY_CONFIGS, TINY_CONFIG_NAMES, writeTinyModel, type TinyConfigName } from '../fixtures/index.js';
import { openDawnDevice } from '../shared/dawn.js';
import { LlamaOracle, topTwo } from '../shared/llama-oracle.js';

const PROMPT =
  'The quick brown fox jumps over the lazy dog, while the old cat watches from the warm windowsill. ' +
  'Later that evening the farmer counted his sheep twice and found that one of them was missing again.';
/** Greedy steps checked for the reference (float64 on the CPU: about 0.1–0.3 s a step). */
const REF_GREEDY_STEPS = 16;
/** Greedy steps checked for the GPU engine, and generated by llama.cpp (cheap, see the oracle). */
const GPU_GREEDY_STEPS = 64;
/** Prompt tokens per GPU prefill block: blocks cross the sliding windows (8 and 16). */
const GPU_PREFILL_CHUNK = 16;
/** Per position, cosine of the log-probability vectors (as asked; weak, see above). */
const MIN_COSINE = 0.995;
/** Per position, cosine of the centered vectors (rounding has tails, see above). */
const MIN_CENTERED = 0.99;
/** Over the prompt, mean of (1 − centered cosine). */
const MAX_MEAN_CENTERED_GAP = 1e-3;
const MARGIN = 0.1;
const LARGEST_WINDOW = Math.max(...TINY_CONFIG_NAMES.map((n) => TINY_CONFIGS[n].slidingWindow));

let device: GPUDevice;
let dir: string;
let llama: Llama;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'rullama-reference-llama-'));
  llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error });
  device = (await openDawnDevice()).device;
});

after(async () => {
  try {
    device?.destroy();
    if (dir) await rm(dir, { recursive: true, force: true });
  } finally {
    await llama?.dispose();
  }
});

/** Natural-log softmax of logits, in float64. */
function logSoftmax(z: Float64Array): Float64Array {
  let max = -Infinity;
  for (const v of z) max = Math.max(max, v);
  let sum = 0;
  for (const v of z) sum += Math.exp(v - max);
  const lse = max + Math.log(sum);
  return z.map((v) => v - lse);
}

interface Agreement {
  /** Cosine of the log-probability vectors. */
  cosine: number;
  /** Cosine of the mean-removed log-probability vectors (= of the centered logits). */
  centered: number;
  /** max |ours − llama.cpp| over the log-probabilities. */
  maxDiff: number;
  /** KL(llama.cpp ‖ ours) in nats. */
  kl: number;
  /** Entries compared (those where llama.cpp's probability is not 0). */
  entries: number;
}

function agreement(ours: Float64Array, theirs: Float32Array): Agreement {
  let n = 0;
  let sx = 0;
  let sy = 0;
  let xy = 0;
  let xx = 0;
  let yy = 0;
  let maxDiff = 0;
  let kl = 0;
  for (let i = 0; i < ours.length; i++) {
    const y = theirs[i]!;
    if (y === -Infinity) continue; // probability 0 in llama.cpp (cannot happen with a soft-cap)
    const x = ours[i]!;
    n++;
    sx += x;
    sy += y;
    xy += x * y;
    xx += x * x;
    yy += y * y;
    maxDiff = Math.max(maxDiff, Math.abs(x - y));
    kl += Math.exp(y) * (y - x);
  }
  const cosine = xy / Math.sqrt(xx * yy);
  const centered = (xy - (sx * sy) / n) / Math.sqrt((xx - (sx * sx) / n) * (yy - (sy * sy) / n));
  return { cosine, centered, maxDiff, kl, entries: n };
}

/** Running worst/mean figures of one model's prompt log-probabilities against llama.cpp's. */
class PromptStats {
  worstCos = 1;
  worstCentered = 1;
  worstCenteredAt = -1;
  private centeredGap = 0;
  private positions = 0;
  maxDiff = 0;
  maxKl = 0;
  decided = 0;
  readonly argmaxFailures: string[] = [];
  readonly lowCosine: string[] = [];

  /** Adds position `p`: our logits (any precision) against llama.cpp's log-probabilities `lp`. */
  add(p: number, logits: ArrayLike<number>, lp: Float32Array): void {
    const ours = logSoftmax(Float64Array.from(logits));
    const a = agreement(ours, lp);
    assert.equal(a.entries, lp.length, 'llama.cpp gave every token a non-zero probability');
    this.positions++;
    this.worstCos = Math.min(this.worstCos, a.cosine);
    if (a.centered < this.worstCentered) {
      this.worstCentered = a.centered;
      this.worstCenteredAt = p;
    }
    this.centeredGap += 1 - a.centered;
    this.maxDiff = Math.max(this.maxDiff, a.maxDiff);
    this.maxKl = Math.max(this.maxKl, a.kl);
    if (a.cosine < MIN_COSINE || a.centered < MIN_CENTERED) this.lowCosine.push(`position ${p}: cosine ${a.cosine.toFixed(6)}, centered ${a.centered.toFixed(6)}`);
    const t = topTwo(lp);
    if (t.margin > MARGIN) {
      this.decided++;
      const mine = topTwo(ours).best;
      if (mine !== t.best) this.argmaxFailures.push(`position ${p}: ours ${mine}, llama.cpp ${t.best} (margin ${t.margin.toFixed(3)})`);
    }
  }

  get meanCentered(): number {
    return 1 - this.centeredGap / this.positions;
  }

  summary(): string {
    return (
      `cosine(log p) worst ${this.worstCos.toFixed(6)}; ` +
      `centered cosine worst ${this.worstCentered.toFixed(5)} (position ${this.worstCenteredAt}), mean ${this.meanCentered.toFixed(6)}; ` +
      `max |Δ log p| ${this.maxDiff.toFixed(3)}; max KL ${this.maxKl.toExponential(1)}; ` +
      `argmax ${this.decided - this.argmaxFailures.length}/${this.decided} positions with margin > ${MARGIN}`
    );
  }

  check(what: string): void {
    assert.deepEqual(this.lowCosine, [], `${what}: positions below cosine ${MIN_COSINE} or centered cosine ${MIN_CENTERED}`);
    assert.ok(1 - this.meanCentered <= MAX_MEAN_CENTERED_GAP, `${what}: mean centered cosine ${this.meanCentered.toFixed(6)} < ${1 - MAX_MEAN_CENTERED_GAP}`);
    assert.deepEqual(this.argmaxFailures, [], `${what}: argmax disagreements where llama.cpp is decided`);
  }
}

interface GreedyResult {
  tokens: number[];
  steps: number;
  equalSteps: number;
  /** The step where the continuations parted, or −1. */
  partedAt: number;
  /** llama.cpp's top-two margin at `partedAt`. */
  partMargin: number;
  failures: string[];
}

/**
 * Greedy: ours continues from the prompt, one token at a time. While both continuations are
 * equal they are conditioned on the same tokens; they may part only at a step where llama.cpp's
 * top two are within the margin (a near-tie either side may break), after which nothing is
 * compared and ours stops. (Stricter than stopping at llama.cpp's first near-tie: a decided step
 * after an agreed near-tie must still agree.) `theirsAt(s)` is llama.cpp's distribution at step s,
 * fetched only where the continuations part.
 */
async function compareGreedy(
  steps: number,
  firstLogits: ArrayLike<number>,
  next: (token: number) => Promise<ArrayLike<number>>,
  theirGreedy: readonly number[],
  theirsAt: (step: number) => Promise<Float32Array>,
): Promise<GreedyResult> {
  const r: GreedyResult = { tokens: [], steps, equalSteps: 0, partedAt: -1, partMargin: NaN, failures: [] };
  let logits = firstLogits;
  for (let s = 0; s < steps; s++) {
    if (s > 0) logits = await next(r.tokens[s - 1]!);
    r.tokens.push(topTwo(logits).best);
    if (r.tokens[s] === theirGreedy[s]) {
      r.equalSteps++;
      continue;
    }
    const t = topTwo(await theirsAt(s));
    if (t.margin > 1e-3) assert.equal(t.best, theirGreedy[s], "llama.cpp's greedy token is the argmax of its distribution");
    if (t.margin > MARGIN) r.failures.push(`step ${s}: ours ${r.tokens[s]}, llama.cpp ${theirGreedy[s]} (margin ${t.margin.toFixed(3)})`);
    r.partedAt = s;
    r.partMargin = t.margin;
    break;
  }
  return r;
}

function greedySummary(g: GreedyResult): string {
  return (
    `greedy ${g.equalSteps}/${g.steps} tokens equal` +
    (g.partedAt < 0
      ? ''
      : g.failures.length
        ? ` — MISMATCH at a decided step ${g.partedAt} (margin ${g.partMargin.toFixed(3)})`
        : ` (parted at step ${g.partedAt}, a near-tie: margin ${g.partMargin.toFixed(3)} < ${MARGIN})`)
  );
}

/**
 * Compares the reference and the GPU engine with llama.cpp on one tiny config (llama.cpp runs
 * once; both are judged against the same outputs); prints the figures, then asserts.
 *
 * The three run concurrently: SwiftShader's GPU work keeps about one core busy while the main
 * thread waits, and llama.cpp plus the reference are mostly main-thread JavaScript (moving
 * distributions, float64 arithmetic), so on two cores the GPU hides most of the rest.
 */
async function compareConfig(name: TinyConfigName): Promise<void> {
  const t0 = performance.now();
  const written = await writeTinyModel(name, dir, 1);
  const source = await nodeFileSource(written.path);
  let oracle: LlamaOracle | undefined;
  let gpuModel: Gemma4Model | undefined;
  try {
    const file = await readGGUF(source);
    const prompt = Tokenizer.fromGGUF(file).encode(PROMPT);
    assert.equal(prompt[0], 2, 'the prompt starts with <bos>');
    assert.ok(prompt.length >= 40 && prompt.length > 2 * LARGEST_WINDOW, `${prompt.length} prompt tokens`);
    const t1 = performance.now();

    // llama.cpp: every prompt position, then its own greedy continuation (long enough for the
    // GPU's; the reference checks the first REF_GREEDY_STEPS). The oracle stays loaded until the
    // end, to fetch the distribution where a continuation parts: once per step, shared, and one
    // query at a time (the oracle has a single sequence).
    let llamaMs = 0;
    const llamaRun = (async () => {
      oracle = await LlamaOracle.load(llama, written.path, { contextSize: 128 });
      const theirs = await oracle.logProbs(prompt);
      const theirGreedy = await oracle.greedy(prompt, GPU_GREEDY_STEPS);
      llamaMs = performance.now() - t1;
      return { theirs, theirGreedy };
    })();
    const fetched = new Map<number, Promise<Float32Array>>();
    let queue: Promise<unknown> = Promise.resolve();
    let partFetchMs = 0;
    const theirsAt = async (s: number): Promise<Float32Array> => {
      const { theirs, theirGreedy } = await llamaRun;
      if (s === 0) return theirs[prompt.length - 1]!;
      let lp = fetched.get(s);
      if (!lp) {
        lp = queue.then(async () => {
          const t = performance.now();
          const out = await oracle!.nextLogProbs([...prompt, ...theirGreedy.slice(0, s)]);
          partFetchMs += performance.now() - t;
          return out;
        });
        queue = lp.catch(() => undefined);
        fetched.set(s, lp);
      }
      return lp;
    };

    // The reference, one position at a time (bounded memory), compared as it goes.
    let refMs = 0;
    const refRun = (async () => {
      const { theirs, theirGreedy } = await llamaRun;
      const t = performance.now();
      const ref = await ReferenceModel.load(source, file);
      const stats = new PromptStats();
      let last: Float64Array | undefined;
      for (let p = 0; p < prompt.length; p++) {
        const [logits] = await ref.forward([prompt[p]!]);
        last = logits!;
        stats.add(p, logits!, theirs[p]!);
      }
      const greedy = await compareGreedy(REF_GREEDY_STEPS, last!, async (tok) => (await ref.forward([tok]))[0]!, theirGreedy, theirsAt);
      refMs = performance.now() - t;
      return { stats, greedy };
    })();

    // The GPU engine: the prompt prefilled in blocks of 16 (they cross the sliding windows),
    // every position's logits read back; then greedy decode one token at a time.
    let gpuMs = 0;
    const gpuRun = (async () => {
      const t = performance.now();
      gpuModel = await Gemma4Model.load(device, source, { contextSize: prompt.length + GPU_GREEDY_STEPS, prefillChunk: GPU_PREFILL_CHUNK, allLogits: true });
      const model = gpuModel;
      const logits = await model.feed(prompt, { logits: 'all' });
      assert.equal(logits.length, prompt.length);
      const { theirs, theirGreedy } = await llamaRun;
      const stats = new PromptStats();
      for (let p = 0; p < prompt.length; p++) stats.add(p, logits[p]!, theirs[p]!);
      const greedy = await compareGreedy(GPU_GREEDY_STEPS, logits[prompt.length - 1]!, async (tok) => (await model.feed([tok]))[0]!, theirGreedy, theirsAt);
      gpuMs = performance.now() - t;
      return { stats, greedy };
    })();

    const settled = await Promise.allSettled([llamaRun, refRun, gpuRun]);
    for (const r of settled) if (r.status === 'rejected') throw r.reason;
    const { theirGreedy } = await llamaRun;
    const ref = await refRun;
    const gpu = await gpuRun;

    console.log(`# ${name}: ${prompt.length} positions; reference: ${ref.stats.summary()}`);
    console.log(`# ${name}: ${prompt.length} positions; GPU:       ${gpu.stats.summary()}`);
    console.log(`# ${name}: reference ${greedySummary(ref.greedy)}; GPU ${greedySummary(gpu.greedy)}`);
    console.log(`# ${name}: llama.cpp greedy [${theirGreedy.join(' ')}]`);
    console.log(
      `# ${name}: time: fixture ${(t1 - t0).toFixed(0)} ms, then concurrently llama.cpp ${llamaMs.toFixed(0)} ms (+ ${partFetchMs.toFixed(0)} ms at partings), ` +
        `reference ${refMs.toFixed(0)} ms (after llama.cpp), GPU ${gpuMs.toFixed(0)} ms; total ${(performance.now() - t0).toFixed(0)} ms`,
    );
    ref.stats.check('reference');
    assert.deepEqual(ref.greedy.failures, [], `reference: greedy continuations differ; ours [${ref.greedy.tokens.join(' ')}]`);
    gpu.stats.check('GPU');
    assert.deepEqual(gpu.greedy.failures, [], `GPU: greedy continuations differ; ours [${gpu.greedy.tokens.join(' ')}]`);
  } finally {
    (gpuModel as Gemma4Model | undefined)?.destroy();
    await (oracle as LlamaOracle | undefined)?.dispose();
    await source.close();
    await rm(written.path, { force: true });
  }
}

describe('the float64 reference and the GPU forward pass agree with llama.cpp', () => {
  for (const name of TINY_CONFIG_NAMES) {
    it(`${name}: per-position log-probabilities, argmax and greedy continuation (reference and GPU)`, () => compareConfig(name));
  }
});
