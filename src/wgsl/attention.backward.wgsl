// Backward of causal (optionally sliding-window) grouped-query attention over one training block
// of T tokens at positions 0..T-1, keys and values in plain [T][kv_heads * head_dim] buffers (no
// ring cache). The forward (attention.forward.wgsl with capacity T) is, for query row (i, h),
// kv head g = h / group:
//   s_ij = scale * q_ih . k_jg   over the visible keys j: j <= i and (window == 0 or i - j < window)
//   P_ij = softmax_j(s_ij),   o_ih = Σ_j P_ij v_jg
// Given dO = dL/do, with dP_ij = dO_ih . v_jg and D_i = Σ_j P_ij dP_ij (= dO_ih . o_ih):
//   dS_ij = P_ij (dP_ij - D_i)
//   dq_ih = scale Σ_j dS_ij k_jg
//   dk_jg = scale Σ_{i, h in g} dS_ij q_ih,     dv_jg = Σ_{i, h in g} P_ij dO_ih
// Nothing of the forward is kept: the softmax is recomputed from q and k, in two entry points run
// one after the other (two dispatches of one pass; no T x T storage):
//   rows  one workgroup per query row (i, h). Sweep 1 over the keys: the log-sum-exp L_i and c_i,
//         the dP of the key with the highest score. Sweep 2: P_ij = exp(s_ij - L_i) and
//         e_ij = dP_ij - c_i, accumulating A_i = Σ_j P_ij e_ij, Σ_j P_ij e_ij k_j and Σ_j P_ij k_j,
//         so that dq = scale (Σ P e k - A Σ P k) needs no third sweep. (L_i, c_i, A_i) go to `stats`.
//   keys  one workgroup per key (j, g): sweeps the query rows that see key j (every head of the
//         group), P_ij = exp(s_ij - L_i), dS_ij = P_ij (e_ij - A_i), and accumulates dk and dv.
//         dk/dv sum over the heads sharing a kv head; ACCUMULATE_KV adds to what dk and dv hold (a
//         KV-shared layer's gradient joins its donor's), ACCUMULATE_Q likewise for dq.
// Why dP - D is taken as (dP - c) - A with D = c + A: when one key dominates a row (P near 1, as
// normed q and k with scale 1 often make it), dS is small, of order (1 - P) |dP|, but D and that
// key's dP are both of order |dP|, and f32 rounding of D alone would leave an error of order
// 2^-24 |dP| in every dS of the row. Shifted by c (that key's own dP, computed by the same
// expression in both entry points, key_dots and row_dots, so that its e is 0), A is itself of
// order (1 - P) |dP| and rounds in proportion (the hd-512 test case: dq error 1.5e-5 → 1.7e-6).
//
// Work split: WG threads per workgroup. In a sweep each thread takes one key (rows) or one query
// row (keys) of a tile of WG and computes its two dot products against the row's vectors staged in
// shared memory; the tile's weights go to shared memory, then every thread adds the tile's
// contributions to the head dims it owns (d = lid + c * WG, c < DIMS_PER_THREAD), reading the
// tile's k (or q and dO) rows so that neighbouring threads read neighbouring values. Sums run per
// tile, then into the totals (rounding grows with WG + T / WG terms rather than T).

override ACCUMULATE_Q: bool = false;
override ACCUMULATE_KV: bool = false;

const WG: u32 = 64u;
const MAX_HEAD_DIM: u32 = 512u;
const DIMS_PER_THREAD: u32 = MAX_HEAD_DIM / WG;
const NEG: f32 = -3.0e38;                    // "no key yet": finite, so NEG - NEG = 0

struct Params {
  heads: u32,        // query heads
  group: u32,        // heads / kv_heads
  head_dim: u32,
  window: u32,       // 0: causal only
  q_offset: u32,
  q_stride: u32,
  k_offset: u32,
  k_stride: u32,
  v_offset: u32,
  v_stride: u32,
  do_offset: u32,
  do_stride: u32,
  dq_offset: u32,
  dq_stride: u32,
  dk_offset: u32,
  dk_stride: u32,
  dv_offset: u32,
  dv_stride: u32,
  scale: f32,
}

