// Q6_K: 210-byte super-blocks of 256 values {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}.
// Two halves n of 128 values, each in four quarters s of 32: value l of quarter s takes
// the nibble (s >> 1) of ql[64n + 32(s & 1) + l], bits 2s..2s+1 of qh[32n + l], and scale
// scales[8n + 2s + l / 16]; value = d * scale * (q - 32). Blocks are 2-aligned.
// Snippet contract: see weights/common.wgsl.

const W_BLOCK_VALUES: u32 = 256u;
const W_BLOCK_BYTES: u32 = 210u;

fn w_decode8(block: u32, g: u32) -> W8 {
  let n = g >> 4u;                     // half
  let s = (g >> 2u) & 3u;              // quarter within the half
  let l0 = (g & 3u) * 8u;              // first value within the quarter
  let ql = block + 64u * n + 32u * (s & 1u) + l0;
  let qh = block + 128u + 32u * n + l0;
  // Blocks start on a 4-byte boundary or 2 bytes past one (210 = 2·105), and ql, qh with them:
  // whole words, or each 4 bytes from two neighbouring words at a fixed 16-bit shift. A matvec's
  // lanes share a block, so the branch is uniform there.
  var lo: vec2<u32>;
  var hi: vec2<u32>;
  if ((block & 2u) == 0u) {
    lo = vec2<u32>(w_word(ql), w_word(ql + 4u));
    hi = vec2<u32>(w_word(qh), w_word(qh + 4u));
  } else {
    let a = vec3<u32>(w_word(ql - 2u), w_word(ql + 2u), w_word(ql + 6u));
    let b = vec3<u32>(w_word(qh - 2u), w_word(qh + 2u), w_word(qh + 6u));
    lo = (a.xy >> vec2<u32>(16u)) | (a.yz << vec2<u32>(16u));
    hi = (b.xy >> vec2<u32>(16u)) | (b.yz << vec2<u32>(16u));
  }
  let shift = (s >> 1u) * 4u;
  let qa = w_fields4(lo.x, shift, 0xfu) | (w_fields4(hi.x, 2u * s, 3u) << vec4<u32>(4u));
  let qb = w_fields4(lo.y, shift, 0xfu) | (w_fields4(hi.y, 2u * s, 3u) << vec4<u32>(4u));
  let sc = f32((i32(w_byte(block + 192u + 8u * n + 2u * s + (l0 >> 4u))) << 24u) >> 24u);
  return W8(vec4<f32>(qa) - 32.0, vec4<f32>(qb) - 32.0, w_f16(block + 208u) * sc, 0.0);
}
