// Matrix-vector products of one token over Q4_K weights (decode), 32 values a step:
//   SPLIT (MODE 0):  y_s[y_offset_s + r] = epilogue(sum_c W_s[first_row + r, c] * x[x_offset + c])
//                    for s < 3 weights (epilogue and first_row: single weight only, see gelu.wgsl)
//   GELU  (MODE 1):  y_0[y_offset_0 + r] = gelu_tanh(W_0[r] . x) * (W_1[r] . x)
// The same products as matvec.forward.wgsl / matvec_multi.forward.wgsl over weights/q4_k.wgsl,
// summed in another order (rounding only), and measured 1.4–2x faster on an H100 (bench/micro.ts):
// those decode 8 values per step, each time re-reading the block's scales.
//
// A Q4_K block (144 bytes, 256 values) is nine 16-byte words: the header {f16 d, f16 dmin,
// 12 scale bytes}, then 8 chunks of 16 qs bytes. Chunk c holds the low nibbles of values
// 64(c>>1) + 16(c&1) + [0, 16) (sub-block 2(c>>1)) and the high nibbles of the same positions + 32
// (the next sub-block). A lane takes one chunk a step (two 16-byte loads: header and chunk), its
// 32 values with the two sub-blocks' scales decoded once; LANES_PER_ROW lanes walk a row's chunks
// (neighbouring lanes read neighbouring chunks), then lanes_sum2 (matvec_reduce*.wgsl) sums them.
// Rows must start on 16-byte boundaries, which Q4_K rows do (144-byte blocks).
//
// Workgroups are numbered x-fastest over a 2-D dispatch; in SPLIT mode through the outputs in
// turn (workgroups [first_wg_s, first_wg_{s+1}) compute y_s), so a workgroup's weight is uniform.
//
// The input comes from one of two parts appended by linear.ts: matvec_input.forward.wgsl reads x as
// it is; matvec_input_norm.forward.wgsl forms it in shared memory from a residual stream and block
// outputs through their RMS norms (the norm dispatches of a decode step folded into this one).
// Both define prepare_input(li, g), called first from uniform control flow, and input(i), the
// i-th vec4 of the input; and the third weight's bindings with load(s, i) and store2(r, v), which
// the input-forming part leaves out (it serves one or two weights, so a device with 10 storage
// buffers a stage takes it).

override LANES_PER_ROW: u32 = 16u;
override MODE: u32 = 0u;
const WG_SIZE: u32 = 256u;
override ROWS: u32 = WG_SIZE / LANES_PER_ROW;

struct Params {
  cols: u32,        // values per row, a multiple of 256
  x_offset: u32,    // elements, a multiple of 4
  first_row: u32,   // row of W_0 that is output row 0 (one weight)
  epilogue: u32,    // see gelu.wgsl (one weight)
  rows0: u32,
  rows1: u32,
  rows2: u32,
  aux_offset: u32,  // elements (epilogue 1, 2)
  y_offset0: u32,
  y_offset1: u32,
  y_offset2: u32,
  first_wg1: u32,   // SPLIT: first workgroup of output 1 (2)
  first_wg2: u32,
  eps: f32,         // matvec_input_norm: the RMS norms' epsilon
  norm0: u32,       // matvec_input_norm: vec4 offsets into `norms` of the term and final norm weights
  norm1: u32,
  norm2: u32,
  scale: f32,       // matvec_input_norm: the residual sum's factor
}

@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<uniform> params: Params;
@group(0) @binding(2) var<storage, read_write> y0: array<f32>;
@group(0) @binding(3) var<storage, read_write> y1: array<f32>;
@group(0) @binding(5) var<storage, read> aux: array<f32>;
@group(0) @binding(6) var<storage, read> w0: array<vec4<u32>>;
@group(0) @binding(7) var<storage, read> w1: array<vec4<u32>>;