struct Count {
  n: u32,
}

@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read> dout: array<f32>;
@group(0) @binding(4) var<storage, read_write> dq: array<f32>;
@group(0) @binding(5) var<storage, read_write> dk: array<f32>;
@group(0) @binding(6) var<storage, read_write> dv: array<f32>;
// (L_i, c_i, A_i, 0) per query row, at i * heads + h.
@group(0) @binding(7) var<storage, read_write> stats: array<vec4<f32>>;
@group(0) @binding(8) var<uniform> params: Params;
@group(0) @binding(9) var<uniform> tokens: Count;

// The row's (rows) or the key's (keys) two vectors: q and dO, or k and v.
var<workgroup> vec_a: array<f32, MAX_HEAD_DIM>;
var<workgroup> vec_b: array<f32, MAX_HEAD_DIM>;
var<workgroup> tile_p: array<f32, WG>;
var<workgroup> tile_ds: array<f32, WG>;
var<workgroup> partials: array<vec3<f32>, WG>;
var<workgroup> sums: array<f32, WG>;

fn q_at(i: u32, h: u32) -> u32 {
  return params.q_offset + i * params.q_stride + h * params.head_dim;
}

fn do_at(i: u32, h: u32) -> u32 {
  return params.do_offset + i * params.do_stride + h * params.head_dim;
}

fn k_at(j: u32, g: u32) -> u32 {
  return params.k_offset + j * params.k_stride + g * params.head_dim;
}

fn v_at(j: u32, g: u32) -> u32 {
  return params.v_offset + j * params.v_stride + g * params.head_dim;
}

// (scale * vec_a . k_j, vec_b . v_j): a query row's score and dP against key j. Four running
// sums each (dims d mod 4) rather than one: shorter sequential chains, so less rounding and latency.
fn key_dots(kb: u32, vb: u32) -> vec2<f32> {
  var s = vec4<f32>(0.0);
  var p = vec4<f32>(0.0);
  let hd = params.head_dim;
  var d = 0u;
  while (d + 4u <= hd) {
    s += vec4<f32>(vec_a[d], vec_a[d + 1u], vec_a[d + 2u], vec_a[d + 3u]) * vec4<f32>(k[kb + d], k[kb + d + 1u], k[kb + d + 2u], k[kb + d + 3u]);
    p += vec4<f32>(vec_b[d], vec_b[d + 1u], vec_b[d + 2u], vec_b[d + 3u]) * vec4<f32>(v[vb + d], v[vb + d + 1u], v[vb + d + 2u], v[vb + d + 3u]);
    d += 4u;
  }
  for (; d < hd; d++) {
    s.x += vec_a[d] * k[kb + d];
    p.x += vec_b[d] * v[vb + d];
  }
  return vec2<f32>(((s.x + s.y) + (s.z + s.w)) * params.scale, (p.x + p.y) + (p.z + p.w));
}

// (scale * q_row . vec_a, dO_row . vec_b): a key's score and dP against a query row (as key_dots).
fn row_dots(qb: u32, ob: u32) -> vec2<f32> {
  var s = vec4<f32>(0.0);
  var p = vec4<f32>(0.0);
  let hd = params.head_dim;
  var d = 0u;
  while (d + 4u <= hd) {
    s += vec4<f32>(q[qb + d], q[qb + d + 1u], q[qb + d + 2u], q[qb + d + 3u]) * vec4<f32>(vec_a[d], vec_a[d + 1u], vec_a[d + 2u], vec_a[d + 3u]);
    p += vec4<f32>(dout[ob + d], dout[ob + d + 1u], dout[ob + d + 2u], dout[ob + d + 3u]) * vec4<f32>(vec_b[d], vec_b[d + 1u], vec_b[d + 2u], vec_b[d + 3u]);
    d += 4u;
  }
  for (; d < hd; d++) {
    s.x += q[qb + d] * vec_a[d];
    p.x += dout[ob + d] * vec_b[d];
  }
  return vec2<f32>(((s.x + s.y) + (s.z + s.w)) * params.scale, (p.x + p.y) + (p.z + p.w));
}

