// The lane sum of the matvec kernels (matvec.forward.wgsl, matvec_multi.forward.wgsl) without
// subgroups: every thread's two partial sums go to shared memory and a tree over each row's
// LANES_PER_ROW lanes adds them up; every thread gets its row's totals. Call from uniform control
// flow (it has barriers). The kernel declares LANES_PER_ROW and WG_SIZE.

var<workgroup> lane_partial: array<vec2<f32>, WG_SIZE>;

fn lanes_sum2(acc: vec2<f32>, li: u32) -> vec2<f32> {
  let lane = li % LANES_PER_ROW;
  lane_partial[li] = acc;
  workgroupBarrier();
  for (var stride = LANES_PER_ROW / 2u; stride > 0u; stride >>= 1u) {
    if (lane < stride) {
      lane_partial[li] += lane_partial[li + stride];
    }
    workgroupBarrier();
  }
  return lane_partial[li - lane];
}
