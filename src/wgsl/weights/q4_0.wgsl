// Q4_0: 18-byte blocks of 32 values {f16 d; u8 qs[16]}: value j (< 16) is the low nibble of
// qs[j], value j + 16 its high nibble; value = d * (nibble - 8). Blocks are 2-aligned.
// Snippet contract: see weights/common.wgsl.

const W_BLOCK_VALUES: u32 = 32u;
const W_BLOCK_BYTES: u32 = 18u;

fn w_decode8(block: u32, g: u32) -> W8 {
  let qs = block + 2u + 8u * (g & 1u);
  let shift = (g >> 1u) * 4u;
  let a = vec4<f32>(w_fields4(w_u32(qs), shift, 0xfu)) - 8.0;
  let b = vec4<f32>(w_fields4(w_u32(qs + 4u), shift, 0xfu)) - 8.0;
  return W8(a, b, w_f16(block), 0.0);
}
