// Causal (optionally sliding-window) grouped-query attention for a block of T query tokens at
// positions start + t, reading keys and values from a layer's cache:
//   o[t, h] = sum_j softmax_j(scale * q[t, h] . k_j) v_j
// over the key positions j with j <= pos and (window == 0 or pos - j < window); query head h reads
// kv head h / group. Gemma 4 uses scale = 1.
//
// The generated part before this file defines HEAD_DIM (a multiple of 32, at most MAX_HEAD_DIM).
//
// Buffers are read and written as vec4: q, out and the caches need offsets and strides that are
// multiples of 4 elements. Caches: k_cache and v_cache are f32 [capacity][kv_stride] with kv head g
// at g * HEAD_DIM; key position j lives in slot j % capacity (a ring when capacity is below the
// context). The engine guarantees every key a query needs is still there: capacity >= window +
// T - 1 on sliding layers (checked when binding), every position < capacity on global ones.
//
// Rows: the T * group (token, head) pairs that share kv head g are rows R = t * group + (h % group)
// of that kv head; a workgroup takes ROWS consecutive rows (so one K/V tile serves several heads
// and several tokens) and walks the keys from the lowest any of its rows may see to the highest,
// KEYS at a time, keeping a running max m, sum l and unnormalised output o per row (online
// softmax, f32). workgroup_id = (row block, kv head, split): with splits.n = S > 1 the key range is
// cut into S parts, each workgroup writes (o, m, l) of its part to `scratch` and `combine` merges
// them (decode: T = 1 has a single row block per kv head, so keys are spread over workgroups).
//
// Per key tile: Q and K are staged DC4 vec4s (32 dims) at a time through shared memory (rows
// padded by one vec4 against bank conflicts), each thread accumulating KEYS_PER_LANE scores of its
// row; the masked scores go to `probs`, every lane of a row takes the row max from there, then the
// probabilities replace them; V is staged V_KEYS whole rows at a time and each thread updates its
// VEC4_PER_LANE output vec4s (vec4 d = lane + LANES * c), which stay in registers. Every global
// load has a compile-time trip count and the next chunk (or V step, or the next tile's first
// chunk) is fetched into registers while the current one is being used, so load latency overlaps
// compute instead of adding up.
//
// The block's first position `start` is read from the `position` uniform (see rope.forward.wgsl).

const ROWS: u32 = 16u;                       // query rows per workgroup
const LANES: u32 = 8u;                       // threads per row
const WG_SIZE: u32 = ROWS * LANES;
const KEYS: u32 = 32u;                       // keys per tile
const KEYS_PER_LANE: u32 = KEYS / LANES;
const MAX_HEAD_DIM: u32 = 512u;
const HD4: u32 = HEAD_DIM / 4u;
const DC4: u32 = 8u;                         // vec4s of head dims per QK step
const N_CHUNKS: u32 = HD4 / DC4;
const PADV: u32 = DC4 + 1u;                  // vec4s per staged Q/K row
const PROBS_STRIDE: u32 = KEYS + 1u;
const VEC4_PER_LANE: u32 = HD4 / LANES;
const TILE_VEC4: u32 = 512u;                 // shared staging area (8 KiB)
const V_FIT: u32 = TILE_VEC4 / HD4;
const V_KEYS: u32 = select(select(select(select(select(1u, 2u, V_FIT >= 2u), 4u, V_FIT >= 4u), 8u, V_FIT >= 8u), 16u, V_FIT >= 16u), 32u, V_FIT >= 32u);
const V_STEPS: u32 = KEYS / V_KEYS;
const Q_LOADS: u32 = (ROWS * DC4 + WG_SIZE - 1u) / WG_SIZE;
const K_LOADS: u32 = (KEYS * DC4 + WG_SIZE - 1u) / WG_SIZE;
const V_LOADS: u32 = (V_KEYS * HD4 + WG_SIZE - 1u) / WG_SIZE;
const MAX_SPLITS: u32 = 128u;                // most key splits per row block
const COMBINE_WG: u32 = 64u;
const NEG: f32 = -3.0e38;                    // "no key yet": finite, so NEG - NEG = 0

const_assert HEAD_DIM % 32u == 0u;
const_assert HEAD_DIM <= MAX_HEAD_DIM;
const_assert (ROWS + KEYS) * PADV <= TILE_VEC4;
const_assert V_KEYS * HD4 <= TILE_VEC4;

