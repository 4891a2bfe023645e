// LoRA dropout (PEFT's lora_dropout): the LoRA branch sees a copy of its layer's input with each
// value kept with probability 1 − p and scaled by 1/(1 − p), the base weight sees it whole. The
// mask is a hash of (seed, salt, token, index), so the forward, its recomputation and the backward
// of one sequence agree without storing it; the host changes the seed per sequence.
//
// seed.y = 0 turns dropout off (evaluation: the copy is exact).
//
// Entry point `forward`:  out[t][i] = keep(t, i) ? x[t][i]·scale : 0
// Entry point `backward`: dx[t][i] += keep(t, i) ? g[t][i]·scale : 0, then g[t][i] = 0, so the
//   scratch gradient g (accumulated into by the LoRA backward) is clean for the next use.

const WG_SIZE: u32 = 256u;

struct Params {
  width: u32,      // values per token
  salt: u32,       // which adapted weight (a different mask per weight, as PEFT's per-module dropout)
  threshold: u32,  // a value is dropped when its hash < threshold (p · 2³²)
  scale: f32,      // 1 / (1 − p)
}

struct Count { n: u32 }

@group(0) @binding(0) var<storage, read_write> a: array<f32>;  // forward: x (read); backward: g (read, then zeroed)
@group(0) @binding(1) var<storage, read_write> b: array<f32>;  // forward: out; backward: dx (accumulated)
@group(0) @binding(2) var<uniform> params: Params;
@group(0) @binding(3) var<uniform> seed: vec4<u32>;
@group(0) @binding(4) var<uniform> tokens: Count;

fn hash(x: u32) -> u32 {
  var h = x;
  h ^= h >> 16u;
  h *= 0x7feb352du;
  h ^= h >> 15u;
  h *= 0x846ca68bu;
  h ^= h >> 16u;
  return h;
}

fn keep(t: u32, i: u32) -> bool {
  if (seed.y == 0u) { return true; }
  let h = hash(hash(hash(seed.x ^ (params.salt * 0x9e3779b9u)) ^ (t * 0x85ebca6bu)) ^ i);
  return h >= params.threshold;
}

fn factor() -> f32 {
  return select(1.0, params.scale, seed.y != 0u);
}

@compute @workgroup_size(WG_SIZE)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let index = gid.x + gid.y * groups.x * WG_SIZE;
  if (index >= tokens.n * params.width) { return; }
  let t = index / params.width;
  let i = index % params.width;
  b[index] = select(0.0, a[index] * factor(), keep(t, i));
}

@compute @workgroup_size(WG_SIZE)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let index = gid.x + gid.y * groups.x * WG_SIZE;
  if (index >= tokens.n * params.width) { return; }
  let t = index / params.width;
  let i = index % params.width;
  if (keep(t, i)) { b[index] += a[index] * factor(); }
  a[index] = 0.0;
}
