// Backward of rope.forward.wgsl, in place, for a block of tokens at positions start + t: the
// forward rotates each pair (j, j + half) of every head by the angle pos * w_j, an orthogonal map,
// so the gradient goes back through its transpose, the rotation by -pos * w_j:
//   g'_j = g_j cos + g_{j+half} sin,   g'_{j+half} = -g_j sin + g_{j+half} cos.
// Values past dims are untouched (identity in the forward).
//
// The angle is computed exactly as the forward computes it (same frequency table, built by
// ropeFrequencyTable in ops.ts, and the same two functions of rope_angle.wgsl, composed before
// this file), so the two kernels use the same cos and sin bit for bit and this one is the exact
// transpose of the forward's rotation, not merely of the ideal one.
//
// Work split: one thread per (token, pair); it loops over the heads with one sin/cos.

const WG_SIZE: u32 = 64u;

struct Params {
  heads: u32,
  head_dim: u32,
  half: u32,        // rotated pairs per head (dims / 2)
  x_offset: u32,
  x_stride: u32,    // elements between tokens
}

struct Count {
  n: u32,
}

struct Position {
  start: u32,
}

@group(0) @binding(0) var<storage, read> freqs: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;
@group(0) @binding(3) var<uniform> tokens: Count;
@group(0) @binding(4) var<uniform> position: Position;

@compute @workgroup_size(WG_SIZE)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_id) lid: vec3<u32>,
) {
  let idx = (wid.x + wid.y * nwg.x) * WG_SIZE + lid.x;
  let t = idx / params.half;
  let j = idx % params.half;
  if (t >= tokens.n) {
    return;
  }
  let cs = cos_sin_turns(turns(position.start + t, freqs[j]));
  let base = params.x_offset + t * params.x_stride + j;
  for (var h = 0u; h < params.heads; h++) {
    let i = base + h * params.head_dim;
    let a = x[i];
    let b = x[i + params.half];
    x[i] = a * cs.x + b * cs.y;
    x[i + params.half] = b * cs.x - a * cs.y;
  }
}