struct Params {
  heads: u32,        // query heads
  kv_heads: u32,
  group: u32,        // heads / kv_heads
  capacity: u32,     // cache slots
  window: u32,       // sliding window (0: global, causal only)
  q_offset: u32,     // elements, a multiple of 4
  q_stride: u32,     // elements between tokens of q, a multiple of 4
  out_offset: u32,   // elements, a multiple of 4
  out_stride: u32,   // elements, a multiple of 4
  kv_stride: u32,    // elements per cache slot (kv_heads * HEAD_DIM)
  ml_base: u32,      // vec4 index where the (m, l) of each part start in scratch
  scale: f32,
}

struct Count {
  n: u32,
}

struct Position {
  start: u32,
}

@group(0) @binding(0) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> k_cache: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> v_cache: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> scratch: array<vec4<f32>>;
@group(0) @binding(5) var<uniform> params: Params;
@group(0) @binding(6) var<uniform> tokens: Count;
@group(0) @binding(7) var<uniform> splits: Count;
@group(0) @binding(8) var<uniform> position: Position;

var<workgroup> tile: array<vec4<f32>, TILE_VEC4>;
var<workgroup> probs: array<f32, ROWS * PROBS_STRIDE>;
var<workgroup> split_ml: array<vec2<f32>, MAX_SPLITS>;

// The lowest key position visible from position p.
fn first_key(p: u32) -> u32 {
  if (params.window > 0u && p + 1u > params.window) {
    return p + 1u - params.window;
  }
  return 0u;
}

// vec4 index of key position kp's kv head `kvh` in a cache.
fn cache_row(kp: u32, kvh: u32) -> u32 {
  return ((kp % params.capacity) * params.kv_stride + kvh * HEAD_DIM) / 4u;
}

// This thread's share of Q chunk c of the block (rows past rows_total read as 0).
fn load_q(li: u32, row0: u32, rows_total: u32, kvh: u32, c: u32) -> array<vec4<f32>, Q_LOADS> {
  var v: array<vec4<f32>, Q_LOADS>;
  for (var u = 0u; u < Q_LOADS; u++) {
    let e = li + u * WG_SIZE;
    let qrow = row0 + e / DC4;
    v[u] = vec4<f32>(0.0);
    if (e < ROWS * DC4 && qrow < rows_total) {
      let qt = qrow / params.group;
      let qh = kvh * params.group + qrow % params.group;
      v[u] = q[(params.q_offset + qt * params.q_stride + qh * HEAD_DIM) / 4u + c * DC4 + e % DC4];
    }
  }
  return v;
}

// This thread's share of K chunk c of the tile at key k0 (keys past hi read as 0).
fn load_k(li: u32, k0: u32, hi: u32, kvh: u32, c: u32) -> array<vec4<f32>, K_LOADS> {
  var v: array<vec4<f32>, K_LOADS>;
  for (var u = 0u; u < K_LOADS; u++) {
    let e = li + u * WG_SIZE;
    let kp = k0 + e / DC4;
    v[u] = vec4<f32>(0.0);
    if (e < KEYS * DC4 && kp <= hi) {
      v[u] = k_cache[cache_row(kp, kvh) + c * DC4 + e % DC4];
    }
  }
  return v;
}

