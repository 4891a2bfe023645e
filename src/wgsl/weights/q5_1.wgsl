// Q5_1: 24-byte blocks of 32 values {f16 d; f16 m; u32 qh; u8 qs[16]}: as Q5_0 but
// value = d * q + m. Blocks are 4-aligned.
// Snippet contract: see weights/common.wgsl.

const W_BLOCK_VALUES: u32 = 32u;
const W_BLOCK_BYTES: u32 = 24u;

fn w_decode8(block: u32, g: u32) -> W8 {
  let dm = unpack2x16float(w_word(block));
  let qh = w_word(block + 4u) >> (8u * g);
  let qs = block + 8u + 8u * (g & 1u);
  let shift = (g >> 1u) * 4u;
  let a = vec4<f32>(w_fields4(w_word(qs), shift, 0xfu) | (w_bits4(qh, 0u) << vec4<u32>(4u)));
  let b = vec4<f32>(w_fields4(w_word(qs + 4u), shift, 0xfu) | (w_bits4(qh, 4u) << vec4<u32>(4u)));
  return W8(a, b, dm.x, dm.y);
}
