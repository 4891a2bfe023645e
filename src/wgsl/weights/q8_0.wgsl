// Q8_0: 34-byte blocks of 32 values {f16 d; i8 qs[32]}, value = d * qs[j].
// Blocks start at any even byte, so the quants are read with unaligned w_u32.
// Snippet contract: see weights/common.wgsl.

const W_BLOCK_VALUES: u32 = 32u;
const W_BLOCK_BYTES: u32 = 34u;

fn w_decode8(block: u32, g: u32) -> W8 {
  let qs = block + 2u + 8u * g;
  return W8(w_i8x4(w_u32(qs)), w_i8x4(w_u32(qs + 4u)), w_f16(block), 0.0);
}
