// Matrix-vector product for one token over short rows: y[y_offset + r] = sum_c W[first_row + r, c] * x[x_offset + c],
// one thread per row and no workgroup barriers. Same bindings and Params as matvec.forward.wgsl.
//
// For rows of at most a few hundred values (the tied output matrix of a small model has 262,144
// of them) a whole workgroup per 8 rows wastes most lanes and pays for a barrier tree per row
// group; software rasterisers (SwiftShader) pay dearly for barriers. Here each thread walks its
// row's 8-value groups alone.

const WG_SIZE: u32 = 64u;
const GROUPS_PER_BLOCK: u32 = W_BLOCK_VALUES / 8u;

struct Params {
  rows: u32,
  cols: u32,
  first_row: u32,
  x_offset: u32,    // elements, a multiple of 4
  y_offset: u32,
  aux_offset: u32,
  epilogue: u32,
}

@group(0) @binding(0) var<storage, read> weight: array<u32>;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;
@group(0) @binding(4) var<storage, read> aux: array<f32>;

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
  let row = (wid.x + wid.y * nwg.x) * WG_SIZE + lane;
  if (row >= params.rows) {
    return;
  }
  let groups = params.cols / 8u;
  let row_byte = (params.first_row + row) * (params.cols / W_BLOCK_VALUES) * W_BLOCK_BYTES;
  let xv = params.x_offset / 4u;
  var acc = 0.0;
  for (var k = 0u; k < groups; k++) {
    let w = w_decode8(row_byte + (k / GROUPS_PER_BLOCK) * W_BLOCK_BYTES, k % GROUPS_PER_BLOCK);
    let x0 = x[xv + 2u * k];
    let x1 = x[xv + 2u * k + 1u];
    acc += w.scale * (dot(w.q0, x0) + dot(w.q1, x1)) + w.bias * dot(x0 + x1, vec4<f32>(1.0));
  }
  y[params.y_offset + row] = matvec_epilogue(acc, row);
}
