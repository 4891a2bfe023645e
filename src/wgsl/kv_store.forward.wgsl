// Appends a block of tokens' keys and values to a layer's cache:
//   k_cache[slot * width + i] = k[k_offset + t * k_stride + i]   (and v alike)
// for t < tokens.n, i < width (= kv_heads * head_dim), slot = (start + t) % capacity. A cache of
// `capacity` slots smaller than the context is a ring (sliding-window layers); the binding
// requires tokens <= capacity, so no two tokens of a block share a slot. `start` is read from the
// `position` uniform (see rope.forward.wgsl).

const WG_SIZE: u32 = 256u;

struct Params {
  width: u32,
  capacity: u32,
  k_offset: u32,
  k_stride: u32,
  v_offset: u32,
  v_stride: u32,
}

struct Count {
  n: u32,
}

struct Position {
  start: u32,
}

@group(0) @binding(0) var<storage, read> k: array<f32>;
@group(0) @binding(1) var<storage, read> v: array<f32>;
@group(0) @binding(2) var<storage, read_write> k_cache: array<f32>;
@group(0) @binding(3) var<storage, read_write> v_cache: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;
@group(0) @binding(5) var<uniform> tokens: Count;
@group(0) @binding(6) var<uniform> position: Position;

@compute @workgroup_size(WG_SIZE)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_id) lid: vec3<u32>,
) {
  let idx = (wid.x + wid.y * nwg.x) * WG_SIZE + lid.x;
  let t = idx / params.width;
  let i = idx % params.width;
  if (t >= tokens.n) {
    return;
  }
  let slot = (position.start + t) % params.capacity;
  k_cache[slot * params.width + i] = k[params.k_offset + t * params.k_stride + i];
  v_cache[slot * params.width + i] = v[params.v_offset + t * params.v_stride + i];
}
