// Backward of OP_GELU_MUL (elementwise.forward.wgsl), out = gelu_tanh(gate) * up, for a block of
// tokens, each operand a row of `width` values with its own offset and stride (the per-layer-input
// gate reads `up` as one layer's slice of a [T][L * P] buffer: offset l * P, stride L * P):
//   dgate = dout * up * gelu_tanh'(gate)
//   dup   = dout * gelu_tanh(gate)            (HAS_DUP; omitted when up is not trainable upstream)
// each written, or added to what the output holds (ACCUMULATE_GATE, ACCUMULATE_UP).
//
// gelu_tanh(x) = x s with s = 1 / (1 + e), e = exp(-2u), u = 0.7978845608 (x + 0.044715 x³), as the
// forward evaluates it (2u clamped to [-80, 80]); its derivative
//   s + x s (1 - s) 2u'   with   s (1 - s) = 1 / (e + 2 + 1/e),   2u' = 1.5957691216 (1 + 0.134145 x²)
// is taken in that form: no 1 - s cancellation, no overflow, and no intermediate below f32's
// normal range (e s² would pass through s² ≈ 1e-43 at x = -8, which GPUs that flush subnormals
// turn into 0, losing the term that dominates there).
//
// In place: DOUT_SRC, GATE_SRC, UP_SRC say where each input is read from: 0 its own binding, 1 the
// dgate binding, 2 the dup binding (which then uses the input's offset and stride). One thread
// reads all of an element's inputs before writing its outputs, so any such aliasing is race-free.
//
// Work split: one thread per element, x-fastest over a 2-D grid of workgroups.

override DOUT_SRC: u32 = 0u;
override GATE_SRC: u32 = 0u;
override UP_SRC: u32 = 0u;
override HAS_DUP: bool = true;
override ACCUMULATE_GATE: bool = false;
override ACCUMULATE_UP: bool = false;

const WG_SIZE: u32 = 256u;

struct Params {
  width: u32,
  dout_offset: u32,
  dout_stride: u32,
  gate_offset: u32,
  gate_stride: u32,
  up_offset: u32,
  up_stride: u32,
  dgate_offset: u32,
  dgate_stride: u32,
  dup_offset: u32,
  dup_stride: u32,
}

struct Count {
  n: u32,
}

@group(0) @binding(0) var<storage, read> dout: array<f32>;
@group(0) @binding(1) var<storage, read> gate: array<f32>;
@group(0) @binding(2) var<storage, read> up: array<f32>;
@group(0) @binding(3) var<storage, read_write> dgate: array<f32>;
@group(0) @binding(4) var<storage, read_write> dup: array<f32>;
@group(0) @binding(5) var<uniform> params: Params;
@group(0) @binding(6) var<uniform> tokens: Count;

// Element i of an input from its own binding (src 0) or from an output binding (in place).
fn load_dout(i: u32) -> f32 {
  switch (DOUT_SRC) {
    case 1u: { return dgate[i]; }
    case 2u: { return dup[i]; }
    default: { return dout[i]; }
  }
}

fn load_gate(i: u32) -> f32 {
  switch (GATE_SRC) {
    case 1u: { return dgate[i]; }
    case 2u: { return dup[i]; }
    default: { return gate[i]; }
  }
}

fn load_up(i: u32) -> f32 {
  switch (UP_SRC) {
    case 1u: { return dgate[i]; }
    case 2u: { return dup[i]; }
    default: { return up[i]; }
  }
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
  let d = load_dout(params.dout_offset + t * params.dout_stride + i);
  let g = load_gate(params.gate_offset + t * params.gate_stride + i);
  let u = load_up(params.up_offset + t * params.up_stride + i);

  let e = exp(-clamp(1.5957691216057308 * (g + 0.044715 * g * g * g), -80.0, 80.0));
  let s = 1.0 / (1.0 + e);
  let slope = s + g * (1.0 / (e + 2.0 + 1.0 / e)) * (1.5957691216057308 * (1.0 + 0.134145 * g * g));

  let gi = params.dgate_offset + t * params.dgate_stride + i;
  var dg = d * u * slope;
  var du = d * g * s;
  if (ACCUMULATE_GATE) {
    dg += dgate[gi];
  }
  if (HAS_DUP) {
    let ui = params.dup_offset + t * params.dup_stride + i;
    if (ACCUMULATE_UP) {
      du += dup[ui];
    }
    dup[ui] = du;
  }
  dgate[gi] = dg;
}
