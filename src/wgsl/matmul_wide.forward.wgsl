// Matrix-matrix product for a block of tokens (prefill), the wide tile for matrices of many rows:
//   y[y_offset + t * y_stride + r] = sum_c W[first_row + r, c] * x[x_offset + t * x_stride + c]
// with the bindings, parameters and weight snippets of matmul.forward.wgsl (see there), summed
// in column order.
//
// Tile: TILE_ROWS x TILE_TOKENS = 128 x 64 of y per workgroup of 16 x 8 threads; a thread holds
// 8 rows x 8 tokens (two vec4s of rows 64 apart, two of tokens 32 apart), so per column it reads
// four vec4s from shared memory for 64 multiply-adds (matmul.forward.wgsl's 4 x 8 outputs a
// thread read 12 vec4s for 128). The shared tiles are stored column-major ([k][rows], [k][tokens])
// so those reads are vec4s; the stores that transpose them are scalar, a warp's lanes on
// consecutive rows or tokens (no bank conflicts). Each K_CHUNK of columns, the threads decode the
// weight tile once (8-value groups) and load the x tile; the next chunk is fetched into registers
// before the products of the current one, so its memory latency hides behind them.
//
// Split K: workgroup z sums only columns [z k_split, (z + 1) k_split) and writes its partial y
// split_stride elements after z's predecessor; matmul_split_sum.forward.wgsl adds the parts up
// (linear.ts: a matrix of few rows and long ones, whose tiles alone would leave the GPU idle).
// Unsplit: k_split = cols and one z.

const WG_ROWS: u32 = 16u;              // threads along rows
const WG_TOKENS: u32 = 8u;             // threads along tokens
const WG_SIZE: u32 = WG_ROWS * WG_TOKENS;
const TILE_ROWS: u32 = 128u;           // rows of y per workgroup (8 a thread)
const TILE_TOKENS: u32 = 64u;          // tokens of y per workgroup (8 a thread)
const K_CHUNK: u32 = 16u;              // columns per step
const ROW_VEC4: u32 = TILE_ROWS / 4u;
const TOKEN_VEC4: u32 = TILE_TOKENS / 4u;
const GROUPS_PER_BLOCK: u32 = W_BLOCK_VALUES / 8u;
const W_TASKS: u32 = TILE_ROWS * (K_CHUNK / 8u);      // 8-value weight groups per chunk
const X_TASKS: u32 = TILE_TOKENS * (K_CHUNK / 4u);    // x vec4s per chunk
const W_PER_THREAD: u32 = W_TASKS / WG_SIZE;
const X_PER_THREAD: u32 = X_TASKS / WG_SIZE;

const_assert W_TASKS % WG_SIZE == 0u;
const_assert X_TASKS % WG_SIZE == 0u;
const_assert ROW_VEC4 == 2u * WG_ROWS;
const_assert TOKEN_VEC4 == 2u * WG_TOKENS;

struct Params {
  rows: u32,
  cols: u32,
  first_row: u32,
  x_offset: u32,
  x_stride: u32,
  y_offset: u32,
  y_stride: u32,
  k_split: u32,       // columns per z (a multiple of K_CHUNK and of W_BLOCK_VALUES)
  split_stride: u32,  // elements of y between the parts of consecutive z
}

struct Tokens {
  count: u32,
}

@group(0) @binding(0) var<storage, read> weight: array<u32>;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;
@group(0) @binding(4) var<uniform> tokens: Tokens;

var<workgroup> w_tile: array<vec4<f32>, K_CHUNK * ROW_VEC4>;     // [k][rows / 4]
var<workgroup> x_tile: array<vec4<f32>, K_CHUNK * TOKEN_VEC4>;   // [k][tokens / 4]

