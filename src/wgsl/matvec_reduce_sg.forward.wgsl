enable subgroups;
diagnostic(off, subgroup_uniformity);
// The lane sum of the matvec kernels with subgroups (first part of the shader: it holds the
// `enable`). A row's lanes within one subgroup are summed by subgroupAdd when the row spans whole
// subgroups, or by a shuffle-xor butterfly when several rows share a subgroup (LANES_PER_ROW
// below the subgroup size); one barrier publishes those sums, and each thread adds its row's.
// Needs subgroups of a power-of-two size laid out as consecutive local_invocation_index ranges;
// linear.ts checks both on the device with a probe kernel before choosing this part. The sum order
// differs from the shared-memory tree (rounding only).

var<workgroup> sg_partial: array<vec2<f32>, WG_SIZE>;

fn lanes_sum2(acc: vec2<f32>, li: u32) -> vec2<f32> {
  let size = subgroupAdd(1u);
  let width = min(LANES_PER_ROW, size);  // lanes of a row in one subgroup
  var s = acc;
  if (width == size) {
    s = subgroupAdd(acc);
  } else {
    for (var o = 1u; o < width; o <<= 1u) {
      s += subgroupShuffleXor(s, o);
    }
  }
  if (li % width == 0u) {
    sg_partial[li / width] = s;
  }
  workgroupBarrier();
  let per_row = LANES_PER_ROW / width;
  let first = (li / LANES_PER_ROW) * per_row;
  var total = sg_partial[first];
  for (var i = 1u; i < per_row; i++) {
    total += sg_partial[first + i];
  }
  return total;
}
