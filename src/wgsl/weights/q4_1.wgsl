// Q4_1: 20-byte blocks of 32 values {f16 d; f16 m; u8 qs[16]}, nibbles as Q4_0;
// value = d * nibble + m. Blocks are 4-aligned.
// Snippet contract: see weights/common.wgsl.

const W_BLOCK_VALUES: u32 = 32u;
const W_BLOCK_BYTES: u32 = 20u;

fn w_decode8(block: u32, g: u32) -> W8 {
  let dm = unpack2x16float(w_word(block));
  let qs = block + 4u + 8u * (g & 1u);
  let shift = (g >> 1u) * 4u;
  let a = vec4<f32>(w_fields4(w_word(qs), shift, 0xfu));
  let b = vec4<f32>(w_fields4(w_word(qs + 4u), shift, 0xfu));
  return W8(a, b, dm.x, dm.y);
}