// The nibbles at bit `shift` of each byte of `w`.
fn nibbles(w: u32, shift: u32) -> vec4<f32> {
  return vec4<f32>((vec4<u32>(w) >> vec4<u32>(shift, shift + 8u, shift + 16u, shift + 24u)) & vec4<u32>(15u));
}

// (d*sc, dmin*m) of sub-blocks j = 2p and j + 1 from the block header (ggml's get_scale_min_k4 on
// the four bytes of each header word at once: words 1..3 are scale bytes 0..3, 4..7, 8..11).
fn pair_scales(h: vec4<u32>, p: u32) -> vec4<f32> {
  let dm = unpack2x16float(h.x);
  let hi = p >= 2u;
  let sc = select(h.y & 0x3f3f3f3fu, (h.w & 0x0f0f0f0fu) | ((h.y >> 2u) & 0x30303030u), hi);
  let mn = select(h.z & 0x3f3f3f3fu, ((h.w >> 4u) & 0x0f0f0f0fu) | ((h.z >> 2u) & 0x30303030u), hi);
  let s = (p & 1u) * 16u;
  return vec4<f32>(
    dm.x * f32((sc >> s) & 255u), dm.y * f32((mn >> s) & 255u),
    dm.x * f32((sc >> (s + 8u)) & 255u), dm.y * f32((mn >> (s + 8u)) & 255u),
  );
}

// Chunk k of a row (header h, qs words q) times x.
fn chunk_dot(h: vec4<u32>, q: vec4<u32>, k: u32) -> f32 {
  let c = k & 7u;
  let sm = pair_scales(h, c >> 1u);
  let xb = (k >> 3u) * 64u + 16u * (c >> 1u) + 4u * (c & 1u);
  var lo = 0.0;
  var hi = 0.0;
  var sum_lo = vec4<f32>(0.0);
  var sum_hi = vec4<f32>(0.0);
  for (var i = 0u; i < 4u; i++) {
    let xl = input(xb + i);
    let xh = input(xb + 8u + i);
    lo += dot(nibbles(q[i], 0u), xl);
    hi += dot(nibbles(q[i], 4u), xh);
    sum_lo += xl;
    sum_hi += xh;
  }
  let one = vec4<f32>(1.0);
  return sm.x * lo - sm.y * dot(sum_lo, one) + sm.z * hi - sm.w * dot(sum_hi, one);
}

@compute @workgroup_size(WG_SIZE)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let g = wid.x + wid.y * nwg.x;
  prepare_input(li, g);
  var seg = 0u;
  var first = 0u;
  var rows = params.rows0;
  if (MODE == 0u) {
    if (g >= params.first_wg2) {
      seg = 2u;
      first = params.first_wg2;
      rows = params.rows2;
    } else if (g >= params.first_wg1) {
      seg = 1u;
      first = params.first_wg1;
      rows = params.rows1;
    }
  }
  let lane = li % LANES_PER_ROW;
  let row = (g - first) * ROWS + li / LANES_PER_ROW;
  let chunks = params.cols / 32u;
  var acc = vec2<f32>(0.0);
  if (row < rows) {
    let base = (select(0u, params.first_row, seg == 0u) + row) * (chunks / 8u) * 9u;
    for (var k = lane; k < chunks; k += LANES_PER_ROW) {
      let v = base + (k >> 3u) * 9u;
      let q = v + 1u + (k & 7u);
      if (MODE == 1u) {
        acc += vec2<f32>(chunk_dot(w0[v], w0[q], k), chunk_dot(w1[v], w1[q], k));
      } else {
        acc.x += chunk_dot(load(seg, v), load(seg, q), k);
      }
    }
  }
  let total = lanes_sum2(acc, li);
  if (lane == 0u && row < rows) {
    if (MODE == 1u) {
      y0[params.y_offset0 + row] = gelu_tanh(total.x) * total.y;
    } else if (seg == 0u) {
      y0[params.y_offset0 + row] = matvec_epilogue(total.x, row);
    } else if (seg == 1u) {
      y1[params.y_offset1 + row] = total.x;
    } else {
      store2(row, total.x);
    }
  }
}
