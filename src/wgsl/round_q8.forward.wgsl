// Rounds a block of tokens' activations to 8 bits for matmul_int8.forward.wgsl, in blocks of 32
// columns as llama.cpp's q8_1 does: x ≈ dx * xq with dx = max|x| / 127 and xq = round(x / dx) in
// [-127, 127]. Once per input, so that every row tile of the matmuls that read it copies 48 bytes a
// block instead of rounding 128.
//
//   x    f32 [T][x_stride] from x_offset (multiples of 4), `cols` columns (a multiple of 32)
//   out  [T][cols / 32] blocks of three vec4<u32>: the 32 bytes of xq, then (dx, dx * sum xq) as
//        f32 bits and two zeros
// One thread a block: workgroup_id.x over blocks, .y over tokens.

const WG_SIZE: u32 = 64u;

struct Params {
  cols: u32,
  x_offset: u32,
  x_stride: u32,
}

struct Tokens {
  count: u32,
}

@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> out: array<vec4<u32>>;
@group(0) @binding(2) var<uniform> params: Params;
@group(0) @binding(3) var<uniform> tokens: Tokens;

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let blocks = params.cols / 32u;
  let b = wid.x * WG_SIZE + li;
  let t = wid.y;
  if (b >= blocks || t >= tokens.count) {
    return;
  }
  let at = (params.x_offset + t * params.x_stride) / 4u + 8u * b;
  var v: array<vec4<f32>, 8>;
  for (var i = 0u; i < 8u; i++) {
    v[i] = x[at + i];
  }
  // max |x| as a tree, not a chain of 32 dependent steps.
  let m4 = max(max(max(abs(v[0]), abs(v[1])), max(abs(v[2]), abs(v[3]))), max(max(abs(v[4]), abs(v[5])), max(abs(v[6]), abs(v[7]))));
  let amax = max(max(m4.x, m4.y), max(m4.z, m4.w));
  let inv = select(0.0, 127.0 / amax, amax > 0.0);
  var packed: array<u32, 8>;
  var sum = vec4<i32>(0);
  for (var i = 0u; i < 8u; i++) {
    // round(v * inv) without a conversion: adding 1.5 * 2^23 leaves the integer in the low bits.
    let q = bitcast<vec4<i32>>(v[i] * inv + 12582912.0) - 0x4B400000;
    sum += q;
    packed[i] = pack4xI8(q);
  }
  let dx = amax / 127.0;
  let o = 3u * (t * blocks + b);
  out[o] = vec4<u32>(packed[0], packed[1], packed[2], packed[3]);
  out[o + 1u] = vec4<u32>(packed[4], packed[5], packed[6], packed[7]);
  out[o + 2u] = vec4<u32>(bitcast<u32>(dx), bitcast<u32>(dx * f32(sum.x + sum.y + sum.z + sum.w)), 0u, 0u);
}