// This thread's share of V step st of the tile at key k0 (keys past hi read as 0, so that a
// zero probability never meets a stale value).
fn load_v(li: u32, k0: u32, hi: u32, kvh: u32, st: u32) -> array<vec4<f32>, V_LOADS> {
  var v: array<vec4<f32>, V_LOADS>;
  for (var u = 0u; u < V_LOADS; u++) {
    let e = li + u * WG_SIZE;
    let kp = k0 + st * V_KEYS + e / HD4;
    v[u] = vec4<f32>(0.0);
    if (e < V_KEYS * HD4 && kp <= hi) {
      v[u] = v_cache[cache_row(kp, kvh) + e % HD4];
    }
  }
  return v;
}

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let group = params.group;
  let rows_total = tokens.n * group;
  let n_splits = splits.n;
  let kvh = wid.y;
  let row0 = wid.x * ROWS;
  if (row0 >= rows_total) {
    return;
  }
  let r = li / LANES;
  let lane = li % LANES;
  let row = row0 + r;
  let row_ok = row < rows_total;
  let t = row / group;
  let h = kvh * group + row % group;
  let start = position.start;
  let pos = start + t;
  let row_first = first_key(pos);

  // Keys any row of the block may see: [lo, hi], cut into tiles of KEYS and then into parts.
  let lo = first_key(start + row0 / group);
  let hi = start + (min(row0 + ROWS, rows_total) - 1u) / group;
  let n_tiles = (hi - lo) / KEYS + 1u;
  let per_split = (n_tiles + n_splits - 1u) / n_splits;
  let tile_begin = min(wid.z * per_split, n_tiles);
  let tile_end = min(tile_begin + per_split, n_tiles);

  var m = NEG;
  var l = 0.0;
  var o: array<vec4<f32>, VEC4_PER_LANE>;
  for (var c = 0u; c < VEC4_PER_LANE; c++) {
    o[c] = vec4<f32>(0.0);
  }

  var q_next = load_q(li, row0, rows_total, kvh, 0u);
  var k_next = load_k(li, lo + tile_begin * KEYS, hi, kvh, 0u);
  for (var tile_i = tile_begin; tile_i < tile_end; tile_i++) {
    let k0 = lo + tile_i * KEYS;

    // Scores of this thread's keys lane + LANES * j (zeroed explicitly: some compilers hoist a
    // loop-local array and do not re-initialise it on each iteration).
    var s: array<f32, KEYS_PER_LANE>;
    for (var j = 0u; j < KEYS_PER_LANE; j++) {
      s[j] = 0.0;
    }
    for (var c = 0u; c < N_CHUNKS; c++) {
      for (var u = 0u; u < Q_LOADS; u++) {
        let e = li + u * WG_SIZE;
        if (e < ROWS * DC4) {
          tile[(e / DC4) * PADV + e % DC4] = q_next[u];
        }
      }
      for (var u = 0u; u < K_LOADS; u++) {
        let e = li + u * WG_SIZE;
        if (e < KEYS * DC4) {
          tile[(ROWS + e / DC4) * PADV + e % DC4] = k_next[u];
        }
      }
      workgroupBarrier();
      if (c + 1u < N_CHUNKS) {
        q_next = load_q(li, row0, rows_total, kvh, c + 1u);
        k_next = load_k(li, k0, hi, kvh, c + 1u);
      }
      for (var d = 0u; d < DC4; d++) {
        let qv = tile[r * PADV + d];
        for (var j = 0u; j < KEYS_PER_LANE; j++) {
          s[j] += dot(qv, tile[(ROWS + lane + LANES * j) * PADV + d]);
        }
      }
      workgroupBarrier();
    }
    var v_next = load_v(li, k0, hi, kvh, 0u);

    // Mask and scale; the row max over the tile; probabilities; rescale the running sums.
    var visible: array<bool, KEYS_PER_LANE>;
    for (var j = 0u; j < KEYS_PER_LANE; j++) {
      let kp = k0 + lane + LANES * j;
      visible[j] = row_ok && kp <= pos && kp >= row_first;
      s[j] = select(NEG, s[j] * params.scale, visible[j]);
      probs[r * PROBS_STRIDE + lane + LANES * j] = s[j];
    }
    workgroupBarrier();
    var tile_max = NEG;
    for (var kk = 0u; kk < KEYS; kk++) {
      tile_max = max(tile_max, probs[r * PROBS_STRIDE + kk]);
    }
    let m_new = max(m, tile_max);
    workgroupBarrier();
    for (var j = 0u; j < KEYS_PER_LANE; j++) {
      probs[r * PROBS_STRIDE + lane + LANES * j] = select(0.0, exp(s[j] - m_new), visible[j]);
    }
    workgroupBarrier();
    let alpha = exp(m - m_new);
    var p_sum = 0.0;
    for (var kk = 0u; kk < KEYS; kk++) {
      p_sum += probs[r * PROBS_STRIDE + kk];
    }
    l = l * alpha + p_sum;
    m = m_new;
    for (var c = 0u; c < VEC4_PER_LANE; c++) {
      o[c] *= alpha;
    }

    // o += p · V, V_KEYS rows of V at a time; the last step fetches the next tile's first chunk.
    for (var st = 0u; st < V_STEPS; st++) {
      for (var u = 0u; u < V_LOADS; u++) {
        let e = li + u * WG_SIZE;
        if (e < V_KEYS * HD4) {
          tile[e] = v_next[u];
        }
      }
      workgroupBarrier();
      if (st + 1u < V_STEPS) {
        v_next = load_v(li, k0, hi, kvh, st + 1u);
      } else if (tile_i + 1u < tile_end) {
        q_next = load_q(li, row0, rows_total, kvh, 0u);
        k_next = load_k(li, k0 + KEYS, hi, kvh, 0u);
      }
      for (var vk = 0u; vk < V_KEYS; vk++) {
        let p = probs[r * PROBS_STRIDE + st * V_KEYS + vk];
        for (var c = 0u; c < VEC4_PER_LANE; c++) {
          o[c] += p * tile[vk * HD4 + lane + LANES * c];
        }
      }
      workgroupBarrier();
    }
  }

  if (!row_ok) {
    return;
  }
  if (n_splits == 1u) {
    let ob = (params.out_offset + t * params.out_stride + h * HEAD_DIM) / 4u + lane;
    for (var c = 0u; c < VEC4_PER_LANE; c++) {
      out[ob + LANES * c] = select(vec4<f32>(0.0), o[c] / l, l > 0.0);
    }
  } else {
    let part = wid.z * tokens.n * params.heads + t * params.heads + h;
    for (var c = 0u; c < VEC4_PER_LANE; c++) {
      scratch[part * HD4 + lane + LANES * c] = o[c];
    }
    if (lane == 0u) {
      scratch[params.ml_base + part] = vec4<f32>(m, l, 0.0, 0.0);
    }
  }
}

