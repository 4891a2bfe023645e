// Several matrix-vector products of one token over the same input in one dispatch (decode):
//   SPLIT (MODE 0):  y_s[y_offset_s + r] = sum_c W_s[r, c] * x[x_offset + c]   for s < N_W, r < rows_s
//                    (a layer's q, k and v projections)
//   GELU  (MODE 1):  y_0[y_offset_0 + r] = gelu_tanh(W_0[r] . x) * (W_1[r] . x)  for r < rows_0
//                    (an MLP's gate and up projections and their GELU product)
// Each W_s is its own buffer of raw GGUF bytes in its own dtype. The parts generated before this
// file (linear.ts) bind weight0..weight{N_W-1} and give, for each, the decoders of
// weights/common.wgsl + weights/<dtype>.wgsl with their names suffixed (w0_decode8, W0_BLOCK_VALUES,
// weight0, ...) and `fn row_dot_s(row, lane) -> f32`, lane `lane`'s share of W_s[row] . x, striding
// the 8-value groups of the row by LANES_PER_ROW as matvec.forward.wgsl does, two groups per step
// (their loads in flight together); `fn row_dot(s, row, lane)` choosing among them; and
// `fn row_dot_pair(row, lane) -> vec2<f32>`, the shares of W_0[row] . x and W_1[row] . x from one
// loop (GELU mode). f32 throughout; the sums are grouped differently from matvec.forward.wgsl's
// (rounding only).
//
// Work split as matvec.forward.wgsl: ROWS rows of LANES_PER_ROW lanes per workgroup of WG_SIZE,
// lanes_sum2 over a row's lanes (both sums of the GELU mode at once). In SPLIT mode the
// workgroups are numbered through the outputs in turn (workgroups [first_wg_s, first_wg_{s+1}) compute y_s), so a workgroup's output
// is uniform and its barriers are too.

override LANES_PER_ROW: u32 = 32u;
override MODE: u32 = 0u;
const WG_SIZE: u32 = 256u;
override ROWS: u32 = WG_SIZE / LANES_PER_ROW;

struct Params {
  cols: u32,        // values per row (a multiple of 32 and of every dtype's block)
  x_offset: u32,    // elements, a multiple of 4
  rows0: u32,
  rows1: u32,
  rows2: u32,
  y_offset0: u32,
  y_offset1: u32,
  y_offset2: u32,
  first_wg1: u32,   // SPLIT: first workgroup of output 1 (2)
  first_wg2: u32,
}

@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<uniform> params: Params;
@group(0) @binding(2) var<storage, read_write> y0: array<f32>;
@group(0) @binding(3) var<storage, read_write> y1: array<f32>;
@group(0) @binding(4) var<storage, read_write> y2: array<f32>;

// As gelu.wgsl (the same expression, so the same bits as the elementwise pass and the epilogue).
fn gelu_tanh(x: f32) -> f32 {
  let u2 = 1.5957691216057308 * (x + 0.044715 * x * x * x);  // 2u
  return x / (1.0 + exp(-clamp(u2, -80.0, 80.0)));
}

fn x_pair(k: u32) -> array<vec4<f32>, 2> {
  let xv = params.x_offset / 4u;
  return array<vec4<f32>, 2>(x[xv + 2u * k], x[xv + 2u * k + 1u]);
}

@compute @workgroup_size(WG_SIZE)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let lid = vec2<u32>(li % LANES_PER_ROW, li / LANES_PER_ROW);
  let g = wid.x + wid.y * nwg.x;
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
  let row = (g - first) * ROWS + lid.y;
  var acc = 0.0;
  var acc2 = 0.0;
  if (row < rows) {
    if (MODE == 1u) {
      let pair = row_dot_pair(row, lid.x);
      acc = pair.x;
      acc2 = pair.y;
    } else {
      acc = row_dot(seg, row, lid.x);
    }
  }
  let total = lanes_sum2(vec2<f32>(acc, acc2), li);
  if (lid.x == 0u && row < rows) {
    if (MODE == 1u) {
      y0[params.y_offset0 + row] = gelu_tanh(total.x) * total.y;
    } else if (seg == 0u) {
      y0[params.y_offset0 + row] = total.x;
    } else if (seg == 1u) {
      y1[params.y_offset1 + row] = total.x;
    } else {
      y2[params.y_offset2 + row] = total.x;
    }
  }
}
