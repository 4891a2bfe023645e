// GPU sampler, the draw (after sample.common.wgsl and sample.select.wgsl): the first kept token in
// index order whose running weight exceeds r × (total kept weight), weights exp((s − M)/T), kept =
// key(s) ≥ floor_key.
//   draw_sums  one workgroup per block: the block's kept weight (only when a filter is on; with no
//              filter the stats' block sums, rescaled to the global max, serve). After a radix
//              select it first makes the last step's pick (the final floor; workgroup 0 stores it).
//   draw_pick  one workgroup: thread j sums blocks [j·per, (j+1)·per); a search over FOLD groups
//              of FOLD threads, then the thread's blocks, finds the block where the running weight
//              crosses r·W; the WG_SIZE threads then weigh that block's CHUNK tokens (PER_THREAD
//              consecutive each) and the same search over groups, threads and tokens finds the token.
// Each level's running sum adds the same values in the same order as the level above summed them,
// so a crossing found above is found below, up to the rounding of rem − (weight before it); when
// none is (r·W within rounding of a boundary), the last unit with weight is taken.

var<workgroup> t_sum: array<f32, WG_SIZE>;
var<workgroup> g_sum: array<f32, WG_SIZE>;
var<workgroup> chosen_block: u32;
var<workgroup> chosen_rem: f32;

struct Choice {
  index: u32,
  rem: f32,
}

// The first of p[start .. start + n) whose running sum exceeds rem, with rem less the weight before
// it; else the last with weight and rem = 3e38 (so the levels below also take their last).
fn choose(p: ptr<workgroup, array<f32, WG_SIZE>>, start: u32, n: u32, rem: f32) -> Choice {
  var acc = 0.0;
  var last = NONE;
  for (var u = 0u; u < n; u++) {
    let v = (*p)[start + u];
    if (v > 0.0) {
      if (acc + v > rem) {
        return Choice(start + u, rem - acc);
      }
      acc += v;
      last = start + u;
    }
  }
  return Choice(last, 3.0e38);
}

fn block_weight(b: u32) -> f32 {
  let p = partials[b];
  if ((params.flags & FLAG_FILTERED) != 0u) {
    return p.draw_sum;
  }
  return p.sum_w * weight(p.max_s, state.max_s);
}

fn element_weight(i: u32, floor: u32, m: f32) -> f32 {
  if (i >= params.vocab) {
    return 0.0;
  }
  let s = scores[i];
  return select(0.0, weight(s, m), key_of(s) >= floor);
}

@compute @workgroup_size(WG_SIZE)
fn draw_sums(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  var floor: u32;
  if (sel_step.index != NONE) {
    floor = pick_step(sel_step.index, lid).floor;
    if (wid.x == 0u && lid == 0u) {
      state.floor_key = floor;
    }
  } else {
    floor = state.floor_key;
  }
  let base = wid.x * CHUNK;
  let vocab = params.vocab;
  let m = state.max_s;
  var s: array<f32, PER_THREAD>;
  for (var q = 0u; q < PER_THREAD; q++) {
    s[q] = scores[min(base + lid + q * WG_SIZE, vocab - 1u)];
  }
  var sum = 0.0;
  for (var q = 0u; q < PER_THREAD; q++) {
    if (base + lid + q * WG_SIZE < vocab && key_of(s[q]) >= floor) {
      sum += weight(s[q], m);
    }
  }
  t_sum[lid] = sum;
  workgroupBarrier();
  if (lid < FOLD) {
    var acc = 0.0;
    for (var u = 0u; u < FOLD; u++) {
      acc += t_sum[lid * FOLD + u];
    }
    g_sum[lid] = acc;
  }
  workgroupBarrier();
  if (lid == 0u) {
    var acc = 0.0;
    for (var g = 0u; g < FOLD; g++) {
      acc += g_sum[g];
    }
    partials[wid.x].draw_sum = acc;
  }
}

@compute @workgroup_size(WG_SIZE)
fn draw_pick(@builtin(local_invocation_index) lid: u32) {
  let nb = params.blocks;
  let per = (nb + WG_SIZE - 1u) / WG_SIZE;
  let first = min(lid * per, nb);
  let end = min(first + per, nb);
  var sum = 0.0;
  for (var b = first; b < end; b++) {
    sum += block_weight(b);
  }
  t_sum[lid] = sum;
  workgroupBarrier();
  if (lid < FOLD) {
    var acc = 0.0;
    for (var u = 0u; u < FOLD; u++) {
      acc += t_sum[lid * FOLD + u];
    }
    g_sum[lid] = acc;
  }
  workgroupBarrier();
  if (lid == 0u) {
    var total = 0.0;
    for (var g = 0u; g < FOLD; g++) {
      total += g_sum[g];
    }
    result.total = total;
    var block = NONE;
    var rem = 0.0;
    let cg = choose(&g_sum, 0u, FOLD, params.r * total);
    if (cg.index != NONE) {
      let ct = choose(&t_sum, cg.index * FOLD, FOLD, cg.rem);
      if (ct.index != NONE) {
        // The thread's blocks, as it summed them.
        let tf = min(ct.index * per, nb);
        let te = min(tf + per, nb);
        var acc = 0.0;
        var found = false;
        for (var b = tf; b < te; b++) {
          let v = block_weight(b);
          if (v > 0.0) {
            block = b;
            if (acc + v > ct.rem) {
              rem = ct.rem - acc;
              found = true;
              break;
            }
            acc += v;
          }
        }
        if (!found) {
          rem = 3.0e38;
        }
      }
    }
    chosen_block = block;
    chosen_rem = rem;
  }
  workgroupBarrier();
  let block = chosen_block;
  let floor = state.floor_key;
  let m = state.max_s;
  let base = min(block, nb - 1u) * CHUNK + lid * PER_THREAD;
  var acc = 0.0;
  for (var q = 0u; q < PER_THREAD; q++) {
    acc += element_weight(base + q, floor, m);
  }
  t_sum[lid] = acc;
  workgroupBarrier();
  if (lid < FOLD) {
    var a = 0.0;
    for (var u = 0u; u < FOLD; u++) {
      a += t_sum[lid * FOLD + u];
    }
    g_sum[lid] = a;
  }
  workgroupBarrier();
  if (lid == 0u) {
    var id = NONE;
    if (block != NONE) {
      let cg = choose(&g_sum, 0u, FOLD, chosen_rem);
      if (cg.index != NONE) {
        let ct = choose(&t_sum, cg.index * FOLD, FOLD, cg.rem);
        if (ct.index != NONE) {
          let first_i = block * CHUNK + ct.index * PER_THREAD;
          var a = 0.0;
          for (var q = 0u; q < PER_THREAD; q++) {
            let v = element_weight(first_i + q, floor, m);
            if (v > 0.0) {
              id = first_i + q;
              if (a + v > ct.rem) {
                break;
              }
              a += v;
            }
          }
        }
      }
    }
    if (id == NONE) {
      id = state.arg;
    }
    result.id = id;
    result.logprob = logits[id] - state.lse;
    result.threshold_key = floor;
  }
}