// Merges the S partial results of each (token, head): with M = max m_s and w_s = exp(m_s - M),
// o = sum_s w_s o_s / sum_s w_s l_s. One workgroup per (token, head), x-fastest over a 2-D grid;
// the (m, l) pairs are fetched in parallel into shared memory, the partial outputs four splits at
// a time.
@compute @workgroup_size(COMBINE_WG)
fn combine(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_id) lid: vec3<u32>,
) {
  let rows = tokens.n * params.heads;
  let g = wid.x + wid.y * nwg.x;
  if (g >= rows) {
    return;
  }
  // Only the parts that had key tiles (as main cut them for this row's block) hold anything.
  let t0 = g / params.heads;
  let rows_total = tokens.n * params.group;
  let block_row0 = ((t0 * params.group + (g % params.heads) % params.group) / ROWS) * ROWS;
  let lo = first_key(position.start + block_row0 / params.group);
  let hi = position.start + (min(block_row0 + ROWS, rows_total) - 1u) / params.group;
  let n_tiles = (hi - lo) / KEYS + 1u;
  let per_split = (n_tiles + splits.n - 1u) / splits.n;
  let n_splits = min(splits.n, (n_tiles + per_split - 1u) / per_split);
  for (var s = lid.x; s < n_splits; s += COMBINE_WG) {
    split_ml[s] = scratch[params.ml_base + s * rows + g].xy;
  }
  workgroupBarrier();
  var big_m = NEG;
  for (var s = 0u; s < n_splits; s++) {
    big_m = max(big_m, split_ml[s].x);
  }
  workgroupBarrier();
  for (var s = lid.x; s < n_splits; s += COMBINE_WG) {
    let ml = split_ml[s];
    split_ml[s] = vec2<f32>(exp(ml.x - big_m), ml.y);
  }
  workgroupBarrier();
  var big_l = 0.0;
  for (var s = 0u; s < n_splits; s++) {
    big_l += split_ml[s].x * split_ml[s].y;
  }
  let t = g / params.heads;
  let h = g % params.heads;
  let ob = (params.out_offset + t * params.out_stride + h * HEAD_DIM) / 4u;
  for (var d = lid.x; d < HD4; d += COMBINE_WG) {
    var acc = vec4<f32>(0.0);
    var s = 0u;
    for (; s + 4u <= n_splits; s += 4u) {
      let a0 = scratch[(s * rows + g) * HD4 + d];
      let a1 = scratch[((s + 1u) * rows + g) * HD4 + d];
      let a2 = scratch[((s + 2u) * rows + g) * HD4 + d];
      let a3 = scratch[((s + 3u) * rows + g) * HD4 + d];
      acc += split_ml[s].x * a0 + split_ml[s + 1u].x * a1 + split_ml[s + 2u].x * a2 + split_ml[s + 3u].x * a3;
    }
    for (; s < n_splits; s++) {
      acc += split_ml[s].x * scratch[(s * rows + g) * HD4 + d];
    }
    out[ob + d] = select(vec4<f32>(0.0), acc / big_l, big_l > 0.0);
  }
}

