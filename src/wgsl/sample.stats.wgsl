// GPU sampler, first stage (after sample.common.wgsl):
//   stats     one workgroup per block of CHUNK tokens: applies the entries (bias, penalties) to the
//             block's logits, writes the scores s (when sampling), and folds the block into a
//             Partial: max and Σexp of the raw logits, max s and its lowest index, Σ exp((s − max)/T).
//   finalize  one workgroup: folds the partials into the state (log-sum-exp, max s, argmax, the
//             min-p threshold, the first radix step of top-k and of top-p), clears the histograms,
//             and for greedy (temperature 0) writes the result.

struct Acc {
  max_raw: f32,
  sum_raw: f32,
  max_s: f32,
  arg: u32,
  sum_w: f32,
}

var<workgroup> wg_vals: array<f32, CHUNK>;
var<workgroup> wg_acc: array<Acc, WG_SIZE>;

fn empty_acc() -> Acc {
  return Acc(NEG, 0.0, NEG, NONE, 0.0);
}

// Two running (max, Σexp(x − max)) pairs and argmaxes combined; the argmax keeps the lowest index on ties.
fn combine(a: Acc, b: Acc) -> Acc {
  var o: Acc;
  o.max_raw = max(a.max_raw, b.max_raw);
  o.sum_raw = a.sum_raw * exp_neg(a.max_raw - o.max_raw) + b.sum_raw * exp_neg(b.max_raw - o.max_raw);
  o.max_s = max(a.max_s, b.max_s);
  let take_b = b.arg != NONE && (a.arg == NONE || b.max_s > a.max_s || (b.max_s == a.max_s && b.arg < a.arg));
  o.arg = select(a.arg, b.arg, take_b);
  if ((params.flags & FLAG_SAMPLE) != 0u) {
    o.sum_w = a.sum_w * weight(a.max_s, o.max_s) + b.sum_w * weight(b.max_s, o.max_s);
  } else {
    o.sum_w = 0.0;
  }
  return o;
}

fn entry_score(logit: f32, e: Entry) -> f32 {
  var s = logit + e.bias;
  if (e.count > 0u) {
    if (params.rep != 1.0) {
      s = select(s * params.rep, s / params.rep, s > 0.0);
    }
    s = s - e.sub;
  }
  return s;
}

// Folds wg_acc[0..WG_SIZE) into wg_acc[0]: FOLD threads fold FOLD each, then thread 0 folds those.
fn reduce_workgroup(lid: u32) {
  workgroupBarrier();
  if (lid < FOLD) {
    var acc = wg_acc[lid * FOLD];
    for (var u = 1u; u < FOLD; u++) {
      acc = combine(acc, wg_acc[lid * FOLD + u]);
    }
    wg_acc[lid * FOLD] = acc;
  }
  workgroupBarrier();
  if (lid == 0u) {
    var acc = wg_acc[0];
    for (var g = 1u; g < FOLD; g++) {
      acc = combine(acc, wg_acc[g * FOLD]);
    }
    wg_acc[0] = acc;
  }
}

@compute @workgroup_size(WG_SIZE)
fn stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let vocab = params.vocab;
  let base = wid.x * CHUNK;
  let sample = (params.flags & FLAG_SAMPLE) != 0u;
  var raw: array<f32, PER_THREAD>;
  var s: array<f32, PER_THREAD>;
  for (var q = 0u; q < PER_THREAD; q++) {
    let i = base + lid + q * WG_SIZE;
    raw[q] = select(NEG, logits[min(i, vocab - 1u)], i < vocab);
    s[q] = raw[q];
  }
  if (params.n_entries > 0u) {
    for (var q = 0u; q < PER_THREAD; q++) {
      wg_vals[lid + q * WG_SIZE] = raw[q];
    }
    workgroupBarrier();
    for (var e = lid; e < params.n_entries; e += WG_SIZE) {
      let entry = entries[e];
      if (entry.id >= base && entry.id - base < CHUNK && entry.id < vocab) {
        wg_vals[entry.id - base] = entry_score(logits[entry.id], entry);
      }
    }
    workgroupBarrier();
    for (var q = 0u; q < PER_THREAD; q++) {
      s[q] = select(NEG, wg_vals[lid + q * WG_SIZE], base + lid + q * WG_SIZE < vocab);
    }
  }
  var acc = empty_acc();
  for (var q = 0u; q < PER_THREAD; q++) {
    let i = base + lid + q * WG_SIZE;
    if (i < vocab) {
      if (sample) {
        scores[i] = s[q];
      }
      acc.max_raw = max(acc.max_raw, raw[q]);
      if (acc.arg == NONE || s[q] > acc.max_s) {
        acc.max_s = s[q];
        acc.arg = i;
      }
    }
  }
  for (var q = 0u; q < PER_THREAD; q++) {
    if (base + lid + q * WG_SIZE < vocab) {
      acc.sum_raw += exp_neg(raw[q] - acc.max_raw);
      if (sample) {
        acc.sum_w += weight(s[q], acc.max_s);
      }
    }
  }
  wg_acc[lid] = acc;
  reduce_workgroup(lid);
  if (lid == 0u) {
    let a = wg_acc[0];
    partials[wid.x] = Partial(a.max_raw, a.sum_raw, a.max_s, a.arg, a.sum_w, 0.0, 0u, 0u);
  }
}

@compute @workgroup_size(WG_SIZE)
fn finalize(@builtin(local_invocation_index) lid: u32) {
  var acc = empty_acc();
  for (var b = lid; b < params.blocks; b += WG_SIZE) {
    let p = partials[b];
    acc = combine(acc, Acc(p.max_raw, p.sum_raw, p.max_s, p.arg, p.sum_w));
  }
  for (var b = lid; b < 2u * BINS * STEPS; b += WG_SIZE) {
    atomicStore(&hist[b], 0u);
  }
  wg_acc[lid] = acc;
  reduce_workgroup(lid);
  if (lid == 0u) {
    let a = wg_acc[0];
    let lse = a.max_raw + log(a.sum_raw);
    state.lse = lse;
    state.max_s = a.max_s;
    state.arg = a.arg;
    var floor = 0u;
    if ((params.flags & FLAG_MIN_P) != 0u) {
      floor = key_of(a.max_s + params.min_p_offset);
    }
    state.floor_key = floor;
    state.min_p_key = floor;
    // The first step of top-k counts every token against k; that of top-p starts above the floor.
    state.sels[0] = Sel(0u, 0u, 0u, params.top_k, 0u, 0u, 0u, 0u);
    state.sels[4] = Sel(0u, 0u, 0u, 0u, 0u, floor, 0u, 0u);
    if ((params.flags & FLAG_SAMPLE) == 0u) {
      result = Result(a.arg, logits[a.arg] - lse, key_of(a.max_s), 1.0);
    }
  }
}
