// Shared helpers for the weight decoders in this folder (concatenated after the op's body and
// before one <dtype>.wgsl snippet when a pipeline is built; see src/core/gpu/linear.ts).
//
// The op declares the weight tensor as `var<storage, read> weight: array<u32>`: the raw GGUF bytes
// of a tensor (or of a range of its rows), little-endian, padded with zeros to a multiple of 4
// bytes. Blocks of Q8_0 (34 B), Q5_0 (22 B), Q6_K (210 B) and rows of F16/BF16 need not start on
// a 4-byte boundary, so everything here addresses bytes and extracts them from the u32 words.
// No shader-f16 is needed: halves are decoded with unpack2x16float, bfloat16 by a 16-bit shift.
//
// Every <dtype>.wgsl snippet provides the same three things:
//
//   const W_BLOCK_VALUES: u32  values per block (32 or 256; 8 for F32/F16/BF16, which have none)
//   const W_BLOCK_BYTES: u32   bytes per block
//   fn w_decode8(block: u32, g: u32) -> W8
//       the 8 consecutive values [8g, 8g + 8) of the block whose first byte is `block`
//       (0 <= g < W_BLOCK_VALUES / 8), as value[i] = scale * q[i] + bias.
//
// Splitting a group into small integers q and one (scale, bias) pair lets a dot product with x
// cost scale * dot(q, x) + bias * sum(x) (matvec), while a kernel that wants plain values (matmul,
// which decodes a tile once and reuses it for many tokens) forms scale * q + bias. Every format
// has one scale and one bias per 8 aligned values: Q6_K's scales cover 16, the other K-quants' 32.
// The products scale * q are exact in f32 (at most 11 + 8 + 6 significant bits), so
// scale * q + bias rounds once, as ggml's dequantisation does (src/core/quant/dequant.ts).

struct W8 {
  q0: vec4<f32>,  // q[0..4)
  q1: vec4<f32>,  // q[4..8)
  scale: f32,
  bias: f32,
}

// The word holding byte `byte`, which must be 4-aligned.
fn w_word(byte: u32) -> u32 {
  return weight[byte >> 2u];
}

// Four bytes starting at any byte offset, little-endian. When `byte` is aligned the second
// word is shifted out entirely; reading it past the end is safe (WebGPU bounds every access).
fn w_u32(byte: u32) -> u32 {
  let i = byte >> 2u;
  let s = (byte & 3u) * 8u;
  return (weight[i] >> s) | ((weight[i + 1u] << 1u) << (31u - s));
}

// One byte, 0..255.
fn w_byte(byte: u32) -> u32 {
  return (weight[byte >> 2u] >> ((byte & 3u) * 8u)) & 0xffu;
}

// The IEEE half at a 2-aligned byte offset, as f32.
fn w_f16(byte: u32) -> f32 {
  return unpack2x16float(weight[byte >> 2u] >> ((byte & 2u) * 8u)).x;
}

// The four bytes of `u` as signed 8-bit integers.
fn w_i8x4(u: u32) -> vec4<f32> {
  return vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(u) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u));
}

// From each of the four bytes of `u`: (byte >> shift) & mask.
fn w_fields4(u: u32, shift: u32, mask: u32) -> vec4<u32> {
  return (vec4<u32>(u) >> (vec4<u32>(0u, 8u, 16u, 24u) + shift)) & vec4<u32>(mask);
}

// Bits [first, first + 4) of `bits`, one per component.
fn w_bits4(bits: u32, first: u32) -> vec4<u32> {
  return (vec4<u32>(bits) >> (vec4<u32>(0u, 1u, 2u, 3u) + first)) & vec4<u32>(1u);
}

// The 6-bit scale and min of sub-block j (0..8) of a Q4_K/Q5_K block, from the 12 scale bytes
// at byte 4 of the block (ggml's get_scale_min_k4).
fn w_k4_scale_min(block: u32, j: u32) -> vec2<u32> {
  let s = block + 4u;
  if (j < 4u) {
    return vec2<u32>(w_byte(s + j) & 63u, w_byte(s + j + 4u) & 63u);
  }
  let lo = w_byte(s + j + 4u);
  return vec2<u32>((lo & 0xfu) | ((w_byte(s + j - 4u) >> 6u) << 4u), (lo >> 4u) | ((w_byte(s + j) >> 6u) << 4u));
}
