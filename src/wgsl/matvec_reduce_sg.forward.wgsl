enable subgroups;
diagnostic(off, subgroup_uniformity);
// The lane sum of the matvec kernels with subgroups (first part of the shader: it holds the
// `enable`): subgroupAdd sums each subgroup, one barrier publishes the subgroup sums, and each
// thread adds the LANES_PER_ROW / S sums of its row. Needs subgroups of S <= LANES_PER_ROW lanes
// (a power of two) laid out as consecutive local_invocation_index ranges; linear.ts checks both on
// the device with a probe kernel before choosing this part. The sum order differs from the shared-
// memory tree (rounding only).

var<workgroup> sg_partial: array<vec2<f32>, WG_SIZE>;

fn lanes_sum2(acc: vec2<f32>, li: u32) -> vec2<f32> {
  let s = subgroupAdd(acc);
  let size = subgroupAdd(1u);
  if (li % size == 0u) {
    sg_partial[li / size] = s;
  }
  workgroupBarrier();
  let per_row = LANES_PER_ROW / size;
  let first = (li / LANES_PER_ROW) * per_row;
  var total = sg_partial[first];
  for (var i = 1u; i < per_row; i++) {
    total += sg_partial[first + i];
  }
  return total;
}
