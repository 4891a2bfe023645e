// Shared declarations of the GPU sampler (src/core/gpu/sampler.ts; semantics in src/core/sampling.ts).
// Every kernel of sample.{stats,select,draw}.wgsl is compiled with this part in front and uses one
// bind group layout:
//   0 logits   f32 [V], row 0 of the model's logits (read only)
//   1 entries  the tokens whose score differs from their logit (bias, penalty window), distinct ids
//   2 scores   f32 [V]: s = the logits with the entries applied (written by stats when sampling)
//   3 partials one record per block of CHUNK tokens
//   4 state    what one stage hands to the next (log-sum-exp, max, thresholds, radix select)
//   5 hist     8 steps × 256 bins of 64-bit weights (radix select), zeroed by finalize
//   6 result   {id, logprob, threshold key, total kept weight}: the 16 bytes that are read back
//   7 params   this token's options and r
//   8 step     which radix step a dispatch runs (a dynamic offset into a constant table)
// Blocks: the full-vocabulary passes run one workgroup of WG_SIZE threads per CHUNK tokens, each
// thread taking tokens base + lid + WG_SIZE·q (q < PER_THREAD, coalesced). Reductions inside a
// workgroup are two-level (FOLD threads fold FOLD values each, then one thread folds FOLD): two
// barriers instead of six. Small workgroups with many tokens per thread, because software
// Vulkan (SwiftShader) pays per workgroup invocation and per barrier far more than GPUs do.

const WG_SIZE: u32 = 64u;
const FOLD: u32 = 8u;
const PER_THREAD: u32 = 16u;
const CHUNK: u32 = 1024u;
const BINS: u32 = 256u;
const STEPS: u32 = 8u;
const NONE: u32 = 0xffffffffu;
// A stand-in for −infinity (WGSL has no infinite literals): below every real score.
const NEG: f32 = -3.0e38;

const FLAG_SAMPLE: u32 = 1u;    // temperature > 0: write scores, sum weights
const FLAG_MIN_P: u32 = 2u;     // min-p is on
const FLAG_FILTERED: u32 = 4u;  // some filter is on: draw_sums ran; else the stats' block sums are used

struct Params {
  vocab: u32,
  blocks: u32,
  n_entries: u32,
  flags: u32,
  // float32(1 / T), at most 1e30.
  inv_temp: f32,
  // float32(repetitionPenalty).
  rep: f32,
  // float32(T · ln minP): the min-p threshold is max s + this.
  min_p_offset: f32,
  top_p: f32,
  top_k: u32,
  r: f32,
  // 2^(F − 32), where a weight w ∈ [0, 1] is the 64-bit fixed-point number w · 2^F.
  mass_scale: f32,
  _pad: u32,
}

struct Entry {
  id: u32,
  // Occurrences in the penalty window (0: only biased).
  count: u32,
  bias: f32,
  // float32(count · frequencyPenalty + presencePenalty).
  sub: f32,
}

struct Partial {
  max_raw: f32,
  // Σ exp(logit − max_raw) over the block.
  sum_raw: f32,
  max_s: f32,
  arg: u32,
  // Σ exp((s − max_s) / T) over the block (stats, when sampling).
  sum_w: f32,
  // Σ exp((s − M) / T) over the block's kept tokens, M the global max (draw_sums).
  draw_sum: f32,
  _pad0: u32,
  _pad: u32,
}

// One radix-select round's state: the key prefix chosen so far in this selection, the weight of
// the candidates above the current bin range, the target weight, and the candidates' floor key.
struct Sel {
  prefix: u32,
  above_lo: u32,
  above_hi: u32,
  goal_lo: u32,
  goal_hi: u32,
  floor: u32,
  _pad0: u32,
  _pad1: u32,
}

struct State {
  // Log-sum-exp of the raw logits.
  lse: f32,
  // Max score M and its lowest index.
  max_s: f32,
  arg: u32,
  // Tokens with key(s) ≥ floor_key are kept (0: all); final once draw_sums ran.
  floor_key: u32,
  // The min-p threshold's key (0 when min-p is off).
  min_p_key: u32,
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
  // sels[t]: the state histogram step t runs with (steps 0..3 top-k, 4..7 top-p).
  sels: array<Sel, 8>,
}

// hist: fills histogram `index` (0..7); `first`: its Sel comes from finalize, else from the pick
// of step index − 1. draw_sums: `index` is the last step (NONE when no radix select ran).
struct Step {
  index: u32,
  first: u32,
}

struct Result {
  id: u32,
  logprob: f32,
  threshold_key: u32,
  total: f32,
}

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> entries: array<Entry>;
@group(0) @binding(2) var<storage, read_write> scores: array<f32>;
@group(0) @binding(3) var<storage, read_write> partials: array<Partial>;
@group(0) @binding(4) var<storage, read_write> state: State;
@group(0) @binding(5) var<storage, read_write> hist: array<atomic<u32>>;
@group(0) @binding(6) var<storage, read_write> result: Result;
@group(0) @binding(7) var<uniform> params: Params;
@group(0) @binding(8) var<uniform> sel_step: Step;

// The order-preserving u32 key of a float: a < b ⇔ key(a) < key(b); −0 and +0 share a key.
fn key_of(x: f32) -> u32 {
  if (x == 0.0) {
    return 0x80000000u;
  }
  let b = bitcast<u32>(x);
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

// exp(d) for d ≤ 0, exactly 1 at 0 and exactly 0 below the float32 normal range (and for −inf).
fn exp_neg(d: f32) -> f32 {
  if (d == 0.0) {
    return 1.0;
  }
  return select(0.0, exp(d), d > -87.0);
}

// The sampling weight exp((s − m) / T) of a score s under the max m.
fn weight(s: f32, m: f32) -> f32 {
  return exp_neg((s - m) * params.inv_temp);
}

// 64-bit unsigned arithmetic on (lo, hi) pairs.
fn add64(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
  let lo = a.x + b.x;
  return vec2<u32>(lo, a.y + b.y + select(0u, 1u, lo < a.x));
}

fn ge64(a: vec2<u32>, b: vec2<u32>) -> bool {
  return a.y > b.y || (a.y == b.y && a.x >= b.x);
}
