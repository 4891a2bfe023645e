// Matrix-vector product of one token over Q6_K weights (decode), 32 values a step:
//   y[y_offset + r] = epilogue(sum_c W[first_row + r, c] * x[x_offset + c])   for r < rows
// The same product as matvec.forward.wgsl over weights/q6_k.wgsl, with the same bindings and params
// (matvec_bindings.wgsl) and epilogues (gelu.wgsl), summed in another order (rounding only). That one decodes 8 values a
// step, each time re-reading the block's scale and d and realigning its words; this one takes 32
// values a step with about a third of the loads, neighbouring lanes reading neighbouring words
// (H200, bench/micro.ts --q6k: the 262,144 x 1,536 output matrix in 0.19 ms instead of 0.33).
//
// A Q6_K block (210 bytes, 256 values) is {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}. Value
// 128n + 32s + l (half n, quarter s, 0 <= l < 32) is d * scales[8n + 2s + l/16] * (q - 32), with
// q's low 4 bits the nibble s >> 1 of ql[64n + 32(s & 1) + l] and its high 2 bits the bits 2s, 2s+1
// of qh[32n + l]. Unit u of a row is block u >> 3, half n = (u >> 2) & 1 and l in 16j + 8h + [0, 8)
// with j = (u >> 1) & 1, h = u & 1: 8 bytes of ql for quarters 0 and 2, 8 for 1 and 3, 8 of qh
// (each value's 2 bits for all four quarters), four scales and d, 32 values in all. LANES_PER_ROW
// lanes walk a row's units, so the eight lanes of a block read its ql and qh as whole 32-byte
// runs; then lanes_sum2 (matvec_reduce*.wgsl) sums them.
//
// Blocks start on 4-byte boundaries or 2 bytes past one (210 = 2 * 105), alternately along a row,
// so neighbouring lanes hold both kinds: words are read branch-free with a 0- or 16-bit funnel
// shift (words2; w_u32 and w_f16 of weights/common.wgsl, appended by linear.ts, for the rest).

override LANES_PER_ROW: u32 = 16u;
const WG_SIZE: u32 = 256u;
override ROWS: u32 = WG_SIZE / LANES_PER_ROW;
const BLOCK_BYTES: u32 = 210u;

// Params, weight, x, y and aux: matvec_bindings.wgsl, which linear.ts puts in front of this body.

// The 8 bytes from a 2-aligned byte offset, as two little-endian words. With a 0-bit shift the
// second term is empty: of b << 1, whose bit 0 is clear, a 31-bit shift keeps only bit 0.
fn words2(byte: u32) -> vec2<u32> {
  let i = byte >> 2u;
  let s = vec2<u32>((byte & 2u) * 8u);
  let a = vec2<u32>(weight[i], weight[i + 1u]);
  let b = vec2<u32>(weight[i + 1u], weight[i + 2u]);
  return (a >> s) | ((b << vec2<u32>(1u)) << (vec2<u32>(31u) - s));
}

// The four bytes of `u` as f32.
fn bytes4(u: u32) -> vec4<f32> {
  return vec4<f32>((vec4<u32>(u) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(255u));
}

// Byte `i` of `u` as a signed 8-bit integer.
fn i8_of(u: u32, i: u32) -> f32 {
  return f32(bitcast<i32>(u << (24u - 8u * i)) >> 24u);
}

// Unit u of the row starting at byte row_byte, times x.
fn unit_dot(row_byte: u32, u: u32) -> f32 {
  let block = row_byte + (u >> 3u) * BLOCK_BYTES;
  let n = (u >> 2u) & 1u;
  let j = (u >> 1u) & 1u;
  let l = 16u * j + 8u * (u & 1u);
  let ql02 = words2(block + 64u * n + l);
  let ql13 = words2(block + 64u * n + 32u + l);
  let qh = words2(block + 128u + 32u * n + l);
  // Scales 8n + 2s + j for s = 0..3: bytes j, j + 2 of the half's first scale word and of its second.
  let sa = w_u32(block + 192u + 8u * n);
  let sb = w_u32(block + 196u + 8u * n);
  // q of quarter s, four values a word.
  let lo = vec2<u32>(0x0f0f0f0fu);
  let hi = vec2<u32>(0x30303030u);
  let q0 = (ql02 & lo) | ((qh << vec2<u32>(4u)) & hi);
  let q1 = (ql13 & lo) | ((qh << vec2<u32>(2u)) & hi);
  let q2 = ((ql02 >> vec2<u32>(4u)) & lo) | (qh & hi);
  let q3 = ((ql13 >> vec2<u32>(4u)) & lo) | ((qh >> vec2<u32>(2u)) & hi);
  let xb = params.x_offset / 4u + (u >> 3u) * 64u + n * 32u + l / 4u;
  var dots = vec4<f32>(0.0);  // quarter s: dot(q, x)
  var sums = vec4<f32>(0.0);  // quarter s: sum(x)
  let one = vec4<f32>(1.0);
  for (var i = 0u; i < 2u; i++) {
    let x0 = x[xb + i];
    let x1 = x[xb + 8u + i];
    let x2 = x[xb + 16u + i];
    let x3 = x[xb + 24u + i];
    dots += vec4<f32>(dot(bytes4(q0[i]), x0), dot(bytes4(q1[i]), x1), dot(bytes4(q2[i]), x2), dot(bytes4(q3[i]), x3));
    sums += vec4<f32>(dot(x0, one), dot(x1, one), dot(x2, one), dot(x3, one));
  }
  let scales = vec4<f32>(i8_of(sa, j), i8_of(sa, j + 2u), i8_of(sb, j), i8_of(sb, j + 2u));
  return w_f16(block + 208u) * dot(scales, dots - 32.0 * sums);
}

@compute @workgroup_size(WG_SIZE)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let lane = li % LANES_PER_ROW;
  let row = (wid.x + wid.y * nwg.x) * ROWS + li / LANES_PER_ROW;
  var acc = vec2<f32>(0.0);
  if (row < params.rows) {
    let units = params.cols / 32u;
    let row_byte = (params.first_row + row) * (params.cols / 256u) * BLOCK_BYTES;
    // Two units per step, so that their loads are in flight together.
    var u = lane;
    for (; u + LANES_PER_ROW < units; u += 2u * LANES_PER_ROW) {
      acc += vec2<f32>(unit_dot(row_byte, u), unit_dot(row_byte, u + LANES_PER_ROW));
    }
    if (u < units) {
      acc.x += unit_dot(row_byte, u);
    }
  }
  let total = lanes_sum2(vec2<f32>(acc.x + acc.y, 0.0), li).x;
  if (lane == 0u && row < params.rows) {
    y[params.y_offset + row] = matvec_epilogue(total, row);
  }
}
