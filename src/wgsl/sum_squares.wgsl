// The squared L2 norm of gradient buffers, reduced on the GPU so that clipping by the global norm
// needs no CPU round trip: AdamW (adamw.wgsl) reads the clip factor this writes.
//
// Entry point `partial` (one dispatch per gradient segment): workgroup w of the dispatch sums the
// squares of its grid-strided share of grads[offset .. offset + length) and writes the sum to
// partial[slot + w]. Entry point `finish` (one workgroup) adds partial[0 .. slots) and writes
//   result[0] = sum of squares, result[1] = norm = sqrt(sum),
//   result[2] = clip factor: max_norm / norm when max_norm > 0 and norm > max_norm, else 1;
//               NaN when the norm is not finite (the optimiser then skips its step).
// Sums are f32 in a fixed order (deterministic run to run).

const WG_SIZE: u32 = 256u;
const MAX_GROUPS: u32 = 64u;   // workgroups (partials) per segment at most

struct Params {
  offset: u32,      // partial: first element of the segment
  length: u32,      // partial: elements in the segment
  slot: u32,        // partial: first partial this segment writes
  slots: u32,       // finish: partials to add
  max_norm: f32,    // finish: 0 = no clipping
}

@group(0) @binding(0) var<storage, read> grads: array<f32>;
@group(0) @binding(1) var<storage, read_write> partial_sums: array<f32>;
@group(0) @binding(2) var<storage, read_write> result: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

var<workgroup> tree: array<f32, WG_SIZE>;

fn tree_sum(li: u32, v: f32) -> f32 {
  tree[li] = v;
  workgroupBarrier();
  for (var stride = WG_SIZE / 2u; stride > 0u; stride >>= 1u) {
    if (li < stride) {
      tree[li] += tree[li + stride];
    }
    workgroupBarrier();
  }
  return tree[0];
}

@compute @workgroup_size(WG_SIZE)
fn partial(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  var s = 0.0;
  for (var i = wid.x * WG_SIZE + li; i < params.length; i += nwg.x * WG_SIZE) {
    let g = grads[params.offset + i];
    s += g * g;
  }
  let total = tree_sum(li, s);
  if (li == 0u) {
    partial_sums[params.slot + wid.x] = total;
  }
}

@compute @workgroup_size(WG_SIZE)
fn finish(@builtin(local_invocation_index) li: u32) {
  var s = 0.0;
  for (var i = li; i < params.slots; i += WG_SIZE) {
    s += partial_sums[i];
  }
  let total = tree_sum(li, s);
  if (li == 0u) {
    let norm = sqrt(total);
    var clip = 1.0;
    if ((bitcast<u32>(norm) & 0x7f800000u) == 0x7f800000u) {
      clip = bitcast<f32>(0x7fc00000u | (params.slots & 0u)); // NaN (WGSL has no NaN constants)
    } else if (params.max_norm > 0.0 && norm > params.max_norm) {
      clip = params.max_norm / norm;
    }
    result[0] = total;
    result[1] = norm;
    result[2] = clip;
  }
}
