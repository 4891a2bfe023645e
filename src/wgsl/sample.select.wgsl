// GPU sampler, exact thresholds by radix select on the order-preserving keys of the scores (after
// sample.common.wgsl). Both selections find the largest key t with F(t) ≥ goal, F(t) = the weight
// of the candidates with key ≥ t (F falls as t rises):
//   steps 0..3  top-k: weight 1 per token, every token a candidate, goal k → t = the key of the
//               k-th largest score (ties at it all have key ≥ t).
//   steps 4..7  top-p: weight exp((s − M)/T) as 64-bit fixed point (w · 2^F, exact integer sums,
//               so the order of the atomic adds does not matter), candidates = the tokens top-k
//               and min-p kept (key ≥ floor), goal topP × (their total weight).
// Four steps of one 8-bit digit each, high digit first. Step t's dispatch (hist_main, one
// workgroup per block) histograms the digit over the candidates whose higher digits equal the
// prefix chosen so far into histogram t (workgroup atomics, then global atomics). The pick of a
// step walks its bins from the top, adding their weight to what lies above, until the sum reaches
// the goal: that bin is the digit. There is no dispatch for the pick: every workgroup of the next
// dispatch (step t + 1, or draw_sums after the last step) makes it, from the same integers, so
// all agree; workgroup 0 stores the result (state.sels[t + 1]) for the dispatch after. After step
// 3, t_k gives the top-p candidates' floor max(t_k, min-p key); after step 7, t_p is the floor.

var<workgroup> wg_lo: array<atomic<u32>, BINS>;
var<workgroup> wg_hi: array<atomic<u32>, BINS>;
var<workgroup> bin_w: array<vec2<u32>, BINS>;
var<workgroup> group_w: array<vec2<u32>, 16>;
var<workgroup> picked: Sel;

// w ∈ [0, 1] (a little above 1 is fine) as w · 2^F in 64 bits: hi = ⌊w·2^(F−32)⌋, lo = the fraction · 2^32.
fn fixed64(w: f32) -> vec2<u32> {
  let x = w * params.mass_scale;
  let hi = floor(x);
  return vec2<u32>(u32((x - hi) * 4294967296.0), u32(hi));
}

fn to_f32(a: vec2<u32>) -> f32 {
  return f32(a.y) * 4294967296.0 + f32(a.x);
}

// A non-negative float (below 2^64) as a 64-bit integer, truncated.
fn from_f32(x: f32) -> vec2<u32> {
  let hi = floor(x * 2.3283064365386963e-10);
  return vec2<u32>(u32(x - hi * 4294967296.0), u32(hi));
}

// The select state after the pick of step t (from histogram t and state.sels[t]). Every thread of
// the workgroup must call it (it has barriers); the result is the same in all workgroups.
fn pick_step(t: u32, lid: u32) -> Sel {
  let base = t * 2u * BINS;
  for (var b = lid; b < BINS; b += WG_SIZE) {
    bin_w[b] = vec2<u32>(atomicLoad(&hist[base + 2u * b]), atomicLoad(&hist[base + 2u * b + 1u]));
  }
  workgroupBarrier();
  if (lid < 16u) {
    var acc = vec2<u32>(0u, 0u);
    for (var u = 0u; u < 16u; u++) {
      acc = add64(acc, bin_w[lid * 16u + u]);
    }
    group_w[lid] = acc;
  }
  workgroupBarrier();
  if (lid == 0u) {
    let sel = state.sels[t];
    let mass = t >= 4u;
    let round = t & 3u;
    var above = vec2<u32>(sel.above_lo, sel.above_hi);
    var goal = vec2<u32>(sel.goal_lo, sel.goal_hi);
    if (mass && round == 0u) {
      var total = vec2<u32>(0u, 0u);
      for (var g = 0u; g < 16u; g++) {
        total = add64(total, group_w[g]);
      }
      goal = from_f32(to_f32(total) * params.top_p);
      if (ge64(goal, total)) {
        goal = total;
      }
    }
    // The highest group, then bin, at which the weight from the top reaches the goal; group 0 and
    // bin 0 of the group when none does (rounding), which keeps every remaining candidate.
    var g = 15u;
    loop {
      if (g == 0u) {
        break;
      }
      let with_g = add64(above, group_w[g]);
      if (ge64(with_g, goal)) {
        break;
      }
      above = with_g;
      g--;
    }
    var bin = g * 16u + 15u;
    loop {
      if (bin == g * 16u) {
        break;
      }
      let with_bin = add64(above, bin_w[bin]);
      if (ge64(with_bin, goal)) {
        break;
      }
      above = with_bin;
      bin--;
    }
    let prefix = sel.prefix | (bin << (24u - 8u * round));
    if (round < 3u) {
      picked = Sel(prefix, above.x, above.y, goal.x, goal.y, sel.floor, 0u, 0u);
    } else if (!mass) {
      // top-k done: the first top-p step's state (its goal is set by its own pick).
      picked = Sel(0u, 0u, 0u, 0u, 0u, max(state.min_p_key, prefix), 0u, 0u);
    } else {
      // top-p done: the floor is the threshold.
      picked = Sel(prefix, 0u, 0u, 0u, 0u, prefix, 0u, 0u);
    }
  }
  return workgroupUniformLoad(&picked);
}

@compute @workgroup_size(WG_SIZE)
fn hist_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let t = sel_step.index;
  var sel: Sel;
  if (sel_step.first != 0u) {
    sel = state.sels[t];
  } else {
    sel = pick_step(t - 1u, lid);
    if (wid.x == 0u && lid == 0u) {
      state.sels[t] = sel;
    }
  }
  for (var b = lid; b < BINS; b += WG_SIZE) {
    atomicStore(&wg_lo[b], 0u);
    atomicStore(&wg_hi[b], 0u);
  }
  workgroupBarrier();
  let vocab = params.vocab;
  let base = wid.x * CHUNK;
  let mass = t >= 4u;
  let round = t & 3u;
  let shift = 24u - 8u * round;
  let m = state.max_s;
  // Loads first, so that they are all in flight at once.
  var s: array<f32, PER_THREAD>;
  for (var q = 0u; q < PER_THREAD; q++) {
    s[q] = scores[min(base + lid + q * WG_SIZE, vocab - 1u)];
  }
  for (var q = 0u; q < PER_THREAD; q++) {
    let k = key_of(s[q]);
    if (base + lid + q * WG_SIZE < vocab && k >= sel.floor && (round == 0u || (k >> (shift + 8u)) == (sel.prefix >> (shift + 8u)))) {
      let bin = (k >> shift) & 0xffu;
      if (mass) {
        let w = fixed64(weight(s[q], m));
        let old = atomicAdd(&wg_lo[bin], w.x);
        atomicAdd(&wg_hi[bin], w.y + select(0u, 1u, old + w.x < old));
      } else {
        atomicAdd(&wg_lo[bin], 1u);
      }
    }
  }
  workgroupBarrier();
  let out = t * 2u * BINS;
  for (var b = lid; b < BINS; b += WG_SIZE) {
    let lo = atomicLoad(&wg_lo[b]);
    let hi = atomicLoad(&wg_hi[b]);
    if (lo != 0u || hi != 0u) {
      let old = atomicAdd(&hist[out + 2u * b], lo);
      let carry = select(0u, 1u, old + lo < old);
      if (hi + carry != 0u) {
        atomicAdd(&hist[out + 2u * b + 1u], hi + carry);
      }
    }
  }
}