// ------------------------------------------------------------------------------------------------
// One-token decode in one pass (entry point `decode`): workgroups (query row (t, h), slice of the
// head's dims), over the whole visible key range of that row, which the binding guarantees is at
// most DEC_MAX_KEYS keys (a sliding layer's window, or a small cache). No key splits, so no
// combine dispatch. Each workgroup's DEC_WG threads first take DEC_KPT keys each (score = q . k
// over the whole head, q staged once in shared memory, four independent accumulators); the row max
// and sum come from shared-memory trees and the probabilities go to shared memory; then o = P V
// for the workgroup's DEC_SLICE4 vec4s of the head: DEC_PARTS groups of DEC_SLICE4 threads (one
// vec4 each, neighbouring threads reading neighbouring bytes of a V row) take every DEC_PARTS-th
// key, DEC_UNROLL loads in flight, and a last step adds the parts. The scores are computed again
// by each slice of a head (K is read from L2 several times), which keeps the dependent chain of
// loads per thread short. Exact softmax over the row (max first), so it agrees with the tiled
// kernel to rounding.

const DEC_WG: u32 = 256u;
const DEC_MAX_KEYS: u32 = 1024u;
const DEC_KPT: u32 = DEC_MAX_KEYS / DEC_WG;
const DEC_SLICE_MAX: u32 = 16u;
const DEC_SLICE4: u32 = min(HD4, DEC_SLICE_MAX); // vec4s of the head per workgroup
const DEC_SLICES: u32 = HD4 / DEC_SLICE4;     // workgroups per query row
const DEC_PARTS: u32 = DEC_WG / DEC_SLICE4;
const DEC_UNROLL: u32 = 8u;

const_assert HD4 % DEC_SLICE4 == 0u;

var<workgroup> dec_q: array<vec4<f32>, MAX_HEAD_DIM / 4u>;
var<workgroup> dec_p: array<f32, DEC_MAX_KEYS>;
var<workgroup> dec_red: array<f32, DEC_WG>;
var<workgroup> dec_acc: array<vec4<f32>, DEC_WG>;