// Two partials (m, l, c) of a row's keys: the highest score m, l = Σ exp(s - m), and c the dP of
// the key that scored m.
fn merge_partials(x: vec3<f32>, y: vec3<f32>) -> vec3<f32> {
  let m = max(x.x, y.x);
  let l = x.y * exp(x.x - m) + y.y * exp(y.x - m);
  return vec3<f32>(m, l, select(y.z, x.z, x.x >= y.x));
}

@compute @workgroup_size(WG)
fn rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = wid.x;
  let h = wid.y;
  if (i >= tokens.n) {
    return;
  }
  let g = h / params.group;
  let hd = params.head_dim;
  for (var d = lid.x; d < hd; d += WG) {
    vec_a[d] = q[q_at(i, h) + d];
    vec_b[d] = dout[do_at(i, h) + d];
  }
  workgroupBarrier();
  var first = 0u;
  if (params.window > 0u && i + 1u > params.window) {
    first = i + 1u - params.window;
  }

  // Sweep 1: this thread's keys j = first + lid + n * WG, then the merge of all threads.
  var part = vec3<f32>(NEG, 0.0, 0.0);
  for (var j = first + lid.x; j <= i; j += WG) {
    let sp = key_dots(k_at(j, g), v_at(j, g));
    part = merge_partials(part, vec3<f32>(sp.x, 1.0, sp.y));
  }
  partials[lid.x] = part;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
    if (lid.x < stride) {
      partials[lid.x] = merge_partials(partials[lid.x], partials[lid.x + stride]);
    }
    workgroupBarrier();
  }
  let total = partials[0];
  let lse = total.x + log(total.y);
  let shift = total.z;

  // Sweep 2 over tiles of WG keys: Σ P e k and Σ P k per owned dim, and this thread's share of A.
  var acc_pek: array<f32, DIMS_PER_THREAD>;
  var acc_pk: array<f32, DIMS_PER_THREAD>;
  for (var c = 0u; c < DIMS_PER_THREAD; c++) {
    acc_pek[c] = 0.0;
    acc_pk[c] = 0.0;
  }
  var part_a = 0.0;
  for (var j0 = first; j0 <= i; j0 += WG) {
    let j = j0 + lid.x;
    var p = 0.0;
    var pe = 0.0;
    if (j <= i) {
      let sp = key_dots(k_at(j, g), v_at(j, g));
      p = exp(sp.x - lse);
      pe = p * (sp.y - shift);
      part_a += pe;
    }
    tile_p[lid.x] = p;
    tile_ds[lid.x] = pe;
    workgroupBarrier();
    var tile_pek: array<f32, DIMS_PER_THREAD>;
    var tile_pk: array<f32, DIMS_PER_THREAD>;
    for (var c = 0u; c < DIMS_PER_THREAD; c++) {
      tile_pek[c] = 0.0;
      tile_pk[c] = 0.0;
    }
    let n = min(WG, i + 1u - j0);
    for (var t = 0u; t < n; t++) {
      let wp = tile_p[t];
      let wpe = tile_ds[t];
      let kb = k_at(j0 + t, g);
      for (var c = 0u; c < DIMS_PER_THREAD; c++) {
        let d = lid.x + c * WG;
        if (d < hd) {
          let kv = k[kb + d];
          tile_pek[c] += wpe * kv;
          tile_pk[c] += wp * kv;
        }
      }
    }
    for (var c = 0u; c < DIMS_PER_THREAD; c++) {
      acc_pek[c] += tile_pek[c];
      acc_pk[c] += tile_pk[c];
    }
    workgroupBarrier();
  }
  sums[lid.x] = part_a;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
    if (lid.x < stride) {
      sums[lid.x] += sums[lid.x + stride];
    }
    workgroupBarrier();
  }
  let a = sums[0];
  if (lid.x == 0u) {
    stats[i * params.heads + h] = vec4<f32>(lse, shift, a, 0.0);
  }
  let qb = params.dq_offset + i * params.dq_stride + h * hd;
  for (var c = 0u; c < DIMS_PER_THREAD; c++) {
    let d = lid.x + c * WG;
    if (d < hd) {
      var r = (acc_pek[c] - a * acc_pk[c]) * params.scale;
      if (ACCUMULATE_Q) {
        r += dq[qb + d];
      }
      dq[qb + d] = r;
    }
  }
}