// This thread's share of chunk k0: task s is weight group (row li + WG_SIZE s mod TILE_ROWS,
// group (li + WG_SIZE s) / TILE_ROWS of the chunk), decoded (rows past the matrix give 0), and x
// vec4 (token likewise, vec4 (li + WG_SIZE s) / TILE_TOKENS of the chunk; tokens past the count give 0).
fn fetch(
  k0: u32, li: u32, row0: u32, tok0: u32, count: u32, row_bytes: u32, x_base: u32, x_stride: u32,
  wv: ptr<function, array<vec4<f32>, 2u * W_PER_THREAD>>, xv: ptr<function, array<vec4<f32>, X_PER_THREAD>>,
) {
  for (var s = 0u; s < W_PER_THREAD; s++) {
    let task = li + s * WG_SIZE;
    let row = row0 + task % TILE_ROWS;
    var v0 = vec4<f32>(0.0);
    var v1 = vec4<f32>(0.0);
    if (row < params.rows) {
      let k = k0 / 8u + task / TILE_ROWS;
      let w = w_decode8((params.first_row + row) * row_bytes + (k / GROUPS_PER_BLOCK) * W_BLOCK_BYTES, k % GROUPS_PER_BLOCK);
      v0 = w.scale * w.q0 + w.bias;
      v1 = w.scale * w.q1 + w.bias;
    }
    (*wv)[2u * s] = v0;
    (*wv)[2u * s + 1u] = v1;
  }
  for (var s = 0u; s < X_PER_THREAD; s++) {
    let task = li + s * WG_SIZE;
    let tok = tok0 + task % TILE_TOKENS;
    var v = vec4<f32>(0.0);
    if (tok < count) {
      v = x[x_base + tok * x_stride + k0 / 4u + task / TILE_TOKENS];
    }
    (*xv)[s] = v;
  }
}

@compute @workgroup_size(WG_ROWS, WG_TOKENS)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(local_invocation_id) lid: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let k_begin = wid.z * params.k_split;
  let k_end = min(params.cols, k_begin + params.k_split);
  let y_base = params.y_offset + wid.z * params.split_stride;
  let row0 = wid.x * TILE_ROWS;
  let tok0 = wid.y * TILE_TOKENS;
  let count = tokens.count;
  let row_bytes = (params.cols / W_BLOCK_VALUES) * W_BLOCK_BYTES;
  let x_base = params.x_offset / 4u;
  let x_stride = params.x_stride / 4u;

  // acc[2t + g]: token t of the thread (4 lid.y + t, then 32 + 4 lid.y + t - 4), rows of group g
  // (4 lid.x + [0, 4), then 64 + 4 lid.x + [0, 4)).
  var acc: array<vec4<f32>, 16>;
  var wv: array<vec4<f32>, 2u * W_PER_THREAD>;
  var xv: array<vec4<f32>, X_PER_THREAD>;
  fetch(k_begin, li, row0, tok0, count, row_bytes, x_base, x_stride, &wv, &xv);
  for (var k0 = k_begin; k0 < k_end; k0 += K_CHUNK) {
    for (var s = 0u; s < W_PER_THREAD; s++) {
      let task = li + s * WG_SIZE;
      let r = task % TILE_ROWS;
      let kb = 8u * (task / TILE_ROWS);
      for (var i = 0u; i < 4u; i++) {
        w_tile[(kb + i) * ROW_VEC4 + r / 4u][r % 4u] = wv[2u * s][i];
        w_tile[(kb + 4u + i) * ROW_VEC4 + r / 4u][r % 4u] = wv[2u * s + 1u][i];
      }
    }
    for (var s = 0u; s < X_PER_THREAD; s++) {
      let task = li + s * WG_SIZE;
      let t = task % TILE_TOKENS;
      let kb = 4u * (task / TILE_TOKENS);
      for (var i = 0u; i < 4u; i++) {
        x_tile[(kb + i) * TOKEN_VEC4 + t / 4u][t % 4u] = xv[s][i];
      }
    }
    workgroupBarrier();
    if (k0 + K_CHUNK < k_end) {
      fetch(k0 + K_CHUNK, li, row0, tok0, count, row_bytes, x_base, x_stride, &wv, &xv);
    }
    for (var k = 0u; k < K_CHUNK; k++) {
      let wa = w_tile[k * ROW_VEC4 + lid.x];
      let wb = w_tile[k * ROW_VEC4 + WG_ROWS + lid.x];
      let xa = x_tile[k * TOKEN_VEC4 + lid.y];
      let xb = x_tile[k * TOKEN_VEC4 + WG_TOKENS + lid.y];
      for (var t = 0u; t < 4u; t++) {
        acc[2u * t] += wa * xa[t];
        acc[2u * t + 1u] += wb * xa[t];
        acc[8u + 2u * t] += wa * xb[t];
        acc[9u + 2u * t] += wb * xb[t];
      }
    }
    workgroupBarrier();
  }

  for (var t = 0u; t < 8u; t++) {
    let tok = tok0 + 4u * lid.y + (t % 4u) + 32u * (t / 4u);
    if (tok < count) {
      for (var g = 0u; g < 2u; g++) {
        let a = acc[2u * t + g];
        let r = row0 + 4u * lid.x + 64u * g;
        for (var c = 0u; c < 4u; c++) {
          if (r + c < params.rows) {
            y[y_base + tok * params.y_stride + r + c] = a[c];
          }
        }
      }
    }
  }
}