@compute @workgroup_size(DEC_WG)
fn decode(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let g = wid.x + wid.y * nwg.x;
  let row = g / DEC_SLICES;
  let slice = g % DEC_SLICES;
  if (row >= tokens.n * params.heads) {
    return;
  }
  let t = row / params.heads;
  let h = row % params.heads;
  let kvh = h / params.group;
  let pos = position.start + t;
  let lo = first_key(pos);
  let n = min(pos - lo + 1u, DEC_MAX_KEYS);

  let qb = (params.q_offset + t * params.q_stride + h * HEAD_DIM) / 4u;
  for (var i = li; i < HD4; i += DEC_WG) {
    dec_q[i] = q[qb + i];
  }
  workgroupBarrier();

  // Scores of keys li + DEC_WG * j.
  var s: array<f32, DEC_KPT>;
  var mx = NEG;
  for (var j = 0u; j < DEC_KPT; j++) {
    let kk = li + j * DEC_WG;
    s[j] = NEG;
    if (kk < n) {
      let kb = cache_row(lo + kk, kvh);
      // Four independent accumulators: four K loads in flight (the loop is latency-bound).
      var a0 = vec4<f32>(0.0);
      var a1 = vec4<f32>(0.0);
      var a2 = vec4<f32>(0.0);
      var a3 = vec4<f32>(0.0);
      for (var d = 0u; d < HD4; d += 4u) {
        a0 += dec_q[d] * k_cache[kb + d];
        a1 += dec_q[d + 1u] * k_cache[kb + d + 1u];
        a2 += dec_q[d + 2u] * k_cache[kb + d + 2u];
        a3 += dec_q[d + 3u] * k_cache[kb + d + 3u];
      }
      s[j] = dot((a0 + a1) + (a2 + a3), vec4<f32>(1.0)) * params.scale;
      mx = max(mx, s[j]);
    }
  }
  dec_red[li] = mx;
  workgroupBarrier();
  for (var stride = DEC_WG / 2u; stride > 0u; stride >>= 1u) {
    if (li < stride) {
      dec_red[li] = max(dec_red[li], dec_red[li + stride]);
    }
    workgroupBarrier();
  }
  let m = dec_red[0];
  var lsum = 0.0;
  for (var j = 0u; j < DEC_KPT; j++) {
    let kk = li + j * DEC_WG;
    let p = select(0.0, exp(s[j] - m), kk < n);
    dec_p[kk] = p;
    lsum += p;
  }
  workgroupBarrier();
  dec_red[li] = lsum;
  workgroupBarrier();
  for (var stride = DEC_WG / 2u; stride > 0u; stride >>= 1u) {
    if (li < stride) {
      dec_red[li] += dec_red[li + stride];
    }
    workgroupBarrier();
  }
  let l = dec_red[0];

  // o = P V over this slice: keys past n reload key n - 1 (a written slot) and are weighted by 0.
  let d = slice * DEC_SLICE4 + li % DEC_SLICE4;
  let part = li / DEC_SLICE4;
  var o = vec4<f32>(0.0);
  for (var k0 = part; k0 < n; k0 += DEC_PARTS * DEC_UNROLL) {
    var vv: array<vec4<f32>, DEC_UNROLL>;
    for (var u = 0u; u < DEC_UNROLL; u++) {
      let kk = min(k0 + u * DEC_PARTS, n - 1u);
      vv[u] = v_cache[cache_row(lo + kk, kvh) + d];
    }
    for (var u = 0u; u < DEC_UNROLL; u++) {
      let kk = k0 + u * DEC_PARTS;
      o += select(0.0, dec_p[min(kk, DEC_MAX_KEYS - 1u)], kk < n) * vv[u];
    }
  }
  dec_acc[li] = o;
  workgroupBarrier();
  if (li < DEC_SLICE4) {
    var sum = vec4<f32>(0.0);
    for (var pp = 0u; pp < DEC_PARTS; pp++) {
      sum += dec_acc[pp * DEC_SLICE4 + li];
    }
    let ob = (params.out_offset + t * params.out_stride + h * HEAD_DIM) / 4u;
    out[ob + d] = select(vec4<f32>(0.0), sum / l, l > 0.0);
  }
}

// ------------------------------------------------------------------------------------------------
// One-token decode over key splits (entry points `decode_split`, then `decode_combine`), for
// groups of query heads per kv head that divide DS_PAIRS: workgroup (split s, kv head g) takes the
// g-th group's heads together, so each K and V row it reads serves all of them, over its share of
// the visible keys (about n / DS_SPLITS, in rounds of DS_PAIRS / group keys). A round: every
// (head, key) pair's score from DS_LANES lanes (HEAD_DIM / DS_LANES dims each: short load chains),
// summed through shared memory; per head the running max, sum and rescale factor (online softmax);
// then each thread's outputs (vec4 d of head h, DS_WG apart) take the round's P V. The split's
// (o, m, l) go to scratch, and decode_combine merges the splits of each head as `combine` does.
// Many small workgroups with short dependent chains: decode is latency-bound, not bandwidth-bound.

const DS_WG: u32 = 256u;
const DS_LANES: u32 = 8u;                    // lanes per (head, key) score
const DS_PAIRS: u32 = DS_WG / DS_LANES;      // (head, key) scores per round
const DS_SPLITS: u32 = 128u;                 // workgroups per kv head (ops.ts reads this)
const DS_OUT: u32 = (DS_PAIRS * HD4 + DS_WG - 1u) / DS_WG;  // output vec4s per thread, at most
const DS_SCORE4: u32 = HD4 / DS_LANES;       // vec4s per lane of a score
const DS_COMBINE_WG: u32 = 256u;

const_assert HD4 % DS_LANES == 0u;

var<workgroup> ds_part: array<f32, DS_WG>;
var<workgroup> ds_p: array<f32, DS_PAIRS>;
var<workgroup> ds_m: array<f32, DS_PAIRS>;
var<workgroup> ds_l: array<f32, DS_PAIRS>;
var<workgroup> ds_f: array<f32, DS_PAIRS>;
var<workgroup> ds_ml: array<vec2<f32>, DS_SPLITS>;
var<workgroup> ds_red: array<f32, DS_SPLITS>;
var<workgroup> ds_acc: array<vec4<f32>, DS_COMBINE_WG>;

