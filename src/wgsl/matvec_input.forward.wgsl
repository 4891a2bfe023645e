// The input of matvec_q4k.forward.wgsl as it is: x from x_offset (elements, a multiple of 4).

fn prepare_input(li: u32, g: u32) {}

fn input(i: u32) -> vec4<f32> {
  return x[params.x_offset / 4u + i];
}
