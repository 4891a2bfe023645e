// NeoX ("rotate-half") RoPE, in place, for a block of tokens at positions start + t:
// in each of `heads` heads of head_dim values, the pairs (j, j + half) for j < half (half =
// dims / 2; values past dims are untouched) rotate by the angle pos * w_j:
//   x'_j = x_j cos - x_{j+half} sin,   x'_{j+half} = x_j sin + x_{j+half} cos.
//
// The angle (turns and cos_sin_turns) comes from rope_angle.wgsl, composed before this file: it
// stays exact where angles reach 10^5 radians and more.
//
// The block's first position `start` is read from the `position` uniform, which the engine
// rewrites (queue.writeBuffer) before each submit.
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
    x[i] = a * cs.x - b * cs.y;
    x[i + params.half] = a * cs.y + b * cs.x;
  }
}
