// Q4_K for matmul_int8.forward.wgsl (see its snippet contract): 144-byte blocks {f16 d; f16 dmin;
// u8 scales[12]; u8 qs[128]} of 256 values, value = d * sc * q - dmin * m with q in [0, 15] (see
// weights/q4_k.wgsl). The nibbles of four consecutive values sit in one word of qs, so a word
// masked with 0x0f0f0f0f (or shifted by 4 first) is four signed bytes. A block's share:
//   sum_i w_i x_i ≈ (d * sc) * dx * sum_i q_i xq_i  -  (dmin * m) * dx * sum_i xq_i.
// Chunk c (0..3) of a block is its sub-blocks 2c and 2c + 1: the low and high nibbles of
// qs[32c .. 32c + 32). Blocks are 16-aligned, so the weights are read as vec4s (9 a block).

const W_BLOCK_VALUES: u32 = 256u;
const W_BLOCK_BYTES: u32 = 144u;

struct WFetched {
  h: vec4<u32>,   // d, dmin | scales
  q0: vec4<u32>,  // qs words of the chunk
  q1: vec4<u32>,
}

struct WScale {
  s: vec2<f32>,   // (d * sc, dmin * m)
}

@group(0) @binding(0) var<storage, read> weight: array<vec4<u32>>;

var<workgroup> w_s: array<vec2<f32>, 2u * TILE_ROWS>;  // [block of the chunk][row]

fn w_fetch(row: u32, k0: u32, blocks_per_row: u32) -> WFetched {
  let block = (row * blocks_per_row + k0 / 256u) * (W_BLOCK_BYTES / 16u);
  let q = block + 1u + 2u * ((k0 % 256u) / 64u);
  return WFetched(weight[block], weight[q], weight[q + 1u]);
}

// (d * sc, dmin * m) of sub-block j (0..7) from the header (see w_k4_scale_min in common.wgsl).
fn q4k_scale_min(h: vec4<u32>, j: u32) -> vec2<f32> {
  let dm = unpack2x16float(h.x);
  let s = (j & 3u) * 8u;
  var sc = (h.y >> s) & 0x3fu;
  var m = (h.z >> s) & 0x3fu;
  if (j >= 4u) {
    sc = ((h.w >> s) & 0x0fu) | (((h.y >> s) >> 2u) & 0x30u);
    m = (((h.w >> s) >> 4u) & 0x0fu) | (((h.z >> s) >> 2u) & 0x30u);
  }
  return vec2<f32>(dm.x * f32(sc), dm.y * f32(m));
}

fn w_store(f: WFetched, k0: u32, r: u32) {
  let words = array<u32, 8>(f.q0.x, f.q0.y, f.q0.z, f.q0.w, f.q1.x, f.q1.y, f.q1.z, f.q1.w);
  for (var i = 0u; i < 8u; i++) {
    w_q[i * TILE_ROWS + r] = words[i] & 0x0f0f0f0fu;
    w_q[(8u + i) * TILE_ROWS + r] = (words[i] >> 4u) & 0x0f0f0f0fu;
  }
  let j = 2u * ((k0 % 256u) / 64u);
  w_s[r] = q4k_scale_min(f.h, j);
  w_s[TILE_ROWS + r] = q4k_scale_min(f.h, j + 1u);
}

fn w_scale(b: u32, r: u32) -> WScale {
  return WScale(w_s[b * TILE_ROWS + r]);
}

fn w_dot(wa: vec4<u32>, wb: vec4<u32>, xa: vec4<u32>, xb: vec4<u32>, xs: vec2<f32>, s: WScale) -> f32 {
  return s.s.x * (xs.x * f32(dot32(wa, wb, xa, xb))) - s.s.y * xs.y;
}