const_assert DS_SPLITS <= DS_COMBINE_WG;
const_assert HD4 <= DS_COMBINE_WG;

// The visible keys of the decode token (lowest position, count) and each split's share.
fn ds_keys() -> vec3<u32> {
  let pos = position.start;
  let lo = first_key(pos);
  let n = pos - lo + 1u;
  let ks = DS_PAIRS / params.group;
  let per = ((n + DS_SPLITS - 1u) / DS_SPLITS + ks - 1u) / ks * ks;
  return vec3<u32>(lo, n, per);
}

@compute @workgroup_size(DS_WG)
fn decode_split(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let split = wid.x;
  let kvh = wid.y;
  let group = params.group;
  let ks = DS_PAIRS / group;              // keys per round
  let keys = ds_keys();
  let lo = keys.x;
  let k_begin = split * keys.z;
  let k_end = min(keys.y, k_begin + keys.z);

  // Score mapping: pair = (local head, key of the round), DS_LANES lanes each.
  let pair = li / DS_LANES;
  let lane = li % DS_LANES;
  let s_head = kvh * group + pair / ks;
  let qb = (params.q_offset + s_head * HEAD_DIM) / 4u;
  var qv: array<vec4<f32>, DS_SCORE4>;
  for (var i = 0u; i < DS_SCORE4; i++) {
    qv[i] = q[qb + lane + DS_LANES * i];
  }
  if (li < group) {
    ds_m[li] = NEG;
    ds_l[li] = 0.0;
  }
  var o: array<vec4<f32>, DS_OUT>;
  for (var i = 0u; i < DS_OUT; i++) {
    o[i] = vec4<f32>(0.0);
  }
  let outs = group * HD4;

  for (var k0 = k_begin; k0 < k_end; k0 += ks) {
    // Scores: this lane's dims of q_h . k_j.
    let kk = k0 + pair % ks;
    var a = vec4<f32>(0.0);
    var b = vec4<f32>(0.0);
    if (kk < k_end) {
      let kb = cache_row(lo + kk, kvh) + lane;
      var kv: array<vec4<f32>, DS_SCORE4>;
      for (var i = 0u; i < DS_SCORE4; i++) {
        kv[i] = k_cache[kb + DS_LANES * i];
      }
      for (var i = 0u; i < DS_SCORE4; i++) {
        a += qv[i] * kv[i];
      }
    }
    ds_part[li] = dot(a + b, vec4<f32>(1.0));
    workgroupBarrier();
    if (li < DS_PAIRS) {
      var s = 0.0;
      for (var l = 0u; l < DS_LANES; l++) {
        s += ds_part[li * DS_LANES + l];
      }
      ds_p[li] = select(NEG, s * params.scale, k0 + li % ks < k_end && li < group * ks);
    }
    workgroupBarrier();
    // Per head: the new running max, the factor for what came before, the round's probabilities.
    if (li < group) {
      var mr = NEG;
      for (var j = 0u; j < ks; j++) {
        mr = max(mr, ds_p[li * ks + j]);
      }
      let m_new = max(ds_m[li], mr);
      let f = exp(ds_m[li] - m_new);
      var l = ds_l[li] * f;
      for (var j = 0u; j < ks; j++) {
        let valid = k0 + j < k_end;
        let p = select(0.0, exp(ds_p[li * ks + j] - m_new), valid);
        ds_p[li * ks + j] = p;
        l += p;
      }
      ds_m[li] = m_new;
      ds_l[li] = l;
      ds_f[li] = f;
    }
    workgroupBarrier();
    // P V: output e = (local head e / HD4, vec4 e % HD4); rows past the keys weigh 0.
    for (var i = 0u; i < DS_OUT; i++) {
      let e = li + DS_WG * i;
      if (e < outs) {
        let hl = e / HD4;
        let d = e % HD4;
        var acc = o[i] * ds_f[hl];
        var j = 0u;
        for (; j + 4u <= ks; j += 4u) {
          let v0 = v_cache[cache_row(lo + min(k0 + j, k_end - 1u), kvh) + d];
          let v1 = v_cache[cache_row(lo + min(k0 + j + 1u, k_end - 1u), kvh) + d];
          let v2 = v_cache[cache_row(lo + min(k0 + j + 2u, k_end - 1u), kvh) + d];
          let v3 = v_cache[cache_row(lo + min(k0 + j + 3u, k_end - 1u), kvh) + d];
          acc += (ds_p[hl * ks + j] * v0 + ds_p[hl * ks + j + 1u] * v1) + (ds_p[hl * ks + j + 2u] * v2 + ds_p[hl * ks + j + 3u] * v3);
        }
        for (; j < ks; j++) {
          acc += ds_p[hl * ks + j] * v_cache[cache_row(lo + min(k0 + j, k_end - 1u), kvh) + d];
        }
        o[i] = acc;
      }
    }
    workgroupBarrier();
  }

  // This split's part: o (unnormalised) per (head, vec4), and (m, l) per head.
  for (var i = 0u; i < DS_OUT; i++) {
    let e = li + DS_WG * i;
    if (e < outs) {
      let h = kvh * group + e / HD4;
      scratch[(split * params.heads + h) * HD4 + e % HD4] = o[i];
    }
  }
  if (li < group) {
    scratch[DS_SPLITS * params.heads * HD4 + split * params.heads + kvh * group + li] = vec4<f32>(ds_m[li], ds_l[li], 0.0, 0.0);
  }
}

