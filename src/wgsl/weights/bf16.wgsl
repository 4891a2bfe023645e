// BF16 weights: the high 16 bits of an f32, 2 bytes a value. A "block" here is 8 values
// (16 bytes), 4-aligned for rows of a multiple of 32 values. Value = bitcast<f32>(bits << 16).
// Snippet contract: see weights/common.wgsl.

const W_BLOCK_VALUES: u32 = 8u;
const W_BLOCK_BYTES: u32 = 16u;

fn w_bf16x2(u: u32) -> vec2<f32> {
  return bitcast<vec2<f32>>(vec2<u32>(u << 16u, u & 0xffff0000u));
}

fn w_decode8(block: u32, g: u32) -> W8 {
  let i = block >> 2u;
  let a = vec4<f32>(w_bf16x2(weight[i]), w_bf16x2(weight[i + 1u]));
  let b = vec4<f32>(w_bf16x2(weight[i + 2u]), w_bf16x2(weight[i + 3u]));
  return W8(a, b, 1.0, 0.0);
}
