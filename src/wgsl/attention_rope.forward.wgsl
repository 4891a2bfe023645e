// The head-group decode (decode_split of attention.forward.wgsl) for a token whose q, k and v come
// straight from their projections: it also does qk_norm_rope.forward.wgsl's work for that token,
// so a decode step saves one dispatch a layer (Gemma 4, spec §3.2):
//   q head:  rope(RMS(q) * q_norm)                    formed by each workgroup for the heads it scores
//   k head:  k_cache[slot] = rope(RMS(k) * k_norm)    (STORE_KV)
//   v head:  v_cache[slot] = RMS(v)                   (STORE_KV; unweighted)
// with slot = position % capacity and RoPE NeoX rotate-half over the first 2 * HALF values of each
// head, with the frequency table of rope.forward.wgsl and the angles of rope_angle.wgsl.
//
// Composed after rope_angle.wgsl and attention.forward.wgsl, with the caches declared read_write.
// q: a lane of decode_split holds vec4s lane, lane + DS_LANES, ... of its score head, so it can
// norm them once the DS_LANES lanes of its pair have pooled their sums of squares, and rotate them
// itself: a vec4's RoPE partner lies HALF / 4 vec4s on, HALF / (4 * DS_LANES) of its own steps
// (ops.ts binds this only when that is a whole number). k and v: the split whose keys include the
// token's own position stores them before it scores; the other splits never read that slot (a
// position's keys are all older), and decode_combine merges the splits as usual.

override STORE_KV: bool = true;
override HALF: u32 = 128u;                    // rotated pairs per head, at most DS_WG
override HALF4: u32 = HALF / 4u;              // rotated vec4s (first halves)
override HALF_STEPS: u32 = HALF4 / DS_LANES;  // a lane's steps between RoPE partners

@group(0) @binding(9) var<storage, read> freqs: array<vec4<f32>>;
@group(0) @binding(10) var<storage, read> q_w: array<vec4<f32>>;
@group(0) @binding(11) var<storage, read> k_w: array<vec4<f32>>;
@group(0) @binding(12) var<storage, read> k_new: array<vec4<f32>>;   // [kv_heads][HEAD_DIM]
@group(0) @binding(13) var<storage, read> v_new: array<vec4<f32>>;

const DR_KV4: u32 = MAX_HEAD_DIM / 4u;        // threads per k head, then per v head, in the store

var<workgroup> dr_cs: array<vec2<f32>, DS_WG>;     // (cos, sin) of each rotated pair
var<workgroup> dr_kv: array<vec4<f32>, DS_WG>;     // the normed k head (vec4s 0..), v head (DR_KV4..)
var<workgroup> dr_sum: array<f32, DS_WG>;          // their sums of squares

const_assert 2u * DR_KV4 <= DS_WG;

// (cos, sin) of the four pairs 4 * v4 .. 4 * v4 + 3, as two vec4s.
fn dr_angles(v4: u32) -> array<vec4<f32>, 2> {
  let a = dr_cs[4u * v4];
  let b = dr_cs[4u * v4 + 1u];
  let c = dr_cs[4u * v4 + 2u];
  let d = dr_cs[4u * v4 + 3u];
  return array<vec4<f32>, 2>(vec4<f32>(a.x, b.x, c.x, d.x), vec4<f32>(a.y, b.y, c.y, d.y));
}

// The token's k or v vec4 that thread li stores in the owner split (zero past the head): thread
// e < HD4 takes vec4 e of k, thread DR_KV4 + e vec4 e of v.
fn dr_load_kv(kvh: u32, li: u32) -> vec4<f32> {
  let e = li % DR_KV4;
  if (e >= HD4) {
    return vec4<f32>(0.0);
  }
  if (li >= DR_KV4) {
    return v_new[kvh * HD4 + e];
  }
  return k_new[kvh * HD4 + e];
}

