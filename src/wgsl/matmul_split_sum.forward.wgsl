// The second half of a split-K matmul (matmul_wide.forward.wgsl with several z): adds up the
// partial products of the K splits, in split order,
//   y[y_offset + t * y_stride + r] = sum_s parts[s * split_stride + t * rows + r]
// for r < rows and t < tokens.count. One thread per output; a workgroup row of 256 outputs of
// one token (neighbouring threads read and write neighbouring values).

const WG_SIZE: u32 = 256u;  // outputs a workgroup (linear.ts reads this)

struct Params {
  rows: u32,
  y_offset: u32,      // elements
  y_stride: u32,      // elements between tokens in y
  splits: u32,
  split_stride: u32,  // elements between consecutive splits' parts
}

struct Tokens {
  count: u32,
}

@group(0) @binding(0) var<storage, read> parts: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;
@group(0) @binding(3) var<uniform> tokens: Tokens;

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let r = gid.x;
  let t = gid.y;
  if (r >= params.rows || t >= tokens.count) {
    return;
  }
  var sum = 0.0;
  for (var s = 0u; s < params.splits; s++) {
    sum += parts[s * params.split_stride + t * params.rows + r];
  }
  y[params.y_offset + t * params.y_stride + r] = sum;
}
