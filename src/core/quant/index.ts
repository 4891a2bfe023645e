export { bf16ToF32, f16Table32, f16ToF32, f32ToBf16, f32ToF16 } from './float.js';
export { canDequantize, dequantize } from './dequant.js';
