/**
 * The float64 CPU reference (src/core/reference) against llama.cpp (node-llama-cpp 3.21.1, CPU)
 * on every tiny Gemma 4 fixture: a real-text prompt tokenized by our tokenizer (with BOS) that is
 * longer than twice the largest sliding window, so every sliding layer wraps its window.
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
 * - greedy generation: 16 tokens from our reference equal llama.cpp's own greedy continuation;
 *   the two may part only at a step where llama.cpp's top-two margin is below 0.1 (a near-tie),
 *   after which nothing is compared.
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
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { getLlama, LlamaLogLevel, type Llama } from 'node-llama-cpp';
import { nodeFileSource } from '../../src/core/gguf/node-source.js';
import { readGGUF } from '../../src/core/gguf/read.js';
import { ReferenceModel } from '../../src/core/reference/forward.js';
import { Tokenizer } from '../../src/core/tokenizer/tokenizer.js';
import { TINY_CONFIGS, TINY_CONFIG_NAMES, writeTinyModel, type TinyConfigName } from '../fixtures/index.js';
import { LlamaOracle, topTwo } from '../shared/llama-oracle.js';

const PROMPT =
  'The quick brown fox jumps over the lazy dog, while the old cat watches from the warm windowsill. ' +
  'Later that evening the farmer counted his sheep twice and found that one of them was missing again.';
const GREEDY_STEPS = 16;
/** Per position, cosine of the log-probability vectors (as asked; weak, see above). */
const MIN_COSINE = 0.995;
/** Per position, cosine of the centered vectors (rounding has tails, see above). */
const MIN_CENTERED = 0.99;
/** Over the prompt, mean of (1 − centered cosine). */
const MAX_MEAN_CENTERED_GAP = 1e-3;
const MARGIN = 0.1;
const LARGEST_WINDOW = Math.max(...TINY_CONFIG_NAMES.map((n) => TINY_CONFIGS[n].slidingWindow));

let dir: string;
let llama: Llama;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'rullama-reference-llama-'));
  llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error });
});

