// Cross-entropy of next-token labels over the vocabulary, with Gemma's final logit soft-cap, and
// its gradient with respect to the pre-cap logits, for a block of tokens:
//   c_i    = cap * tanh(z_i / cap)          (c = z when cap == 0)
//   loss_t = logsumexp(c) - c[label_t]
//   dz_i   = (softmax(c)_i - [i == label_t]) * (1 - tanh^2(z_i / cap)) * inv_count
// where inv_count = 1 / N, N the number of labelled tokens of the whole (accumulated) batch, so
// the gradients are those of the mean loss. A label of 0xFFFFFFFF masks the token: loss_t = 0 and
// its dz row is all zeros. A label >= vocab that is not the mask writes loss_t = NaN (and a zero
// dz row), so a bad label shows in the loss instead of passing silently.
//
// Layout: token t's logits at z[z_offset + t * z_stride + i] (i < vocab), its gradient at
// dz[dz_offset + t * dz_stride + i], its label at labels[labels_offset + t], its loss at
// loss[loss_offset + t]. Z_IS_DZ reads z from the dz binding (the gradient overwrites the logits
// in place; offsets and strides must then agree): each thread reads an element before it writes
// that same element, and the label's logit is read before the barrier that precedes any write.
//
// Work split: one workgroup per token (x-fastest over a 2-D grid). Pass 1: each thread walks the
// row with stride WG_SIZE keeping a running max and a sum of exp(c - max) rescaled whenever the
// max grows (an online logsumexp: one exp per element, never an overflow); a shared-memory tree
// merges the threads' pairs. Pass 2 reads the row again and writes the gradient.

override Z_IS_DZ: bool = false;

const WG_SIZE: u32 = 256u;
const MASKED: u32 = 0xffffffffu;
const LOWEST: f32 = -3.0e38;

struct Params {
  vocab: u32,
  z_offset: u32,
  z_stride: u32,
  dz_offset: u32,
  dz_stride: u32,
  labels_offset: u32,
  loss_offset: u32,
  cap: f32,         // 0: no soft-cap
  inv_count: f32,   // 1 / N
}

struct Tokens {
  count: u32,
}

@group(0) @binding(0) var<storage, read> z: array<f32>;
@group(0) @binding(1) var<storage, read> labels: array<u32>;
@group(0) @binding(2) var<storage, read_write> dz: array<f32>;
@group(0) @binding(3) var<storage, read_write> loss: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;
@group(0) @binding(5) var<uniform> tokens: Tokens;

var<workgroup> part_max: array<f32, WG_SIZE>;
var<workgroup> part_sum: array<f32, WG_SIZE>;
var<workgroup> shared_label: u32;

fn load_z(i: u32) -> f32 {
  if (Z_IS_DZ) {
    return dz[i];
  }
  return z[i];
}

// tanh and 1 - tanh^2 = sech^2 to a few ulp everywhere. Below |x| = 0.5: tanh by its Taylor
// series (terms to x^15, error < 1e-8 relative) and 1 - tanh^2 directly (>= 0.78, no
// cancellation). Above: with e = exp(-2|x|) <= 1/e, tanh = (1 - e) / (1 + e) (no cancellation) and
// sech^2 = 4e / (1 + e)^2, which keeps its relative accuracy where tanh rounds to 1 in f32 (1 - th^2
// from a rounded th would not: the gradient of a saturated logit would be noise). |x| is clamped
// to 40 for tanh only (exp never overflows; tanh is 1 in f32 long before).
fn tanh_sech2(x: f32) -> vec2<f32> {
  let ax = abs(x);
  if (ax < 0.5) {
    let x2 = x * x;
    var p = -929569.0 / 638512875.0;
    p = p * x2 + 21844.0 / 6081075.0;
    p = p * x2 - 1382.0 / 155925.0;
    p = p * x2 + 62.0 / 2835.0;
    p = p * x2 - 17.0 / 315.0;
    p = p * x2 + 2.0 / 15.0;
    p = p * x2 - 1.0 / 3.0;
    let th = x + x * x2 * p;
    return vec2<f32>(th, (1.0 - th) * (1.0 + th));
  }
  let e = exp(-2.0 * min(ax, 40.0));
  let d = 1.0 + e;
  return vec2<f32>(sign(x) * ((1.0 - e) / d), 4.0 * e / (d * d));
}

// The capped logit and d c / d z (1 without a cap).
fn capped(v: f32) -> vec2<f32> {
  if (params.cap > 0.0) {
    let ts = tanh_sech2(v / params.cap);
    return vec2<f32>(params.cap * ts.x, ts.y);
  }
  return vec2<f32>(v, 1.0);
}

@compute @workgroup_size(WG_SIZE)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let t = wid.x + wid.y * nwg.x;
  if (t >= tokens.count) {
    return;
  }
  if (li == 0u) {
    shared_label = labels[params.labels_offset + t];
  }
  let label = workgroupUniformLoad(&shared_label);
  let vocab = params.vocab;
  let z_row = params.z_offset + t * params.z_stride;
  let dz_row = params.dz_offset + t * params.dz_stride;

  if (label >= vocab) {
    // Masked (or invalid) label: no loss, no gradient.
    if (li == 0u) {
      var l = 0.0;
      if (label != MASKED) {
        l = bitcast<f32>(0x7fc00000u | (label & 0u)); // NaN (not a constant expression: WGSL has no NaN constants)
      }
      loss[params.loss_offset + t] = l;
    }
    for (var i = li; i < vocab; i += WG_SIZE) {
      dz[dz_row + i] = 0.0;
    }
    return;
  }

  // Pass 1: online logsumexp.
  var m = LOWEST;
  var s = 0.0;
  for (var i = li; i < vocab; i += WG_SIZE) {
    let c = capped(load_z(z_row + i)).x;
    if (c > m) {
      s = s * exp(m - c) + 1.0;
      m = c;
    } else {
      s += exp(c - m);
    }
  }
  var c_label = 0.0;
  if (li == 0u) {
    c_label = capped(load_z(z_row + label)).x;
  }
  part_max[li] = m;
  part_sum[li] = s;
  workgroupBarrier();
  for (var stride = WG_SIZE / 2u; stride > 0u; stride >>= 1u) {
    if (li < stride) {
      let m1 = part_max[li];
      let m2 = part_max[li + stride];
      let mm = max(m1, m2);
      part_sum[li] = part_sum[li] * exp(m1 - mm) + part_sum[li + stride] * exp(m2 - mm);
      part_max[li] = mm;
    }
    workgroupBarrier();
  }
  let row_max = part_max[0];
  let row_sum = part_sum[0];
  if (li == 0u) {
    loss[params.loss_offset + t] = log(row_sum) + row_max - c_label;
  }

  // Pass 2: the gradient.
  let inv_sum = 1.0 / row_sum;
  for (var i = li; i < vocab; i += WG_SIZE) {
    let ct = capped(load_z(z_row + i));
    var g = exp(ct.x - row_max) * inv_sum;
    if (i == label) {
      g -= 1.0;
    }
    dz[dz_row + i] = g * ct.y * params.inv_count;
  }
}
