// F16 weights: IEEE halves, 2 bytes a value. A "block" here is 8 values (16 bytes); rows of a
// multiple of 32 values keep it 4-aligned. Decoded with unpack2x16float (no shader-f16 needed).
// Snippet contract: see weights/common.wgsl.

const W_BLOCK_VALUES: u32 = 8u;
const W_BLOCK_BYTES: u32 = 16u;

fn w_decode8(block: u32, g: u32) -> W8 {
  let i = block >> 2u;
  let a = vec4<f32>(unpack2x16float(weight[i]), unpack2x16float(weight[i + 1u]));
  let b = vec4<f32>(unpack2x16float(weight[i + 2u]), unpack2x16float(weight[i + 3u]));
  return W8(a, b, 1.0, 0.0);
}
