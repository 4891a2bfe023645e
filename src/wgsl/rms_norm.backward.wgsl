// Backward of rms_norm.forward.wgsl (without its fused `next` norm, which is one more call of this
// kernel) for a block of tokens. The forward, per slice of `size` values:
//   u   = x * x_scale,   r = (mean(u²) + eps)^(-1/2)
//   out = (u * r * w + residual * residual_scale) * out_scale
// Given dy = dL/d out, with g = dy * out_scale * w (w = 1 when unweighted):
//   dL/du_i = r * g_i - u_i * r³ * (Σ_k g_k u_k) / size
//   dx      = x_scale * dL/du                      (written, or added with ACCUMULATE_DX)
//   dres    = dy * out_scale * residual_scale      (HAS_RESIDUAL; written or added, ACCUMULATE_RES)
// The norm weights are frozen (LoRA training), so there is no dw.
//
// Layout as the forward: slice s (< tokens.n * count) is slice s % count of token t = s / count;
// value i is x[x_offset + t * x_stride + (s % count) * size + i], likewise dy, dx and dres with
// their own offsets and strides; w[w_offset + i].
//
// In place: DX_IS_DY (DRES_IS_DY) reads dy from the dx (dres) binding, which then uses dy's offset
// and stride, so a gradient buffer can be turned into the next one without a copy. Each thread
// reads and writes only its own indices (the same i in both loops), so this is race-free.
//
// Work split: one workgroup per slice (x-fastest over a 2-D grid); its threads stride the slice,
// then a shared-memory tree sums (Σu², Σg·u) in one go.

override HAS_WEIGHT: bool = true;
override HAS_RESIDUAL: bool = false;
override DX_IS_DY: bool = false;
override DRES_IS_DY: bool = false;
override ACCUMULATE_DX: bool = false;
override ACCUMULATE_RES: bool = false;

const WG_SIZE: u32 = 128u;

struct Params {
  size: u32,             // values per slice
  count: u32,            // slices per token
  x_offset: u32,
  x_stride: u32,
  w_offset: u32,
  dy_offset: u32,
  dy_stride: u32,
  dx_offset: u32,
  dx_stride: u32,
  dres_offset: u32,
  dres_stride: u32,
  eps: f32,
  x_scale: f32,
  out_scale: f32,
  residual_scale: f32,
}

struct Count {
  n: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;
@group(0) @binding(4) var<storage, read_write> dres: array<f32>;
@group(0) @binding(5) var<uniform> params: Params;
@group(0) @binding(6) var<uniform> tokens: Count;

var<workgroup> partial: array<vec2<f32>, WG_SIZE>;

fn load_dy(i: u32) -> f32 {
  if (DX_IS_DY) {
    return dx[i];
  }
  if (DRES_IS_DY) {
    return dres[i];
  }
  return dy[i];
}

fn weight(i: u32) -> f32 {
  if (HAS_WEIGHT) {
    return w[params.w_offset + i];
  }
  return 1.0;
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
  let yb = params.dy_offset + t * params.dy_stride + within;
  let db = params.dx_offset + t * params.dx_stride + within;
  let rb = params.dres_offset + t * params.dres_stride + within;

  // (Σ u², Σ g·u) with g = dy * out_scale * w.
  var acc = vec2<f32>(0.0);
  for (var i = lid.x; i < params.size; i += WG_SIZE) {
    let u = x[xb + i] * params.x_scale;
    let g = load_dy(yb + i) * params.out_scale * weight(i);
    acc += vec2<f32>(u * u, g * u);
  }
  partial[lid.x] = acc;
  workgroupBarrier();
  for (var stride = WG_SIZE / 2u; stride > 0u; stride >>= 1u) {
    if (lid.x < stride) {
      partial[lid.x] += partial[lid.x + stride];
    }
    workgroupBarrier();
  }
  let r = inverseSqrt(partial[0].x / f32(params.size) + params.eps);
  let c = r * r * r * partial[0].y / f32(params.size);

  for (var i = lid.x; i < params.size; i += WG_SIZE) {
    let d = load_dy(yb + i) * params.out_scale;
    let u = x[xb + i] * params.x_scale;
    var gx = (r * d * weight(i) - u * c) * params.x_scale;
    if (HAS_RESIDUAL) {
      var gr = d * params.residual_scale;
      if (ACCUMULATE_RES) {
        gr += dres[rb + i];
      }
      dres[rb + i] = gr;
    }
    if (ACCUMULATE_DX) {
      gx += dx[db + i];
    }
    dx[db + i] = gx;
  }
}
