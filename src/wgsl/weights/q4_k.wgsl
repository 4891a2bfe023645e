// Q4_K: 144-byte super-blocks of 256 values {f16 d; f16 dmin; u8 scales[12]; u8 qs[128]}.
// Eight sub-blocks of 32 with 6-bit scale sc(j) and min m(j) (w_k4_scale_min). Sub-blocks 2c and
// 2c + 1 take the low and high nibbles of qs[32c .. 32c + 32); value = d*sc*q - dmin*m.
// Blocks are 4-aligned.
// Snippet contract: see weights/common.wgsl.

const W_BLOCK_VALUES: u32 = 256u;
const W_BLOCK_BYTES: u32 = 144u;

fn w_decode8(block: u32, g: u32) -> W8 {
  let j = g >> 2u;                     // sub-block
  let l0 = (g & 3u) * 8u;              // first value within the sub-block
  let qs = block + 16u + 32u * (j >> 1u) + l0;
  let shift = (j & 1u) * 4u;
  let dm = unpack2x16float(w_word(block));
  let sm = w_k4_scale_min(block, j);
  let a = vec4<f32>(w_fields4(w_word(qs), shift, 0xfu));
  let b = vec4<f32>(w_fields4(w_word(qs + 4u), shift, 0xfu));
  return W8(a, b, dm.x * f32(sm.x), -dm.y * f32(sm.y));
}
