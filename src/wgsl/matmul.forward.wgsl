// Matrix-matrix product for a block of tokens (prefill):
//   y[y_offset + t * y_stride + r] = sum_c W[first_row + r, c] * x[x_offset + t * x_stride + c]
// for r in [0, rows), t in [0, tokens.count), with W kept in its GGUF byte layout.
//
// This is the op body; the pipeline appends weights/common.wgsl and one weights/<dtype>.wgsl,
// which supply W_BLOCK_VALUES, W_BLOCK_BYTES and w_decode8 (see common.wgsl).
//
// Layout:
//   weight  raw GGUF bytes as u32 words; row r (of the buffer) starts at byte r * cols / W_BLOCK_VALUES * W_BLOCK_BYTES
//   x       f32 [T, x_stride] token-major activations read as vec4 (x_offset, x_stride multiples of 4)
//   y       f32 [T, y_stride] token-major outputs; y_offset/y_stride let a row tile write its columns
//   tokens  the token count T of this call, bound with a dynamic offset into a table of counts, so
//           one bind group serves every T up to the one it was built for
//
// Tile: 64 rows x 32 tokens, 256 threads of 4 x 2 outputs, K steps of 32 columns: the narrow
// tile, for matrices of few rows, which need many workgroups to fill a GPU. Matrices of many rows
// take matmul_wide.forward.wgsl (128 x 64, 8 x 8 outputs a thread; see linear.ts, MatMulTile).
//
// Work split: a workgroup computes a TILE_ROWS x TILE_TOKENS tile of y (workgroup_id.x over row
// tiles, .y over token tiles). For each K_CHUNK columns, its threads decode the weight tile once
// into shared memory (one 8-value group each) and load the x tile, then every thread updates its
// ROWS_PER_THREAD x TOKENS_PER_THREAD accumulators (rows lid.x + WG_ROWS * i, tokens lid.y +
// WG_TOKENS * j) from shared memory. So each weight block is decoded once per tile of tokens.
// The next chunk's weights and activations are fetched into registers before the products of
// the current one, so their memory latency hides behind that arithmetic.
// Rows of the shared tiles are padded by one vec4 so that threads reading different rows hit
// different banks. Accumulation is f32.

const WG_ROWS: u32 = 16u;            // threads along rows
const WG_TOKENS: u32 = 16u;          // threads along tokens
const WG_SIZE: u32 = WG_ROWS * WG_TOKENS;
const ROWS_PER_THREAD: u32 = 4u;
const TOKENS_PER_THREAD: u32 = 2u;   // 8 accumulators a thread: 6 shared loads per 32 FMAs
const TILE_ROWS: u32 = 64u;          // rows of y per workgroup
const TILE_TOKENS: u32 = 32u;        // tokens of y per workgroup
const K_CHUNK: u32 = 32u;            // columns per step (both tiles fit 16 KiB of shared memory)
const K_VEC4: u32 = K_CHUNK / 4u;
const TILE_STRIDE: u32 = K_VEC4 + 1u; // vec4s per shared-tile row (one of padding)
const GROUPS_PER_BLOCK: u32 = W_BLOCK_VALUES / 8u;
const W_TASKS: u32 = TILE_ROWS * (K_CHUNK / 8u);       // 8-value weight groups per chunk
const X_TASKS: u32 = TILE_TOKENS * K_VEC4;             // activation vec4s per chunk
const W_PER_THREAD: u32 = W_TASKS / WG_SIZE;
const X_PER_THREAD: u32 = X_TASKS / WG_SIZE;

const_assert TILE_ROWS == WG_ROWS * ROWS_PER_THREAD;
const_assert TILE_TOKENS == WG_TOKENS * TOKENS_PER_THREAD;
const_assert ROWS_PER_THREAD == 4u; // the accumulators hold one vec4 of rows per token
const_assert W_TASKS % WG_SIZE == 0u; // every thread takes the same number of tasks
const_assert X_TASKS % WG_SIZE == 0u;

struct Params {
  rows: u32,        // rows to compute
  cols: u32,        // values per row (a multiple of 32 and of W_BLOCK_VALUES)
  first_row: u32,   // row of `weight` that is output row 0
  x_offset: u32,    // elements, a multiple of 4
  x_stride: u32,    // elements between tokens in x, a multiple of 4
  y_offset: u32,    // elements
  y_stride: u32,    // elements between tokens in y
}

struct Tokens {
  count: u32,
}

@group(0) @binding(0) var<storage, read> weight: array<u32>;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;
@group(0) @binding(4) var<uniform> tokens: Tokens;