// Stores the token's k and v of kv head kvh (x from dr_load_kv, kw its k_norm vec4) normed, k
// rotated, into the cache slot of position pos. dr_sum[li] holds dot(x, x).
fn dr_store_kv(kvh: u32, li: u32, pos: u32, x: vec4<f32>, kw: vec4<f32>) {
  let is_v = li >= DR_KV4;
  let e = li % DR_KV4;
  for (var stride = DR_KV4 / 2u; stride > 0u; stride >>= 1u) {
    if (e < stride) {
      dr_sum[li] += dr_sum[li + stride];
    }
    workgroupBarrier();
  }
  let y = x * inverseSqrt(dr_sum[li - e] / f32(HEAD_DIM) + params.eps) * select(kw, vec4<f32>(1.0), is_v);
  dr_kv[li] = y;
  workgroupBarrier();
  let row = cache_row(pos, kvh) + e;
  if (e < HD4) {
    if (is_v) {
      v_cache[row] = y;
    } else if (e < HALF4) {
      let cs = dr_angles(e);
      k_cache[row] = y * cs[0] - dr_kv[li + HALF4] * cs[1];
    } else if (e < 2u * HALF4) {
      let cs = dr_angles(e - HALF4);
      k_cache[row] = dr_kv[li - HALF4] * cs[1] + y * cs[0];
    } else {
      k_cache[row] = y;
    }
  }
  storageBarrier();  // the stored key and value, visible to this workgroup's reads that follow
}

@compute @workgroup_size(DS_WG)
fn decode_split_rope(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let split = wid.x;
  let kvh = wid.y;
  let pos = position.start;
  let keys = ds_keys();
  let owner = STORE_KV && split == (keys.y - 1u) / keys.z;  // holds the token's own key
  // Every load first, so that their latencies overlap: the first round's keys, the RoPE
  // frequencies, this lane's vec4s of its score head's q with their q_norm weights, and in the
  // owner split the token's k or v.
  var k_first = ds_first_keys(split, kvh, li);
  var f = vec4<f32>(0.0);
  if (li < HALF) {
    f = freqs[li];
  }
  let lane = li % DS_LANES;
  let qb = (params.q_offset + ds_score_head(kvh, li) * HEAD_DIM) / 4u + lane;
  var x: array<vec4<f32>, DS_SCORE4>;
  var w: array<vec4<f32>, DS_SCORE4>;
  for (var i = 0u; i < DS_SCORE4; i++) {
    x[i] = q[qb + DS_LANES * i];
    w[i] = q_w[lane + DS_LANES * i];
  }
  var kv = vec4<f32>(0.0);
  var kw = vec4<f32>(1.0);
  if (owner) {
    kv = dr_load_kv(kvh, li);
    if (li < HD4) {
      kw = k_w[li];
    }
  }
  if (li < HALF) {
    dr_cs[li] = cos_sin_turns(turns(pos, f));
  }
  var ss = 0.0;
  for (var i = 0u; i < DS_SCORE4; i++) {
    ss += dot(x[i], x[i]);
  }
  ds_part[li] = ss;
  dr_sum[li] = dot(kv, kv);
  workgroupBarrier();

  // q: the head's sum of squares from the DS_LANES lanes of this pair, then norm and rotate.
  var sum = 0.0;
  for (var l = 0u; l < DS_LANES; l++) {
    sum += ds_part[li - lane + l];
  }
  let inv = inverseSqrt(sum / f32(HEAD_DIM) + params.eps);
  for (var i = 0u; i < DS_SCORE4; i++) {
    x[i] = x[i] * inv * w[i];
  }
  var qv = x;
  for (var i = 0u; i < DS_SCORE4; i++) {
    let v4 = lane + DS_LANES * i;
    if (v4 < HALF4) {
      let cs = dr_angles(v4);
      let a = x[i];
      let b = x[i + HALF_STEPS];
      qv[i] = a * cs[0] - b * cs[1];
      qv[i + HALF_STEPS] = a * cs[1] + b * cs[0];
    }
  }
  if (owner) {
    dr_store_kv(kvh, li, pos, kv, kw);
    k_first = ds_first_keys(split, kvh, li);  // the first round may hold the key just stored
  }
  workgroupBarrier();  // ds_part is reused below
  ds_attend(split, kvh, li, qv, k_first);
}