// Merges the used splits of one head (workgroup h): o = sum_s w_s o_s / sum_s w_s l_s with
// w_s = exp(m_s - max m). The max and the weighted sum of l are shared-memory trees; the outputs
// are summed by DS_COMBINE_WG / HD4 groups of threads, each over every such split (four loads in
// flight), then added.
@compute @workgroup_size(DS_COMBINE_WG)
fn decode_combine(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let h = wid.x;
  let keys = ds_keys();
  let used = (keys.y + keys.z - 1u) / keys.z;
  let ml_base = DS_SPLITS * params.heads * HD4;
  var ml = vec2<f32>(NEG, 0.0);
  if (li < used) {
    ml = scratch[ml_base + li * params.heads + h].xy;
  }
  if (li < DS_SPLITS) {
    ds_red[li] = ml.x;
  }
  workgroupBarrier();
  for (var stride = DS_SPLITS / 2u; stride > 0u; stride >>= 1u) {
    if (li < stride) {
      ds_red[li] = max(ds_red[li], ds_red[li + stride]);
    }
    workgroupBarrier();
  }
  let big_m = ds_red[0];
  workgroupBarrier();
  let w = select(0.0, exp(ml.x - big_m), li < used);
  if (li < DS_SPLITS) {
    ds_ml[li] = vec2<f32>(w, w * ml.y);
  }
  workgroupBarrier();
  for (var stride = DS_SPLITS / 2u; stride > 0u; stride >>= 1u) {
    if (li < stride) {
      ds_ml[li].y += ds_ml[li + stride].y;
    }
    workgroupBarrier();
  }
  let big_l = ds_ml[0].y;
  if (li < DS_SPLITS) {
    ds_ml[li].x = w;
  }
  workgroupBarrier();
  // Thread (part, d): splits part, part + parts, ...
  let parts = DS_COMBINE_WG / HD4;
  let part = li / HD4;
  let d = li % HD4;
  var a = vec4<f32>(0.0);
  var b = vec4<f32>(0.0);
  var c = vec4<f32>(0.0);
  var e = vec4<f32>(0.0);
  var s = part;
  for (; s + 3u * parts < used; s += 4u * parts) {
    a += ds_ml[s].x * scratch[(s * params.heads + h) * HD4 + d];
    b += ds_ml[s + parts].x * scratch[((s + parts) * params.heads + h) * HD4 + d];
    c += ds_ml[s + 2u * parts].x * scratch[((s + 2u * parts) * params.heads + h) * HD4 + d];
    e += ds_ml[s + 3u * parts].x * scratch[((s + 3u * parts) * params.heads + h) * HD4 + d];
  }
  for (; s < used; s += parts) {
    a += ds_ml[s].x * scratch[(s * params.heads + h) * HD4 + d];
  }
  ds_acc[li] = (a + b) + (c + e);
  workgroupBarrier();
  if (li < HD4) {
    var sum = ds_acc[li];
    for (var p = 1u; p < parts; p++) {
      sum += ds_acc[p * HD4 + li];
    }
    let ob = (params.out_offset + h * HEAD_DIM) / 4u;
    out[ob + li] = select(vec4<f32>(0.0), sum / big_l, big_l > 0.0);
  }
}
