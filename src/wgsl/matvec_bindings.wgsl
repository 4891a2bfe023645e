// The Params and bindings of the one-weight matvecs with lanes per row: matvec.forward.wgsl (any
// dtype) and matvec_q6k.forward.wgsl. linear.ts puts this part in front of either body, so both
// take the same bind group and uniform (and gelu.wgsl's epilogue reads the same aux and params).
//   weight  raw GGUF bytes as u32 words
//   x       f32 activations, read as vec4
//   y       f32 outputs; y_offset lets a row tile of a large matrix write its slice of a shared y
//   aux     the epilogue's second factor (gelu.wgsl)

struct Params {
  rows: u32,        // rows to compute
  cols: u32,        // values per row (a multiple of 32 and of W_BLOCK_VALUES; of 256 for Q6_K)
  first_row: u32,   // row of `weight` that is output row 0
  x_offset: u32,    // elements, a multiple of 4
  y_offset: u32,    // elements
  aux_offset: u32,  // elements (epilogue 1, 2)
  epilogue: u32,    // see gelu.wgsl
}

@group(0) @binding(0) var<storage, read> weight: array<u32>;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;
@group(0) @binding(4) var<storage, read> aux: array<f32>;
