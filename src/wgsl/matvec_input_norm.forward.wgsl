// The input of matvec_q4k.forward.wgsl formed in its prologue from a residual stream h (bound as x,
// from x_offset) and one or two block outputs a_j through their RMS norms, for one token:
//   s  = (h + RMS(a_0)·n_0 [+ RMS(a_1)·n_1])·scale   RMS(v) = v·(mean(v²) + eps)^(−1/2)
//   x' = RMS(s)·n_2   (NORM)   or   x' = s
// n_j are slices of `norms` (vec4 offsets params.norm0..2). With WRITE_INPUT, workgroup 0 also
// writes s to y1 from y_offset1 (a single-weight matvec leaves y1 free). One or two weights: the
// third's bindings (4, 8) are left out, so the layout has 9 storage buffers (Chromium offers 10).
// Gemma 4 decode: the MLP's input RMS(h + RMS(attn_out)·w_post_attn)·w_ffn (gate+up); the
// per-layer input's h + RMS(attn_out)·w_post_attn + RMS(ffn_out)·w_post_ffw (inp_gate, which
// writes it for the norm that ends the layer); and on a layer whose q is its only projection, the
// attention input RMS(h')·w_attn with h' = (hs + RMS(proj_out)·w_post_norm)·layer_scale (q, which
// writes h', the norm that ends the layer before). Every workgroup forms the whole x' in shared
// memory: a few KiB of cached reads against a separate norm dispatch, which costs more on a GPU.
// Same products as the rms_norm dispatches (ops.ts) in the same order; the sums of squares are
// added in another order.

override TERMS: u32 = 1u;            // 1 or 2 block outputs
override NORM: bool = true;
override WRITE_INPUT: bool = false;
override INPUT_VEC4: u32 = 384u;     // cols / 4

@group(0) @binding(9) var<storage, read> term0: array<vec4<f32>>;
@group(0) @binding(10) var<storage, read> term1: array<vec4<f32>>;
@group(0) @binding(11) var<storage, read> norms: array<vec4<f32>>;

// x' in shared memory, one padding vec4 after every 16: the 8 lanes of a quarter-warp read the
// vec4s 0, 4, 16, 20, 32, 36, 48, 52 (+ i) of a block (matvec_q4k chunk_dot), which would share two
// of the 8 bank groups (a 4-way conflict); padded, they fall in all 8.
const PAD_EVERY: u32 = 16u;
var<workgroup> formed: array<vec4<f32>, INPUT_VEC4 + INPUT_VEC4 / PAD_EVERY>;

fn slot(i: u32) -> u32 {
  return i + i / PAD_EVERY;
}
var<workgroup> sums: array<vec2<f32>, WG_SIZE>;

// The sum over the workgroup of every thread's v (a shared-memory tree; uniform control flow).
fn block_sum(v: vec2<f32>, li: u32) -> vec2<f32> {
  sums[li] = v;
  workgroupBarrier();
  for (var stride = WG_SIZE / 2u; stride > 0u; stride >>= 1u) {
    if (li < stride) {
      sums[li] += sums[li + stride];
    }
    workgroupBarrier();
  }
  let total = sums[0];
  workgroupBarrier();
  return total;
}

fn prepare_input(li: u32, g: u32) {
  let n = f32(INPUT_VEC4 * 4u);
  var sq = vec2<f32>(0.0);
  for (var i = li; i < INPUT_VEC4; i += WG_SIZE) {
    let a = term0[i];
    sq.x += dot(a, a);
    if (TERMS == 2u) {
      let b = term1[i];
      sq.y += dot(b, b);
    }
  }
  let inv = inverseSqrt(block_sum(sq, li) / n + params.eps);
  let h0 = params.x_offset / 4u;
  var sq2 = 0.0;
  for (var i = li; i < INPUT_VEC4; i += WG_SIZE) {
    var s = x[h0 + i] + term0[i] * inv.x * norms[params.norm0 + i];
    if (TERMS == 2u) {
      s += term1[i] * inv.y * norms[params.norm1 + i];
    }
    s *= params.scale;
    formed[slot(i)] = s;
    sq2 += dot(s, s);
    if (WRITE_INPUT && g == 0u) {
      let o = params.y_offset1 + 4u * i;
      y1[o] = s.x;
      y1[o + 1u] = s.y;
      y1[o + 2u] = s.z;
      y1[o + 3u] = s.w;
    }
  }
  if (NORM) {
    let inv2 = inverseSqrt(block_sum(vec2<f32>(sq2, 0.0), li).x / n + params.eps);
    // Each thread rescales the entries it wrote.
    for (var i = li; i < INPUT_VEC4; i += WG_SIZE) {
      formed[slot(i)] = formed[slot(i)] * inv2 * norms[params.norm2 + i];
    }
  }
  workgroupBarrier();
}

fn input(i: u32) -> vec4<f32> {
  return formed[slot(i)];
}

// One or two weights (linear.ts refuses three): bindings 4 and 8 stay free.
fn load(s: u32, i: u32) -> vec4<u32> {
  if (s == 0u) {
    return w0[i];
  }
  return w1[i];
}

fn store2(row: u32, v: f32) {}
