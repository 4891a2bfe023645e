// Q5_K: 176-byte super-blocks of 256 values {f16 d; f16 dmin; u8 scales[12]; u8 qh[32];
// u8 qs[128]}. As Q4_K, plus a fifth bit: bit j of qh[l] for value l of sub-block j.
// value = d*sc*q - dmin*m. Blocks are 4-aligned.
// Snippet contract: see weights/common.wgsl.

const W_BLOCK_VALUES: u32 = 256u;
const W_BLOCK_BYTES: u32 = 176u;

fn w_decode8(block: u32, g: u32) -> W8 {
  let j = g >> 2u;                     // sub-block
  let l0 = (g & 3u) * 8u;              // first value within the sub-block
  let qh = block + 16u + l0;
  let qs = block + 48u + 32u * (j >> 1u) + l0;
  let shift = (j & 1u) * 4u;
  let dm = unpack2x16float(w_word(block));
  let sm = w_k4_scale_min(block, j);
  let a = w_fields4(w_word(qs), shift, 0xfu) | (w_fields4(w_word(qh), j, 1u) << vec4<u32>(4u));
  let b = w_fields4(w_word(qs + 4u), shift, 0xfu) | (w_fields4(w_word(qh + 4u), j, 1u) << vec4<u32>(4u));
  return W8(vec4<f32>(a), vec4<f32>(b), dm.x * f32(sm.x), -dm.y * f32(sm.y));
}