@compute @workgroup_size(WG)
fn keys(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let j = wid.x;
  let g = wid.y;
  let n = tokens.n;
  if (j >= n) {
    return;
  }
  let hd = params.head_dim;
  let group = params.group;
  for (var d = lid.x; d < hd; d += WG) {
    vec_a[d] = k[k_at(j, g) + d];
    vec_b[d] = v[v_at(j, g) + d];
  }
  workgroupBarrier();
  // Query positions j..last see key j; rows r = (i - j) * group + (h % group).
  var last = n - 1u;
  if (params.window > 0u) {
    last = min(last, j + params.window - 1u);
  }
  let rows_total = (last - j + 1u) * group;

  var acc_k: array<f32, DIMS_PER_THREAD>;
  var acc_v: array<f32, DIMS_PER_THREAD>;
  for (var c = 0u; c < DIMS_PER_THREAD; c++) {
    acc_k[c] = 0.0;
    acc_v[c] = 0.0;
  }
  for (var r0 = 0u; r0 < rows_total; r0 += WG) {
    let r = r0 + lid.x;
    var p = 0.0;
    var ds = 0.0;
    if (r < rows_total) {
      let i = j + r / group;
      let h = g * group + r % group;
      let sp = row_dots(q_at(i, h), do_at(i, h));
      let st = stats[i * params.heads + h];
      p = exp(sp.x - st.x);
      ds = p * ((sp.y - st.y) - st.z);
    }
    tile_p[lid.x] = p;
    tile_ds[lid.x] = ds;
    workgroupBarrier();
    var part_k: array<f32, DIMS_PER_THREAD>;
    var part_v: array<f32, DIMS_PER_THREAD>;
    for (var c = 0u; c < DIMS_PER_THREAD; c++) {
      part_k[c] = 0.0;
      part_v[c] = 0.0;
    }
    let count = min(WG, rows_total - r0);
    for (var t = 0u; t < count; t++) {
      let i = j + (r0 + t) / group;
      let h = g * group + (r0 + t) % group;
      let wp = tile_p[t];
      let wds = tile_ds[t];
      let qb = q_at(i, h);
      let ob = do_at(i, h);
      for (var c = 0u; c < DIMS_PER_THREAD; c++) {
        let d = lid.x + c * WG;
        if (d < hd) {
          part_k[c] += wds * q[qb + d];
          part_v[c] += wp * dout[ob + d];
        }
      }
    }
    for (var c = 0u; c < DIMS_PER_THREAD; c++) {
      acc_k[c] += part_k[c];
      acc_v[c] += part_v[c];
    }
    workgroupBarrier();
  }
  let kb = params.dk_offset + j * params.dk_stride + g * hd;
  let vb = params.dv_offset + j * params.dv_stride + g * hd;
  for (var c = 0u; c < DIMS_PER_THREAD; c++) {
    let d = lid.x + c * WG;
    if (d < hd) {
      var rk = acc_k[c] * params.scale;
      var rv = acc_v[c];
      if (ACCUMULATE_KV) {
        rk += dk[kb + d];
        rv += dv[vb + d];
      }
      dk[kb + d] = rk;
      dv[vb + d] = rv;
    }
  }
}
