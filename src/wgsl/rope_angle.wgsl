// RoPE angles, shared by the kernels that rotate (rope forward and backward, qk_norm_rope): the
// (cos, sin) of position pos times a frequency.
//
// Angles reach 10^5 radians and more, beyond what f32 sin/cos (or f32 products) can
// take directly. freqs[j] holds w_j / (2 pi), turns per position, as three f32 a + b + c (built
// in float64 on the CPU): a and b have at most 12 significant bits. The position (< 2^24) is split
// as ph * 4096 + pl with ph, pl < 4096, so ph*4096*a, ph*4096*b, pl*a, pl*b are exact in f32 and
// so are their fractional parts; pos * c is tiny. The fraction of a turn is summed modulo 1
// (error about 2^-22 turns), then sin and cos come from polynomials on [-pi/4, pi/4] plus a
// quadrant swap, independent of the driver's sin/cos accuracy.

const TWO_PI: f32 = 6.283185307179586;

// pos * (f.x + f.y + f.z) modulo 1.
fn turns(pos: u32, f: vec4<f32>) -> f32 {
  let ph = f32(pos >> 12u) * 4096.0;
  let pl = f32(pos & 4095u);
  var u = fract(pl * f.y);
  u = fract(u + fract(pl * f.x));
  u = fract(u + fract(ph * f.y));
  u = fract(u + fract(ph * f.x));
  return fract(u + f32(pos) * f.z);
}

// (cos, sin) of 2 pi u for u in [0, 1].
fn cos_sin_turns(u: f32) -> vec2<f32> {
  let quadrant = round(u * 4.0);
  let r = (u - quadrant * 0.25) * TWO_PI;  // in [-pi/4, pi/4]
  let r2 = r * r;
  let s = r * (1.0 + r2 * (-1.0 / 6.0 + r2 * (1.0 / 120.0 + r2 * (-1.0 / 5040.0 + r2 * (1.0 / 362880.0)))));
  let c = 1.0 + r2 * (-0.5 + r2 * (1.0 / 24.0 + r2 * (-1.0 / 720.0 + r2 * (1.0 / 40320.0 + r2 * (-1.0 / 3628800.0)))));
  switch (u32(quadrant) & 3u) {
    case 0u: { return vec2<f32>(c, s); }
    case 1u: { return vec2<f32>(-s, c); }
    case 2u: { return vec2<f32>(-c, -s); }
    default: { return vec2<f32>(s, -c); }
  }
}
