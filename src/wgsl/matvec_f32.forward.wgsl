// y[r] = sum_c W[r, c] * x[c] for an f32 matrix stored row-major (GGUF ne = [cols, rows]).
// One workgroup per row: each thread sums a strided slice, then a shared-memory tree reduction.

const WORKGROUP_SIZE: u32 = 64u;

struct Params {
  rows: u32,
  cols: u32,
}

@group(0) @binding(0) var<storage, read> weight: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

var<workgroup> partial: array<f32, WORKGROUP_SIZE>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
  let row = group.x;
  let base = row * params.cols;
  var sum = 0.0;
  for (var c = lane; c < params.cols; c += WORKGROUP_SIZE) {
    sum += weight[base + c] * x[c];
  }
  partial[lane] = sum;
  workgroupBarrier();
  for (var stride = WORKGROUP_SIZE / 2u; stride > 0u; stride /= 2u) {
    if (lane < stride) {
      partial[lane] += partial[lane + stride];
    }
    workgroupBarrier();
  }
  if (lane == 0u && row < params.rows) {
    y[row] = partial[0];
  }
}
