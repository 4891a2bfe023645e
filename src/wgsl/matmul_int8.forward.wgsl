// Matrix-matrix product for a block of tokens (prefill) in 8-bit integer arithmetic (WGSL's
// dot4I8Packed: four multiply-adds an instruction, about 1.75 times the f32 rate on an H200):
//   y[y_offset + t * y_stride + r] ≈ sum_c W[first_row + r, c] * x[x_offset + t * x_stride + c]
// with matmul_wide.forward.wgsl's bindings and parameters, so linear.ts binds it the same way,
// split K included. Tile: 128 rows x TILE_TOKENS (64 or 128) tokens.
//
// This is the op body; the pipeline puts a generated `const TILE_TOKENS: u32` before it and
// appends one weights/<dtype>_int8.wgsl (Q4_K; Q6_K after weights/common.wgsl), which supplies
// the weights' side (see "Snippet contract" below).
//
// x comes rounded to 8 bits by round_q8.forward.wgsl, in blocks of 32 columns (x ≈ dx * xq, as
// llama.cpp's q8_1): `x` here is its output, three vec4<u32> a block, and x_offset and x_stride
// count the original columns (multiples of 32). The weights are small integers as bytes with
// scales per 16 or 32 columns, so a block's share of a product is an integer dot product of 32
// bytes (8 dot4I8Packed) and a few float operations.
//
// Each K_CHUNK of 64 columns (two x blocks), threads 0..X_BLOCKS-1 each copy one 32-column block
// of one token, and 128 threads each decode one weight row of the tile (its 64 values as bytes,
// and its scales): threads 128..255 with 64 tokens, 0..127 with 128 (then all copy x). The next
// chunk is fetched into registers before the products of the current one, so its memory latency
// hides behind them. Then a thread (tx = li % 32, ty = li / 32) adds up rows tx + 32 i (i < 4) and
// tokens ty + 8 j (j < TILE_TOKENS / 8) from shared memory: a warp's lanes read consecutive rows
// (no bank conflicts) and one token (a broadcast). The 128-token tile decodes each weight once per
// 128 tokens instead of 64, for 20.5 KiB of shared memory instead of 15 (linear.ts picks it).
//
// Snippet contract (weights/<dtype>_int8.wgsl):
//   @group(0) @binding(0) weight     the weights' raw GGUF bytes, as array<u32> or array<vec4<u32>>
//   const W_BLOCK_VALUES: u32        values per block
//   struct WFetched                  what a row's thread fetches for one chunk
//   struct WScale                    a row's scales for one 32-column block of the chunk
//   var<workgroup> w_s               its scale tile
//   fn w_fetch(row, k0, blocks_per_row) -> WFetched     row: of the buffer; k0: first column of the chunk
//   fn w_store(f: WFetched, k0, r)   writes row r of the tile: w_q[k * TILE_ROWS + r] (k < 16: the
//                                    chunk's values 4k..4k+3 as signed bytes) and its scales
//   fn w_scale(b, r) -> WScale       row r's scales for block b (0, 1) of the chunk
//   fn w_dot(wa, wb, xa, xb, xs, s: WScale) -> f32
//       one block's share: wa, wb its 32 weight bytes, xa, xb its 32 x bytes, xs (dx, dx * sum xq)

const WG_SIZE: u32 = 256u;
const TILE_ROWS: u32 = 128u;           // rows of y per workgroup (4 a thread, 32 apart)
const K_CHUNK: u32 = 64u;              // columns per step: two x blocks
const ROWS_PER_THREAD: u32 = 4u;
const TOKENS_PER_THREAD: u32 = TILE_TOKENS / 8u;
const ROW_THREADS: u32 = TILE_ROWS / ROWS_PER_THREAD;    // 32: a warp along rows
const X_BLOCKS: u32 = TILE_TOKENS * (K_CHUNK / 32u);     // 32-column blocks of x a chunk

const_assert ROW_THREADS * (TILE_TOKENS / TOKENS_PER_THREAD) == WG_SIZE;
const_assert X_BLOCKS <= WG_SIZE && X_BLOCKS + TILE_ROWS >= WG_SIZE;

struct Params {
  rows: u32,
  cols: u32,
  first_row: u32,
  x_offset: u32,
  x_stride: u32,
  y_offset: u32,
  y_stride: u32,
  k_split: u32,       // columns per z (a multiple of K_CHUNK)
  split_stride: u32,  // elements of y between the parts of consecutive z
}

struct Tokens {
  count: u32,
}

@group(0) @binding(1) var<storage, read> x: array<vec4<u32>>;  // rounded blocks
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;
@group(0) @binding(4) var<uniform> tokens: Tokens;

var<workgroup> w_q: array<u32, K_CHUNK / 4u * TILE_ROWS>;        // [word of the chunk][row]: 4 signed bytes
var<workgroup> x_q: array<vec4<u32>, TILE_TOKENS * K_CHUNK / 16u>; // [token][vec4 of the chunk]: 16 values of -127..127
var<workgroup> x_s: array<vec2<f32>, TILE_TOKENS * 2u>;           // [token][block]: (dx, dx * sum xq)

// One rounded block of x: 32 bytes, then (dx, dx * sum xq) as bits.
struct XBlock {
  q0: vec4<u32>,
  q1: vec4<u32>,
  s: vec4<u32>,
}

