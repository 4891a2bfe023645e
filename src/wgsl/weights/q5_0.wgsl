// Q5_0: 22-byte blocks of 32 values {f16 d; u32 qh; u8 qs[16]}: nibbles as Q4_0, bit j of qh
// is value j's fifth bit; value = d * (q - 16). Blocks are 2-aligned, so qh and qs are read
// with unaligned w_u32.
// Snippet contract: see weights/common.wgsl.

const W_BLOCK_VALUES: u32 = 32u;
const W_BLOCK_BYTES: u32 = 22u;

fn w_decode8(block: u32, g: u32) -> W8 {
  let qh = w_u32(block + 2u) >> (8u * g);
  let qs = block + 6u + 8u * (g & 1u);
  let shift = (g >> 1u) * 4u;
  let a = vec4<f32>(w_fields4(w_u32(qs), shift, 0xfu) | (w_bits4(qh, 0u) << vec4<u32>(4u))) - 16.0;
  let b = vec4<f32>(w_fields4(w_u32(qs + 4u), shift, 0xfu) | (w_bits4(qh, 4u) << vec4<u32>(4u))) - 16.0;
  return W8(a, b, w_f16(block), 0.0);
}
