// The epilogue of the matvec kernels (matvec.forward.wgsl, matvec_rows.forward.wgsl), which
// declare `aux`, params.aux_offset and params.epilogue:
//   0: acc                                    plain product
//   1: gelu_tanh(aux[aux_offset + r]) * acc   up projection times the activated gate
//   2: gelu_tanh(acc) * aux[aux_offset + r]   activated gate times a per-layer input
// gelu_tanh is the expression of elementwise.forward.wgsl (OP_GELU_MUL), so a fused epilogue gives
// the same bits as the separate elementwise pass.

fn gelu_tanh(x: f32) -> f32 {
  let u2 = 1.5957691216057308 * (x + 0.044715 * x * x * x);  // 2u
  return x / (1.0 + exp(-clamp(u2, -80.0, 80.0)));
}

fn matvec_epilogue(acc: f32, row: u32) -> f32 {
  switch (params.epilogue) {
    case 1u: { return gelu_tanh(aux[params.aux_offset + row]) * acc; }
    case 2u: { return gelu_tanh(acc) * aux[params.aux_offset + row]; }
    default: { return acc; }
  }
}
