// Input gradient of a linear layer for a block of tokens, through frozen weights kept in their
// GGUF byte layout (the backward of matmul.forward.wgsl):
//   dx[dx_offset + t * dx_stride + c] (+)= sum_r W[first_row + r, c] * dy[dy_offset + t * dy_stride + r]
// for c in [0, cols), t in [0, tokens.count), r in [0, rows). With `accumulate` set the sum is
// added to what dx holds: the residual stream sums the gradients of every branch that reads it,
// and a weight split into row tiles contributes one partial sum over its rows per tile.
//
// This is the op body; the pipeline appends weights/common.wgsl and one weights/<dtype>.wgsl,
// which supply W_BLOCK_VALUES, W_BLOCK_BYTES and w_decode8 (see common.wgsl).
//
// Work split: a workgroup computes a TILE_COLS x TILE_TOKENS tile of dx (workgroup_id.x over
// column tiles, .y over token tiles) and walks all rows in chunks of K_ROWS. Per chunk its threads
// decode the K_ROWS x TILE_COLS weight tile once into shared memory (one 8-value group each) and
// load the matching K_ROWS x TILE_TOKENS tile of dy, then each thread updates 4 consecutive
// columns (one vec4) for TOKENS_PER_THREAD tokens. Accumulation is f32.

const WG_COLS: u32 = 16u;            // threads along columns (each owns one vec4 of columns)
const WG_TOKENS: u32 = 16u;          // threads along tokens
const WG_SIZE: u32 = WG_COLS * WG_TOKENS;
const TOKENS_PER_THREAD: u32 = 2u;
const TILE_COLS: u32 = 64u;          // columns of dx per workgroup
const TILE_TOKENS: u32 = 32u;        // tokens of dx per workgroup
const K_ROWS: u32 = 16u;             // weight rows per step
const COL_VEC4: u32 = TILE_COLS / 4u;
const COL_GROUPS: u32 = TILE_COLS / 8u;
const DY_STRIDE: u32 = K_ROWS + 1u;  // f32s per shared dy row (one of padding)
const GROUPS_PER_BLOCK: u32 = W_BLOCK_VALUES / 8u;

const_assert TILE_COLS == WG_COLS * 4u;
const_assert TILE_TOKENS == WG_TOKENS * TOKENS_PER_THREAD;

struct Params {
  rows: u32,        // rows of W (outputs of the forward) summed over
  cols: u32,        // values per row (a multiple of 32 and of W_BLOCK_VALUES)
  first_row: u32,   // row of `weight` that dy's row 0 belongs to
  dy_offset: u32,   // elements
  dy_stride: u32,   // elements between tokens in dy
  dx_offset: u32,   // elements
  dx_stride: u32,   // elements between tokens in dx
  accumulate: u32,  // 1: dx += ..., 0: dx = ...
}

struct Tokens {
  count: u32,
}

@group(0) @binding(0) var<storage, read> weight: array<u32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;
@group(0) @binding(4) var<uniform> tokens: Tokens;

var<workgroup> w_tile: array<vec4<f32>, K_ROWS * COL_VEC4>;
var<workgroup> dy_tile: array<f32, TILE_TOKENS * DY_STRIDE>;

@compute @workgroup_size(WG_COLS, WG_TOKENS)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(local_invocation_id) lid: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let col0 = wid.x * TILE_COLS;
  let tok0 = wid.y * TILE_TOKENS;
  let count = tokens.count;
  let row_bytes = (params.cols / W_BLOCK_VALUES) * W_BLOCK_BYTES;

  var acc: array<vec4<f32>, TOKENS_PER_THREAD>;   // acc[j]: token lid.y + WG_TOKENS*j, columns 4*lid.x ..+4

  for (var r0 = 0u; r0 < params.rows; r0 += K_ROWS) {
    // Decode the weight tile: K_ROWS rows x COL_GROUPS groups of 8 columns.
    for (var task = li; task < K_ROWS * COL_GROUPS; task += WG_SIZE) {
      let r = task / COL_GROUPS;
      let gg = task % COL_GROUPS;
      let row = r0 + r;
      let c = col0 + 8u * gg;
      var v0 = vec4<f32>(0.0);
      var v1 = vec4<f32>(0.0);
      if (row < params.rows && c < params.cols) {
        let k = c / 8u;
        let w = w_decode8((params.first_row + row) * row_bytes + (k / GROUPS_PER_BLOCK) * W_BLOCK_BYTES, k % GROUPS_PER_BLOCK);
        v0 = w.scale * w.q0 + w.bias;
        v1 = w.scale * w.q1 + w.bias;
      }
      w_tile[r * COL_VEC4 + 2u * gg] = v0;
      w_tile[r * COL_VEC4 + 2u * gg + 1u] = v1;
    }
    // Load the dy tile: TILE_TOKENS tokens x K_ROWS rows.
    for (var task = li; task < TILE_TOKENS * K_ROWS; task += WG_SIZE) {
      let t = task / K_ROWS;
      let r = task % K_ROWS;
      let tok = tok0 + t;
      let row = r0 + r;
      var v = 0.0;
      if (tok < count && row < params.rows) {
        v = dy[params.dy_offset + tok * params.dy_stride + row];
      }
      dy_tile[t * DY_STRIDE + r] = v;
    }
    workgroupBarrier();
    for (var r = 0u; r < K_ROWS; r++) {
      let w = w_tile[r * COL_VEC4 + lid.x];
      for (var j = 0u; j < TOKENS_PER_THREAD; j++) {
        acc[j] += w * dy_tile[(lid.y + WG_TOKENS * j) * DY_STRIDE + r];
      }
    }
    workgroupBarrier();
  }

  for (var j = 0u; j < TOKENS_PER_THREAD; j++) {
    let tok = tok0 + lid.y + WG_TOKENS * j;
    if (tok < count) {
      for (var i = 0u; i < 4u; i++) {
        let c = col0 + 4u * lid.x + i;
        if (c < params.cols) {
          let at = params.dx_offset + tok * params.dx_stride + c;
          var v = acc[j][i];
          if (params.accumulate != 0u) {
            v += dx[at];
          }
          dx[at] = v;
        }
      }
    }
  }
}
