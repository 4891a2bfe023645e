// F32 weights: 4 bytes a value. A "block" here is 8 values (32 bytes), always 4-aligned.
// Snippet contract: see weights/common.wgsl.

const W_BLOCK_VALUES: u32 = 8u;
const W_BLOCK_BYTES: u32 = 32u;

fn w_decode8(block: u32, g: u32) -> W8 {
  let i = block >> 2u;
  let a = vec4<u32>(weight[i], weight[i + 1u], weight[i + 2u], weight[i + 3u]);
  let b = vec4<u32>(weight[i + 4u], weight[i + 5u], weight[i + 6u], weight[i + 7u]);
  return W8(bitcast<vec4<f32>>(a), bitcast<vec4<f32>>(b), 1.0, 0.0);
}
