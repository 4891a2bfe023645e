// A general f32 matrix product with arbitrary element strides, for the small f32 matrices of
// LoRA training (A [r][in], B [out][r] and their gradients), where every product appears in
// some transposition:
//   C(i, j) (+)= alpha * sum_k A(i, k) * B(k, j)    for i < M, j < N, k < K
//   A(i, k) = a[a_offset + i * a_si + k * a_sk]
//   B(k, j) = b[b_offset + k * b_sk + j * b_sj]
//   C(i, j) = c[c_offset + i * c_si + j * c_sj]
// With accumulate set the product is added to C (gradients accumulate over micro-batches and over
// the branches that share an input). One of M or K may be the block's token count (count_dim):
//   count_dim 0: M = tokens.count   (a per-token product, e.g. dt = s * dy * B: one row per token)
//   count_dim 1: K = tokens.count   (an outer product summed over tokens, e.g. dB += s * dy^T t)
//   count_dim 2: neither
//
// Work split: a workgroup computes a TILE_M x TILE_N tile of C (workgroup_id.x over tiles of N,
// .y over tiles of M) in steps of K_CHUNK: its threads stage the A and B tiles in shared memory,
// then each thread updates a 4 x 4 block of outputs (rows lid.y + WG * ii, columns lid.x + WG * jj,
// interleaved so that neighbouring threads read neighbouring shared words). Accumulation is f32.

const WG: u32 = 16u;                 // threads along each of M and N
const WG_SIZE: u32 = WG * WG;
const TILE_M: u32 = 64u;
const TILE_N: u32 = 64u;
const K_CHUNK: u32 = 16u;

const_assert TILE_M == 4u * WG;
const_assert TILE_N == 4u * WG;

struct Params {
  m: u32,
  n: u32,
  k: u32,
  count_dim: u32,   // 0: M is tokens.count, 1: K is tokens.count, 2: fixed
  a_offset: u32,
  a_si: u32,
  a_sk: u32,
  b_offset: u32,
  b_sk: u32,
  b_sj: u32,
  c_offset: u32,
  c_si: u32,
  c_sj: u32,
  accumulate: u32,  // 1: C += ..., 0: C = ...
  alpha: f32,
}

struct Tokens {
  count: u32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;
@group(0) @binding(4) var<uniform> tokens: Tokens;

var<workgroup> a_tile: array<f32, K_CHUNK * TILE_M>;   // [k][i]
var<workgroup> b_tile: array<f32, K_CHUNK * TILE_N>;   // [k][j]

@compute @workgroup_size(WG, WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(local_invocation_id) lid: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  var m = params.m;
  var kk = params.k;
  if (params.count_dim == 0u) {
    m = tokens.count;
  } else if (params.count_dim == 1u) {
    kk = tokens.count;
  }
  let n = params.n;
  let i0 = wid.y * TILE_M;
  let j0 = wid.x * TILE_N;

  var acc: array<vec4<f32>, 4>;   // acc[ii][jj]

  for (var k0 = 0u; k0 < kk; k0 += K_CHUNK) {
    for (var task = li; task < K_CHUNK * TILE_M; task += WG_SIZE) {
      let i = task / K_CHUNK;
      let k = task % K_CHUNK;
      var v = 0.0;
      if (i0 + i < m && k0 + k < kk) {
        v = a[params.a_offset + (i0 + i) * params.a_si + (k0 + k) * params.a_sk];
      }
      a_tile[k * TILE_M + i] = v;
    }
    for (var task = li; task < K_CHUNK * TILE_N; task += WG_SIZE) {
      let k = task / TILE_N;
      let j = task % TILE_N;
      var v = 0.0;
      if (j0 + j < n && k0 + k < kk) {
        v = b[params.b_offset + (k0 + k) * params.b_sk + (j0 + j) * params.b_sj];
      }
      b_tile[k * TILE_N + j] = v;
    }
    workgroupBarrier();
    for (var k = 0u; k < K_CHUNK; k++) {
      let bv = vec4<f32>(
        b_tile[k * TILE_N + lid.x],
        b_tile[k * TILE_N + lid.x + WG],
        b_tile[k * TILE_N + lid.x + 2u * WG],
        b_tile[k * TILE_N + lid.x + 3u * WG],
      );
      for (var ii = 0u; ii < 4u; ii++) {
        acc[ii] += a_tile[k * TILE_M + lid.y + WG * ii] * bv;
      }
    }
    workgroupBarrier();
  }

  for (var ii = 0u; ii < 4u; ii++) {
    let i = i0 + lid.y + WG * ii;
    if (i < m) {
      for (var jj = 0u; jj < 4u; jj++) {
        let j = j0 + lid.x + WG * jj;
        if (j < n) {
          let at = params.c_offset + i * params.c_si + j * params.c_sj;
          var v = params.alpha * acc[ii][jj];
          if (params.accumulate != 0u) {
            v += c[at];
          }
          c[at] = v;
        }
      }
    }
  }
}