after(async () => {
  try {
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

/** Compares the reference with llama.cpp on one tiny config; prints the figures, then asserts. */
async function compareConfig(name: TinyConfigName): Promise<void> {
  const t0 = performance.now();
  const written = await writeTinyModel(name, dir, 1);
  const source = await nodeFileSource(written.path);
  let oracle: LlamaOracle | undefined;
  try {
    const file = await readGGUF(source);
    const prompt = Tokenizer.fromGGUF(file).encode(PROMPT);
    assert.equal(prompt[0], 2, 'the prompt starts with <bos>');
    assert.ok(prompt.length >= 40 && prompt.length > 2 * LARGEST_WINDOW, `${prompt.length} prompt tokens`);

    // llama.cpp: every prompt position, then its own greedy continuation. The oracle stays
    // loaded until the end, to fetch the distribution where the continuations part.
    const t1 = performance.now();
    oracle = await LlamaOracle.load(llama, written.path, { contextSize: 128 });
    const theirs = await oracle.logProbs(prompt);
    const theirGreedy = await oracle.greedy(prompt, GREEDY_STEPS);
    const llamaMs = performance.now() - t1;

    // The reference, one position at a time (bounded memory), compared as it goes.
    const t2 = performance.now();
    const ref = await ReferenceModel.load(source, file);
    let worstCos = 1;
    let worstCentered = 1;
    let centeredGap = 0;
    let worstCenteredAt = -1;
    let maxDiff = 0;
    let maxKl = 0;
    let decided = 0;
    const argmaxFailures: string[] = [];
    const lowCosine: string[] = [];
    let ourLast: Float64Array | undefined;
    for (let p = 0; p < prompt.length; p++) {
      const [logits] = await ref.forward([prompt[p]!]);
      ourLast = logits!;
      const ours = logSoftmax(logits!);
      const lp = theirs[p]!;
      const a = agreement(ours, lp);
      assert.equal(a.entries, lp.length, 'llama.cpp gave every token a non-zero probability');
      worstCos = Math.min(worstCos, a.cosine);
      if (a.centered < worstCentered) {
        worstCentered = a.centered;
        worstCenteredAt = p;
      }
      centeredGap += 1 - a.centered;
      maxDiff = Math.max(maxDiff, a.maxDiff);
      maxKl = Math.max(maxKl, a.kl);
      if (a.cosine < MIN_COSINE || a.centered < MIN_CENTERED) lowCosine.push(`position ${p}: cosine ${a.cosine.toFixed(6)}, centered ${a.centered.toFixed(6)}`);
      const t = topTwo(lp);
      if (t.margin > MARGIN) {
        decided++;
        const mine = topTwo(ours).best;
        if (mine !== t.best) argmaxFailures.push(`position ${p}: ours ${mine}, llama.cpp ${t.best} (margin ${t.margin.toFixed(3)})`);
      }
    }

    // Greedy: ours continues from the prompt. While both continuations are equal they are
    // conditioned on the same tokens; they may part only at a step where llama.cpp's top two
    // are within the margin (a near-tie either side may break), after which nothing is compared.
    const ourTokens: number[] = [];
    let equalSteps = 0;
    let partedAt = -1;
    const greedyFailures: string[] = [];
    for (let s = 0; s < GREEDY_STEPS; s++) {
      if (s > 0) [ourLast] = await ref.forward([ourTokens[s - 1]!]);
      ourTokens.push(topTwo(ourLast!).best);
      if (ourTokens[s] === theirGreedy[s]) {
        equalSteps++;
        continue;
      }
      const lp = s === 0 ? theirs[prompt.length - 1]! : await oracle.nextLogProbs([...prompt, ...theirGreedy.slice(0, s)]);
      const t = topTwo(lp);
      if (t.margin > 1e-3) assert.equal(t.best, theirGreedy[s], "llama.cpp's greedy token is the argmax of its distribution");
      if (t.margin > MARGIN) greedyFailures.push(`step ${s}: ours ${ourTokens[s]}, llama.cpp ${theirGreedy[s]} (margin ${t.margin.toFixed(3)})`);
      partedAt = s;
      break;
    }
    const refMs = performance.now() - t2;
    const meanCentered = 1 - centeredGap / prompt.length;

    console.log(
      `# ${name}: ${prompt.length} positions; cosine(log p) worst ${worstCos.toFixed(6)}; ` +
        `centered cosine worst ${worstCentered.toFixed(5)} (position ${worstCenteredAt}), mean ${meanCentered.toFixed(6)}; ` +
        `max |Δ log p| ${maxDiff.toFixed(3)}; max KL ${maxKl.toExponential(1)}; ` +
        `argmax ${decided - argmaxFailures.length}/${decided} positions with margin > ${MARGIN}`,
    );
    console.log(
      `# ${name}: greedy ${equalSteps}/${GREEDY_STEPS} tokens equal` +
        (partedAt < 0 ? '' : greedyFailures.length ? ' — MISMATCH at a decided step' : ` (parted at step ${partedAt}, a near-tie: margin < ${MARGIN})`) +
        `; llama.cpp [${theirGreedy.join(' ')}]`,
    );
    console.log(
      `# ${name}: time: fixture ${(t1 - t0).toFixed(0)} ms, llama.cpp ${llamaMs.toFixed(0)} ms, reference ${refMs.toFixed(0)} ms`,
    );
    assert.deepEqual(lowCosine, [], `positions below cosine ${MIN_COSINE} or centered cosine ${MIN_CENTERED}`);
    assert.ok(1 - meanCentered <= MAX_MEAN_CENTERED_GAP, `mean centered cosine ${meanCentered.toFixed(6)} < ${1 - MAX_MEAN_CENTERED_GAP}`);
    assert.deepEqual(argmaxFailures, [], 'argmax disagreements where llama.cpp is decided');
    assert.deepEqual(greedyFailures, [], `greedy continuations differ; ours [${ourTokens.join(' ')}]`);
  } finally {
    await oracle?.dispose();
    await source.close();
    await rm(written.path, { force: true });
  }
}

describe('the float64 reference forward pass agrees with llama.cpp', () => {
  for (const name of TINY_CONFIG_NAMES) {
    it(`${name}: per-position log-probabilities, argmax and greedy continuation`, () => compareConfig(name));
  }
});
