// Token embedding gather for a block of tokens, from one row tile of a (possibly quantised) table:
//   out[out_offset + t * out_stride + c] = scale * E[ids[ids_offset + t], c]      for c < cols
// for each t < tokens.n whose id lies in [first_row, first_row + rows); the tile's buffer holds
// exactly those rows, row first_row at byte 0. Tokens whose id is outside the tile are not written,
// so a table split into several buffers is gathered by one dispatch per tile.
//
// This is the op body; the pipeline appends weights/common.wgsl and one weights/<dtype>.wgsl,
// which supply W_BLOCK_VALUES, W_BLOCK_BYTES and w_decode8 (see common.wgsl).
//
// Work split: workgroup_id.y is the token, each thread decodes one 8-value group of its row.

const WG_SIZE: u32 = 64u;
const GROUPS_PER_BLOCK: u32 = W_BLOCK_VALUES / 8u;

struct Params {
  cols: u32,        // values per row (a multiple of 8 and of W_BLOCK_VALUES)
  first_row: u32,   // vocabulary row held at byte 0 of `weight`
  rows: u32,        // rows held by this tile
  ids_offset: u32,  // elements into ids
  out_offset: u32,  // elements
  out_stride: u32,  // elements between tokens of out
  scale: f32,       // multiplies every value (sqrt(d_model) for Gemma)
}

struct Count {
  n: u32,
}

@group(0) @binding(0) var<storage, read> ids: array<u32>;
@group(0) @binding(1) var<storage, read> weight: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;
@group(0) @binding(4) var<uniform> tokens: Count;

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let t = wid.y;
  let g = wid.x * WG_SIZE + lid.x;
  if (t >= tokens.n || g >= params.cols / 8u) {
    return;
  }
  let id = ids[params.ids_offset + t];
  if (id < params.first_row || id - params.first_row >= params.rows) {
    return;
  }
  let row_byte = (id - params.first_row) * (params.cols / W_BLOCK_VALUES) * W_BLOCK_BYTES;
  let w = w_decode8(row_byte + (g / GROUPS_PER_BLOCK) * W_BLOCK_BYTES, g % GROUPS_PER_BLOCK);
  let v0 = (w.scale * w.q0 + w.bias) * params.scale;
  let v1 = (w.scale * w.q1 + w.bias) * params.scale;
  let o = params.out_offset + t * params.out_stride + 8u * g;
  for (var i = 0u; i < 4u; i++) {
    out[o + i] = v0[i];
    out[o + 4u + i] = v1[i];
  }
}
