// The input of matvec_q4k.forward.wgsl as it is: x from x_offset (elements, a multiple of 4); and
// up to three weights (the third's bindings are declared here).

@group(0) @binding(4) var<storage, read_write> y2: array<f32>;
@group(0) @binding(8) var<storage, read> w2: array<vec4<u32>>;

fn prepare_input(li: u32, g: u32) {}

fn input(i: u32) -> vec4<f32> {
  return x[params.x_offset / 4u + i];
}

fn load(s: u32, i: u32) -> vec4<u32> {
  switch (s) {
    case 0u: { return w0[i]; }
    case 1u: { return w1[i]; }
    default: { return w2[i]; }
  }
}

fn store2(row: u32, v: f32) {
  y2[params.y_offset2 + row] = v;
}
