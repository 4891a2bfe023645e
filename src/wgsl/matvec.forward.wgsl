// Matrix-vector product for one token (decode): y[y_offset + r] = sum_c W[first_row + r, c] * x[x_offset + c]
// for r in [0, rows), with W kept in its GGUF byte layout.
//
// This is the op body; the pipeline puts matvec_bindings.wgsl (Params and bindings, shared with
// matvec_q6k.forward.wgsl) in front and appends weights/common.wgsl and one weights/<dtype>.wgsl,
// which supply W_BLOCK_VALUES, W_BLOCK_BYTES and w_decode8 (see common.wgsl).
//
// Layout:
//   weight  raw GGUF bytes as u32 words; row r (of the buffer) starts at byte r * cols / W_BLOCK_VALUES * W_BLOCK_BYTES
//   x       f32 activations, read as vec4 (x_offset is a multiple of 4 elements; cols of 32)
//   y       f32 outputs; y_offset lets a row tile of a large matrix write its slice of a shared y
//
// Epilogue (params.epilogue, see gelu.wgsl; a uniform, not an override, so that no extra
// pipelines are compiled): 0 y = acc; 1 y = gelu_tanh(aux[aux_offset + r]) * acc (the
// up projection times the activated gate: gate, up and the GELU product of an MLP in two
// dispatches instead of three); 2 y = gelu_tanh(acc) * aux[aux_offset + r] (Gemma 4's per-layer
// input gate times its per-layer input).
//
// Work split: a workgroup of WG_SIZE threads computes ROWS_PER_WG = WG_SIZE / LANES_PER_ROW rows
// (LANES_PER_ROW = 32 by default; 128 for long rows, so a short, wide matrix still spreads over
// enough workgroups and each thread's loop stays short). The
// lanes of a row walk its 8-value groups with stride LANES_PER_ROW (neighbouring lanes read
// neighbouring bytes), two groups per step (their loads in flight together), each accumulating scale * dot(q, x) + bias * sum(x) in f32; lanes_sum2
// (matvec_reduce.forward.wgsl: a shared-memory tree, or matvec_reduce_sg.forward.wgsl: subgroupAdd
// where the device has subgroups) then sums the lanes. Workgroups are numbered x-fastest over a 2-D dispatch, so more
// than 65,535 of them fit; extra threads (rows past `rows`) take part in the barriers only.

override LANES_PER_ROW: u32 = 32u;
const WG_SIZE: u32 = 256u;
const ROWS_PER_WG: u32 = 8u;          // with the default LANES_PER_ROW (linear.ts reads this)
override ROWS: u32 = WG_SIZE / LANES_PER_ROW;
const GROUPS_PER_BLOCK: u32 = W_BLOCK_VALUES / 8u;

// Params, weight, x, y and aux: matvec_bindings.wgsl, which linear.ts puts in front of this body.

// Group k (8 values) of the row starting at byte row_byte, times x.
fn group_dot(row_byte: u32, k: u32) -> f32 {
  let w = w_decode8(row_byte + (k / GROUPS_PER_BLOCK) * W_BLOCK_BYTES, k % GROUPS_PER_BLOCK);
  let xv = params.x_offset / 4u;
  let x0 = x[xv + 2u * k];
  let x1 = x[xv + 2u * k + 1u];
  return w.scale * (dot(w.q0, x0) + dot(w.q1, x1)) + w.bias * dot(x0 + x1, vec4<f32>(1.0));
}

@compute @workgroup_size(WG_SIZE)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let lid = vec2<u32>(li % LANES_PER_ROW, li / LANES_PER_ROW);
  let row = (wid.x + wid.y * nwg.x) * ROWS + lid.y;
  var acc = 0.0;
  if (row < params.rows) {
    let groups = params.cols / 8u;
    let row_byte = (params.first_row + row) * (params.cols / W_BLOCK_VALUES) * W_BLOCK_BYTES;
    // Two groups per step, so that their loads are in flight together.
    var acc_b = 0.0;
    var k = lid.x;
    for (; k + LANES_PER_ROW < groups; k += 2u * LANES_PER_ROW) {
      acc += group_dot(row_byte, k);
      acc_b += group_dot(row_byte, k + LANES_PER_ROW);
    }
    if (k < groups) {
      acc += group_dot(row_byte, k);
    }
    acc += acc_b;
  }
  let total = lanes_sum2(vec2<f32>(acc, 0.0), li).x;
  if (lid.x == 0u && row < params.rows) {
    y[params.y_offset + row] = matvec_epilogue(total, row);
  }
}
