// One AdamW step over a flat f32 parameter buffer (the LoRA A and B matrices of every adapted
// tensor, laid end to end), with bias correction and decoupled weight decay, as the CPU AdamW of
// src/core/train/optimizer.ts does per element:
//   g  = grad * clip
//   m  = beta1 * m + (1 - beta1) * g
//   v  = beta2 * v + (1 - beta2) * g^2
//   p -= lr * (m / c1 / (sqrt(v / c2) + eps) + weight_decay * p)
// c1 = 1 - beta1^t, c2 = 1 - beta2^t and 1 - beta are computed on the host in float64 (beta^t in
// f32 would be off by 1e-4 relative for beta2 = 0.999). `clip` is clip[clip_index], the factor
// sum_squares.wgsl writes (a buffer holding 1 when there is no clipping); when it is not finite
// (a gradient overflowed) nothing is changed, as the CPU trainer skips such a step.
//
// Layout: element i < n is params[param_offset + i], grads[grad_offset + i], m[i], v[i].
// Work split: one thread per element, x-fastest over a 2-D grid of workgroups.

const WG_SIZE: u32 = 256u;

struct Params {
  n: u32,
  param_offset: u32,
  grad_offset: u32,
  clip_index: u32,
  lr: f32,
  beta1: f32,
  beta2: f32,
  one_minus_beta1: f32,
  one_minus_beta2: f32,
  c1: f32,
  c2: f32,
  eps: f32,
  weight_decay: f32,
}

@group(0) @binding(0) var<storage, read> grads: array<f32>;
@group(0) @binding(1) var<storage, read> clip: array<f32>;
@group(0) @binding(2) var<storage, read_write> params_buf: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
@group(0) @binding(5) var<uniform> params: Params;

@compute @workgroup_size(WG_SIZE)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let i = (wid.x + wid.y * nwg.x) * WG_SIZE + li;
  if (i >= params.n) {
    return;
  }
  let scale = clip[params.clip_index];
  if ((bitcast<u32>(scale) & 0x7f800000u) == 0x7f800000u) {
    return;
  }
  let g = grads[params.grad_offset + i] * scale;
  let mi = params.beta1 * m[i] + params.one_minus_beta1 * g;
  let vi = params.beta2 * v[i] + params.one_minus_beta2 * g * g;
  m[i] = mi;
  v[i] = vi;
  let update = mi / params.c1 / (sqrt(vi / params.c2) + params.eps);
  let p = params_buf[params.param_offset + i];
  params_buf[params.param_offset + i] = p - params.lr * (update + params.weight_decay * p);
}
