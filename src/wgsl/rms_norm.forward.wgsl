// RMS normalisation over consecutive slices of `size` values for a block of tokens, with the
// extras Gemma 4 fuses around it:
//   xs  = x * x_scale
//   out = (xs * (mean(xs²) + eps)^(-1/2) * w + residual * residual_scale) * out_scale
// Uses: a whole-vector norm (count = 1, size = width); per-head q/k norms (size = head_dim,
// count = heads); the unweighted v-norm (HAS_WEIGHT = false); h1 = h + RMS(a, w) (HAS_RESIDUAL,
// out = residual = h); the per-layer-input combine (x = projection, x_scale = 1/sqrt(d),
// residual = token part, residual_scale = sqrt(P), out_scale = 1/sqrt(2)).
//
// Layout: slice s (< tokens.n * count) is slice s % count of token t = s / count; value i of it is
// x[x_offset + t * x_stride + (s % count) * size + i], likewise residual and out (own offsets and
// strides); w[w_offset + i].
//
// In place: X_IS_OUT (RESIDUAL_IS_OUT) reads x (residual) from `out`, which must then use the same
// offset and stride; the unused binding holds a placeholder. Each thread reads and writes the same
// elements after the barrier that ends the sum, so this is race-free.
//
// Next norm (HAS_NEXT): the written values r (a residual stream) are normalised once more into a
// second output, out2[out2_offset + t * out2_stride + (s % count) * size + i] = RMS(r) * w2[w2_offset + i],
// with the same sum order as a separate rms_norm over `out`, so the result is the same to the bit.
// Gemma 4 ends each block with h = (h + RMS(a) * w) * s and starts the next with x = RMS(h) * w':
// one dispatch instead of two (or three with the layer scale).
//
// Work split: one workgroup per slice (x-fastest over a 2-D grid); its threads stride the slice,
// then a shared-memory tree sums the squares. A slice of at most HELD values a thread (decode's
// whole-vector norms on a GPU) is loaded once into registers, all loads issued up front: a loop
// that loads, waits and loads again costs a memory latency per step, several per dispatch. Both
// paths add in the same order, so they give the same bits.

override HAS_WEIGHT: bool = true;
override HAS_RESIDUAL: bool = false;
override X_IS_OUT: bool = false;
override RESIDUAL_IS_OUT: bool = false;
override HAS_NEXT: bool = false;

override WG_SIZE: u32 = 256u; // 128 on software devices (ops.ts: fewer emulated threads per barrier)

struct Params {
  size: u32,             // values per slice
  count: u32,            // slices per token
  x_offset: u32,
  x_stride: u32,
  w_offset: u32,
  residual_offset: u32,
  residual_stride: u32,
  out_offset: u32,
  out_stride: u32,
  w2_offset: u32,
  out2_offset: u32,
  out2_stride: u32,
  eps: f32,
  x_scale: f32,
  residual_scale: f32,
  out_scale: f32,
}

struct Count {
  n: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> residual: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;
@group(0) @binding(5) var<uniform> tokens: Count;
@group(0) @binding(6) var<storage, read> w2: array<f32>;
@group(0) @binding(7) var<storage, read_write> out2: array<f32>;

var<workgroup> partial: array<f32, WG_SIZE>;

const HELD: u32 = 8u;

fn load_x(i: u32) -> f32 {
  if (X_IS_OUT) {
    return out[i];
  }
  return x[i];
}

fn load_residual(i: u32) -> f32 {
  if (RESIDUAL_IS_OUT) {
    return out[i];
  }
  return residual[i];
}

// The workgroup's sum of every thread's v (uniform control flow). The barrier first: the previous
// sum's result (partial[0]) must have been read by every thread before partial is overwritten.
fn block_sum(v: f32, li: u32) -> f32 {
  workgroupBarrier();
  partial[li] = v;
  workgroupBarrier();
  for (var stride = WG_SIZE / 2u; stride > 0u; stride >>= 1u) {
    if (li < stride) {
      partial[li] += partial[li + stride];
    }
    workgroupBarrier();
  }
  return partial[0];
}

@compute @workgroup_size(WG_SIZE)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_id) lid: vec3<u32>,
) {
  let slice = wid.x + wid.y * nwg.x;
  if (slice >= tokens.n * params.count) {
    return;
  }
  let t = slice / params.count;
  let within = (slice % params.count) * params.size;
  let xb = params.x_offset + t * params.x_stride + within;
  let rb = params.residual_offset + t * params.residual_stride + within;
  let ob = params.out_offset + t * params.out_stride + within;
  let o2b = params.out2_offset + t * params.out2_stride + within;
  let n = f32(params.size);

  if (params.size <= HELD * WG_SIZE) {
    var xs: array<f32, HELD>;
    var ws: array<f32, HELD>;
    var rs: array<f32, HELD>;
    var w2s: array<f32, HELD>;
    for (var k = 0u; k < HELD; k++) {
      let i = lid.x + k * WG_SIZE;
      if (i < params.size) {
        xs[k] = load_x(xb + i) * params.x_scale;
        if (HAS_WEIGHT) {
          ws[k] = w[params.w_offset + i];
        }
        if (HAS_RESIDUAL) {
          rs[k] = load_residual(rb + i) * params.residual_scale;
        }
        if (HAS_NEXT) {
          w2s[k] = w2[params.w2_offset + i];
        }
      }
    }
    var acc = 0.0;
    for (var k = 0u; k < HELD; k++) {
      if (lid.x + k * WG_SIZE < params.size) {
        acc += xs[k] * xs[k];
      }
    }
    let inv = inverseSqrt(block_sum(acc, lid.x) / n + params.eps);
    var acc2 = 0.0;
    for (var k = 0u; k < HELD; k++) {
      let i = lid.x + k * WG_SIZE;
      if (i < params.size) {
        var v = xs[k] * inv;
        if (HAS_WEIGHT) {
          v *= ws[k];
        }
        if (HAS_RESIDUAL) {
          v += rs[k];
        }
        let r = v * params.out_scale;
        out[ob + i] = r;
        xs[k] = r;
        acc2 += r * r;
      }
    }
    if (HAS_NEXT) {
      let inv2 = inverseSqrt(block_sum(acc2, lid.x) / n + params.eps);
      for (var k = 0u; k < HELD; k++) {
        let i = lid.x + k * WG_SIZE;
        if (i < params.size) {
          out2[o2b + i] = xs[k] * inv2 * w2s[k];
        }
      }
    }
    return;
  }

  var acc = 0.0;
  for (var i = lid.x; i < params.size; i += WG_SIZE) {
    let v = load_x(xb + i) * params.x_scale;
    acc += v * v;
  }
  let inv = inverseSqrt(block_sum(acc, lid.x) / n + params.eps);
  var acc2 = 0.0;
  for (var i = lid.x; i < params.size; i += WG_SIZE) {
    var v = load_x(xb + i) * params.x_scale * inv;
    if (HAS_WEIGHT) {
      v *= w[params.w_offset + i];
    }
    if (HAS_RESIDUAL) {
      v += load_residual(rb + i) * params.residual_scale;
    }
    let r = v * params.out_scale;
    out[ob + i] = r;
    acc2 += r * r;
  }
  if (!HAS_NEXT) {
    return;
  }
  // Every thread reads back the values it wrote itself.
  let inv2 = inverseSqrt(block_sum(acc2, lid.x) / n + params.eps);
  for (var i = lid.x; i < params.size; i += WG_SIZE) {
    out2[o2b + i] = out[ob + i] * inv2 * w2[params.w2_offset + i];
  }
}