var<workgroup> w_tile: array<vec4<f32>, TILE_ROWS * TILE_STRIDE>;
var<workgroup> x_tile: array<vec4<f32>, TILE_TOKENS * TILE_STRIDE>;

// Fetches this thread's share of chunk k0: weight groups decoded to values (rows past the
// matrix give 0) and x vec4s (tokens past the count give 0).
fn fetch(
  k0: u32, li: u32, row0: u32, tok0: u32, count: u32, row_bytes: u32, x_base: u32, x_stride: u32,
  wv: ptr<function, array<vec4<f32>, 2u * W_PER_THREAD>>, xv: ptr<function, array<vec4<f32>, X_PER_THREAD>>,
) {
  for (var s = 0u; s < W_PER_THREAD; s++) {
    let task = li + s * WG_SIZE;
    let row = row0 + task / (K_CHUNK / 8u);
    var v0 = vec4<f32>(0.0);
    var v1 = vec4<f32>(0.0);
    if (row < params.rows) {
      let k = k0 / 8u + task % (K_CHUNK / 8u);
      let w = w_decode8((params.first_row + row) * row_bytes + (k / GROUPS_PER_BLOCK) * W_BLOCK_BYTES, k % GROUPS_PER_BLOCK);
      v0 = w.scale * w.q0 + w.bias;
      v1 = w.scale * w.q1 + w.bias;
    }
    (*wv)[2u * s] = v0;
    (*wv)[2u * s + 1u] = v1;
  }
  for (var s = 0u; s < X_PER_THREAD; s++) {
    let task = li + s * WG_SIZE;
    let tok = tok0 + task / K_VEC4;
    var v = vec4<f32>(0.0);
    if (tok < count) {
      v = x[x_base + tok * x_stride + k0 / 4u + task % K_VEC4];
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
  let row0 = wid.x * TILE_ROWS;
  let tok0 = wid.y * TILE_TOKENS;
  let count = tokens.count;
  let row_bytes = (params.cols / W_BLOCK_VALUES) * W_BLOCK_BYTES;
  let x_base = params.x_offset / 4u;
  let x_stride = params.x_stride / 4u;

  var acc: array<vec4<f32>, TOKENS_PER_THREAD>;   // acc[j][i]: token lid.y + WG_TOKENS*j, row lid.x + WG_ROWS*i

  // This thread's share of a chunk, fetched a chunk ahead: decoded weight groups and x vec4s.
  var wv: array<vec4<f32>, 2u * W_PER_THREAD>;
  var xv: array<vec4<f32>, X_PER_THREAD>;
  fetch(0u, li, row0, tok0, count, row_bytes, x_base, x_stride, &wv, &xv);
  for (var k0 = 0u; k0 < params.cols; k0 += K_CHUNK) {
    for (var s = 0u; s < W_PER_THREAD; s++) {
      let task = li + s * WG_SIZE;
      let r = task / (K_CHUNK / 8u);
      let gg = task % (K_CHUNK / 8u);
      w_tile[r * TILE_STRIDE + 2u * gg] = wv[2u * s];
      w_tile[r * TILE_STRIDE + 2u * gg + 1u] = wv[2u * s + 1u];
    }
    for (var s = 0u; s < X_PER_THREAD; s++) {
      let task = li + s * WG_SIZE;
      x_tile[(task / K_VEC4) * TILE_STRIDE + task % K_VEC4] = xv[s];
    }
    workgroupBarrier();
    if (k0 + K_CHUNK < params.cols) {
      fetch(k0 + K_CHUNK, li, row0, tok0, count, row_bytes, x_base, x_stride, &wv, &xv);
    }
    for (var kv = 0u; kv < K_VEC4; kv++) {
      var w: array<vec4<f32>, ROWS_PER_THREAD>;
      for (var i = 0u; i < ROWS_PER_THREAD; i++) {
        w[i] = w_tile[(lid.x + WG_ROWS * i) * TILE_STRIDE + kv];
      }
      for (var j = 0u; j < TOKENS_PER_THREAD; j++) {
        let xk = x_tile[(lid.y + WG_TOKENS * j) * TILE_STRIDE + kv];
        acc[j] += vec4<f32>(dot(w[0], xk), dot(w[1], xk), dot(w[2], xk), dot(w[3], xk));
      }
    }
    workgroupBarrier();
  }

  for (var j = 0u; j < TOKENS_PER_THREAD; j++) {
    let tok = tok0 + lid.y + WG_TOKENS * j;
    if (tok < count) {
      for (var i = 0u; i < ROWS_PER_THREAD; i++) {
        let row = row0 + lid.x + WG_ROWS * i;
        if (row < params.rows) {
          y[params.y_offset + tok * params.y_stride + row] = acc[j][i];
        }
      }
    }
  }
}
