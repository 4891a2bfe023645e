// Q6_K for matmul_int8.forward.wgsl (see its snippet contract): 210-byte blocks {u8 ql[128];
// u8 qh[64]; i8 scales[16]; f16 d} of 256 values, value = d * scale * (q - 32) with q in [0, 63]
// and a scale per 16 values (see weights/q6_k.wgsl for the layout). A 32-column block's share:
//   sum_i w_i x_i ≈ d * dx * (scale_a * sum_a (q - 32) xq + scale_b * sum_b (q - 32) xq)
// over its two halves a, b. Chunk c (0..3) of a block is quarters 2 (c & 1) and 2 (c & 1) + 1 of
// half c >> 1: nibble (c & 1) of the half's 64 ql bytes, and bits of its 32 qh bytes. Blocks
// start 4-aligned or 2 bytes past (210 = 2·105): then each word is the halves of two.

const W_BLOCK_VALUES: u32 = 256u;
const W_BLOCK_BYTES: u32 = 210u;

struct WFetched {
  ql: array<u32, 16>,  // the half's ql bytes
  qh: array<u32, 8>,   // the half's qh bytes
  sc: u32,             // the chunk's four scales
  d: f32,
}

struct WScale {
  s: vec2<i32>,        // scales of the block's halves
  d: f32,
}

@group(0) @binding(0) var<storage, read> weight: array<u32>;

var<workgroup> w_s: array<vec2<i32>, 2u * TILE_ROWS>;  // [block of the chunk][row]
var<workgroup> w_d: array<f32, TILE_ROWS>;

fn w_fetch(row: u32, k0: u32, blocks_per_row: u32) -> WFetched {
  var f: WFetched;
  let block = (row * blocks_per_row + k0 / 256u) * W_BLOCK_BYTES;
  let c = (k0 % 256u) / 64u;
  let n = c >> 1u;
  let ql = (block + 64u * n) >> 2u;        // word holding the first ql byte (or its first half)
  let qh = (block + 128u + 32u * n) >> 2u;
  let sc = (block + 192u + 8u * n + 4u * (c & 1u)) >> 2u;
  if ((block & 2u) == 0u) {
    for (var i = 0u; i < 16u; i++) {
      f.ql[i] = weight[ql + i];
    }
    for (var i = 0u; i < 8u; i++) {
      f.qh[i] = weight[qh + i];
    }
    f.sc = weight[sc];
  } else {
    var prev = weight[ql];
    for (var i = 0u; i < 16u; i++) {
      let next = weight[ql + i + 1u];
      f.ql[i] = (prev >> 16u) | (next << 16u);
      prev = next;
    }
    prev = weight[qh];
    for (var i = 0u; i < 8u; i++) {
      let next = weight[qh + i + 1u];
      f.qh[i] = (prev >> 16u) | (next << 16u);
      prev = next;
    }
    f.sc = (weight[sc] >> 16u) | (weight[sc + 1u] << 16u);
  }
  f.d = w_f16(block + 208u);
  return f;
}

fn w_store(f: WFetched, k0: u32, r: u32) {
  let hi = (k0 % 128u) / 64u;  // the chunk's nibble: quarters 0, 1 or 2, 3 of the half
  for (var k = 0u; k < 16u; k++) {
    let quarter = k / 8u;      // 0: ql bytes 0..31 and qh bits 2 hi; 1: ql bytes 32..63, qh bits 2 hi + 2
    let lo = (f.ql[k] >> (4u * hi)) & 0x0f0f0f0fu;
    let up = ((f.qh[k % 8u] >> (4u * hi + 2u * quarter)) & 0x03030303u) << 4u;
    // q - 32 as signed bytes without carries: flip bit 5, then copy it into bits 6 and 7.
    let t = (lo | up) ^ 0x20202020u;
    w_q[k * TILE_ROWS + r] = t | ((t & 0x20202020u) * 6u);
  }
  let sc = vec4<i32>(bitcast<vec4<i32>>(vec4<u32>(f.sc) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u));
  w_s[r] = sc.xy;
  w_s[TILE_ROWS + r] = sc.zw;
  w_d[r] = f.d;
}

fn w_scale(b: u32, r: u32) -> WScale {
  return WScale(w_s[b * TILE_ROWS + r], w_d[r]);
}

fn w_dot(wa: vec4<u32>, wb: vec4<u32>, xa: vec4<u32>, xb: vec4<u32>, xs: vec2<f32>, s: WScale) -> f32 {
  let a = dot4I8Packed(wa.x, xa.x) + dot4I8Packed(wa.y, xa.y) + dot4I8Packed(wa.z, xa.z) + dot4I8Packed(wa.w, xa.w);
  let b = dot4I8Packed(wb.x, xb.x) + dot4I8Packed(wb.y, xb.y) + dot4I8Packed(wb.z, xb.z) + dot4I8Packed(wb.w, xb.w);
  return (s.d * xs.x) * f32(s.s.x * a + s.s.y * b);
}
