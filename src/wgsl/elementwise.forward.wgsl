// Elementwise ops over a block of tokens, each token a row of `width` values with its own offset
// and stride per operand (so a slice of a wider row, e.g. layer l of the per-layer inputs, is
// offset l * P, stride L * P):
//   OP_ADD       out = a + b
//   OP_MUL       out = a * b
//   OP_GELU_MUL  out = gelu_tanh(a) * b         (a = gate, b = up)
//   OP_SCALE     out = a * factor[factor_index]  (a scalar kept on the GPU: layer_output_scale)
//   OP_SOFTCAP   out = cap * tanh(a / cap)
// In place: A_IS_OUT (B_IS_OUT) reads a (b) from `out` at the same index it writes, so the operand
// must use out's offset and stride; the unused binding holds a placeholder.
//
// gelu_tanh(x) = 0.5 x (1 + tanh(0.7978845608 (x + 0.044715 x^3))) is evaluated as the identical
// x / (1 + exp(-2u)), u = 0.7978845608 (x + 0.044715 x^3), with 2u clamped to [-80, 80]: no tanh of
// a large argument (NaN on some drivers), no cancellation for negative x, no overflow. tanh for the
// softcap is an odd series below 0.25 and (1 - e) / (1 + e), e = exp(-2|x|), above.
//
// Work split: one thread per element, x-fastest over a 2-D grid of workgroups.

override OP: u32;
override A_IS_OUT: bool = false;
override B_IS_OUT: bool = false;

const OP_ADD: u32 = 0u;
const OP_MUL: u32 = 1u;
const OP_GELU_MUL: u32 = 2u;
const OP_SCALE: u32 = 3u;
const OP_SOFTCAP: u32 = 4u;

const WG_SIZE: u32 = 256u;

struct Params {
  width: u32,
  a_offset: u32,
  a_stride: u32,
  b_offset: u32,
  b_stride: u32,
  out_offset: u32,
  out_stride: u32,
  factor_index: u32,
  cap: f32,
}

struct Count {
  n: u32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read> factor: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;
@group(0) @binding(5) var<uniform> tokens: Count;

fn load_a(i: u32) -> f32 {
  if (A_IS_OUT) {
    return out[i];
  }
  return a[i];
}

fn load_b(i: u32) -> f32 {
  if (B_IS_OUT) {
    return out[i];
  }
  return b[i];
}

fn gelu_tanh(x: f32) -> f32 {
  let u2 = 1.5957691216057308 * (x + 0.044715 * x * x * x);  // 2u
  return x / (1.0 + exp(-clamp(u2, -80.0, 80.0)));
}

fn tanh_stable(x: f32) -> f32 {
  let ax = abs(x);
  if (ax < 0.25) {
    let x2 = x * x;
    return x * (1.0 + x2 * (-1.0 / 3.0 + x2 * (2.0 / 15.0 + x2 * (-17.0 / 315.0 + x2 * (62.0 / 2835.0 + x2 * (-1382.0 / 155925.0))))));
  }
  let e = exp(-2.0 * min(ax, 20.0));
  return sign(x) * ((1.0 - e) / (1.0 + e));
}

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
  let va = load_a(params.a_offset + t * params.a_stride + i);
  var r: f32;
  switch (OP) {
    case OP_ADD: { r = va + load_b(params.b_offset + t * params.b_stride + i); }
    case OP_MUL: { r = va * load_b(params.b_offset + t * params.b_stride + i); }
    case OP_GELU_MUL: { r = gelu_tanh(va) * load_b(params.b_offset + t * params.b_stride + i); }
    case OP_SCALE: { r = va * factor[params.factor_index]; }
    default: { r = params.cap * tanh_stable(va / params.cap); }
  }
  out[params.out_offset + t * params.out_stride + i] = r;
}
