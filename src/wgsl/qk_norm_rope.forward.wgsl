// The per-head work between a layer's q/k/v projections and its attention, for a block of tokens at
// positions start + t, in one dispatch (Gemma 4, spec §3.2):
//   q head:  q = rope(RMS(q) * q_norm)                           in place
//   k head:  k_cache[slot] = rope(RMS(k) * k_norm)               (HAS_KV)
//   v head:  v_cache[slot] = RMS(v)                              (HAS_KV; unweighted)
// with slot = (start + t) % capacity, RoPE NeoX rotate-half over the first `dims` values of each
// head (pairs (j, j + half)), the frequency table of rope.forward.wgsl and the angle arithmetic of
// rope_angle.wgsl (composed before this file), and the RMS arithmetic and sum order of
// rms_norm.forward.wgsl (WG_SIZE threads striding the head, then the same shared-memory tree), so
// the values are those of the separate rms_norm, rope and kv_store dispatches it replaces (two or
// six per layer) up to the compiler's choice of fused multiply-adds.
//
// Work split: one workgroup per (token, head slice), slices q heads, then k heads, then v heads,
// x-fastest over a 2-D grid. The head is read once into shared memory; after the sum each thread
// writes the rotated pairs j = lid, lid + WG_SIZE, ... and the untouched tail.

override HAS_KV: bool = true;

override WG_SIZE: u32 = 256u; // 128 on software devices (ops.ts: fewer emulated threads per barrier)
const MAX_HEAD_DIM: u32 = 512u;

struct Params {
  heads: u32,       // query heads
  kv_heads: u32,
  head_dim: u32,
  half: u32,        // rotated pairs per head (dims / 2)
  q_offset: u32,
  q_stride: u32,
  k_offset: u32,
  k_stride: u32,
  v_offset: u32,
  v_stride: u32,
  capacity: u32,    // cache slots
  qw_offset: u32,
  kw_offset: u32,
  eps: f32,
}

struct Count {
  n: u32,
}

struct Position {
  start: u32,
}

@group(0) @binding(0) var<storage, read> freqs: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> q_w: array<f32>;
@group(0) @binding(2) var<storage, read> k_w: array<f32>;
@group(0) @binding(3) var<storage, read> k: array<f32>;
@group(0) @binding(4) var<storage, read> v: array<f32>;
@group(0) @binding(5) var<storage, read_write> q: array<f32>;
@group(0) @binding(6) var<storage, read_write> k_cache: array<f32>;
@group(0) @binding(7) var<storage, read_write> v_cache: array<f32>;
@group(0) @binding(8) var<uniform> params: Params;
@group(0) @binding(9) var<uniform> tokens: Count;
@group(0) @binding(10) var<uniform> position: Position;

var<workgroup> xs: array<f32, MAX_HEAD_DIM>;
var<workgroup> partial: array<f32, WG_SIZE>;

@compute @workgroup_size(WG_SIZE)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_id) lid: vec3<u32>,
) {
  let per_token = params.heads + select(0u, 2u * params.kv_heads, HAS_KV);
  let slice = wid.x + wid.y * nwg.x;
  if (slice >= tokens.n * per_token) {
    return;
  }
  let t = slice / per_token;
  let s = slice % per_token;
  let hd = params.head_dim;
  // kind 0: q head, 1: k head, 2: v head.
  var kind = 0u;
  var head = s;
  if (s >= params.heads) {
    head = s - params.heads;
    kind = 1u;
    if (head >= params.kv_heads) {
      head -= params.kv_heads;
      kind = 2u;
    }
  }

  var acc = 0.0;
  for (var i = lid.x; i < hd; i += WG_SIZE) {
    var x = 0.0;
    if (kind == 0u) {
      x = q[params.q_offset + t * params.q_stride + head * hd + i];
    } else if (kind == 1u) {
      x = k[params.k_offset + t * params.k_stride + head * hd + i];
    } else {
      x = v[params.v_offset + t * params.v_stride + head * hd + i];
    }
    let xv = x * 1.0;
    xs[i] = xv;
    acc += xv * xv;
  }
  partial[lid.x] = acc;
  workgroupBarrier();
  for (var stride = WG_SIZE / 2u; stride > 0u; stride >>= 1u) {
    if (lid.x < stride) {
      partial[lid.x] += partial[lid.x + stride];
    }
    workgroupBarrier();
  }
  let inv = inverseSqrt(partial[0] / f32(hd) + params.eps);
  // The normalised head, back into shared memory (each thread its own elements).
  for (var i = lid.x; i < hd; i += WG_SIZE) {
    var y = xs[i] * 1.0 * inv;
    if (kind == 0u) {
      y *= q_w[params.qw_offset + i];
    } else if (kind == 1u) {
      y *= k_w[params.kw_offset + i];
    }
    xs[i] = y * 1.0;
  }
  workgroupBarrier();

  let pos = position.start + t;
  let kv_width = params.kv_heads * hd;
  let slot_base = (pos % max(params.capacity, 1u)) * kv_width + head * hd;
  let q_base = params.q_offset + t * params.q_stride + head * hd;
  if (kind == 2u) {
    for (var i = lid.x; i < hd; i += WG_SIZE) {
      v_cache[slot_base + i] = xs[i];
    }
    return;
  }
  let half = params.half;
  for (var j = lid.x; j < half; j += WG_SIZE) {
    let cs = cos_sin_turns(turns(pos, freqs[j]));
    let a = xs[j];
    let b = xs[j + half];
    let r0 = a * cs.x - b * cs.y;
    let r1 = a * cs.y + b * cs.x;
    if (kind == 0u) {
      q[q_base + j] = r0;
      q[q_base + j + half] = r1;
    } else {
      k_cache[slot_base + j] = r0;
      k_cache[slot_base + j + half] = r1;
    }
  }
  for (var i = 2u * half + lid.x; i < hd; i += WG_SIZE) {
    if (kind == 0u) {
      q[q_base + i] = xs[i];
    } else {
      k_cache[slot_base + i] = xs[i];
    }
  }
}