// Block li % 2 of the chunk for token li / 2 of the tile (zeros past the token count).
fn x_fetch(k0: u32, li: u32, tok0: u32, count: u32) -> XBlock {
  var f: XBlock;
  let tok = tok0 + li / 2u;
  if (tok < count) {
    let at = 3u * ((params.x_offset + tok * params.x_stride + k0) / 32u + li % 2u);
    f = XBlock(x[at], x[at + 1u], x[at + 2u]);
  }
  return f;
}

fn x_store(f: XBlock, li: u32) {
  let t = li / 2u;
  let b = li % 2u;
  x_q[t * 4u + 2u * b] = f.q0;
  x_q[t * 4u + 2u * b + 1u] = f.q1;
  x_s[t * 2u + b] = bitcast<vec2<f32>>(f.s.xy);
}

@compute @workgroup_size(WG_SIZE)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let k_begin = wid.z * params.k_split;
  let k_end = min(params.cols, k_begin + params.k_split);
  let y_base = params.y_offset + wid.z * params.split_stride;
  let row0 = wid.x * TILE_ROWS;
  let tok0 = wid.y * TILE_TOKENS;
  let count = tokens.count;
  let blocks_per_row = params.cols / W_BLOCK_VALUES;
  let tx = li % ROW_THREADS;
  let ty = li / ROW_THREADS;
  // Thread li copies x block li (li < X_BLOCKS) and decodes weight row w_row of the tile (w_row <
  // TILE_ROWS; none past the matrix).
  let w_row = (li + X_BLOCKS) % WG_SIZE;
  let stores_w = w_row < TILE_ROWS;
  let fetches_w = stores_w && row0 + w_row < params.rows;
  let copies_x = li < X_BLOCKS;

  // acc[i * TOKENS_PER_THREAD + j]: row tx + 32 i, token ty + 8 j.
  var acc: array<f32, ROWS_PER_THREAD * TOKENS_PER_THREAD>;
  var wf: WFetched;
  var xv: XBlock;
  if (fetches_w) {
    wf = w_fetch(params.first_row + row0 + w_row, k_begin, blocks_per_row);
  }
  if (copies_x) {
    xv = x_fetch(k_begin, li, tok0, count);
  }
  for (var k0 = k_begin; k0 < k_end; k0 += K_CHUNK) {
    if (stores_w) {
      w_store(wf, k0, w_row);  // zeros (from wf's zero start) past the matrix
    }
    if (copies_x) {
      x_store(xv, li);
    }
    workgroupBarrier();
    if (k0 + K_CHUNK < k_end) {
      if (fetches_w) {
        wf = w_fetch(params.first_row + row0 + w_row, k0 + K_CHUNK, blocks_per_row);
      }
      if (copies_x) {
        xv = x_fetch(k0 + K_CHUNK, li, tok0, count);
      }
    }
    for (var b = 0u; b < 2u; b++) {
      var wq: array<vec4<u32>, 2u * ROWS_PER_THREAD>;
      var ws: array<WScale, ROWS_PER_THREAD>;
      for (var i = 0u; i < ROWS_PER_THREAD; i++) {
        let r = tx + ROW_THREADS * i;
        let at = b * 8u * TILE_ROWS + r;
        wq[2u * i] = vec4<u32>(w_q[at], w_q[at + TILE_ROWS], w_q[at + 2u * TILE_ROWS], w_q[at + 3u * TILE_ROWS]);
        wq[2u * i + 1u] = vec4<u32>(w_q[at + 4u * TILE_ROWS], w_q[at + 5u * TILE_ROWS], w_q[at + 6u * TILE_ROWS], w_q[at + 7u * TILE_ROWS]);
        ws[i] = w_scale(b, r);
      }
      for (var j = 0u; j < TOKENS_PER_THREAD; j++) {
        let t = ty + 8u * j;
        let xa = x_q[t * 4u + 2u * b];
        let xb = x_q[t * 4u + 2u * b + 1u];
        let xs = x_s[t * 2u + b];
        for (var i = 0u; i < ROWS_PER_THREAD; i++) {
          acc[i * TOKENS_PER_THREAD + j] += w_dot(wq[2u * i], wq[2u * i + 1u], xa, xb, xs, ws[i]);
        }
      }
    }
    workgroupBarrier();
  }

  for (var j = 0u; j < TOKENS_PER_THREAD; j++) {
    let tok = tok0 + ty + 8u * j;
    if (tok < count) {
      for (var i = 0u; i < ROWS_PER_THREAD; i++) {
        let r = row0 + tx + ROW_THREADS * i;
        if (r < params.rows) {
          y[y_base + tok * params.y_stride + r] = acc[i * TOKENS_PER_THREAD + j];
        }
      }
    }
  }
}

// The integer dot product of 32 weight bytes with 32 x bytes.
fn dot32(wa: vec4<u32>, wb: vec4<u32>, xa: vec4<u32>, xb: vec4<u32>) -> i32 {
  return dot4I8Packed(wa.x, xa.x) + dot4I8Packed(wa.y, xa.y) + dot4I8Packed(wa.z, xa.z) + dot4I8Packed(wa.w, xa.w)
    + dot4I8Packed(wb.x, xb.x) + dot4I8Packed(wb.y, xb.y) + dot4I8Packed(wb.z, xb.z) + dot4I8Packed(wb.w, xb.w);
}
