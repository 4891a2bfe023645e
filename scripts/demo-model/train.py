#!/usr/bin/env python3
"""
Trains the demo model (issue 5) and exports its weights with GGUF tensor names.

  python3 train.py train --data DIR --out DIR [--seconds S]
      DIR holds {train,heldout}.u16(.xz) and .idx(.xz) from `build.ts encode`. Trains the model
      of models/demo/config.json (settings under "train") for S seconds of wall time (the LR
      schedule follows the elapsed fraction), then writes OUT/weights.json + weights-*.bin
      (float16 shards, each under 16 MiB), OUT/loss.csv (step, tokens, seconds, lr, loss),
      OUT/summary.json (settings, throughput, held-out loss/perplexity).
  python3 train.py selftest --out DIR
      random model with perturbed norms and layer scales: float32 weights + float64 logits of a
      fixed token sequence, for check_torch.ts (our float64 CPU reference on the same weights).

Batches: rows of seq_len tokens that begin at a random sample start (so position 0 is <bos>)
and run on through the following samples; loss on every next token.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import lzma
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from gemma4_torch import Gemma4  # noqa: E402

ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
SHARD_BYTES = 15 << 20


def load_cfg():
    with open(os.path.join(ROOT, "models/demo/config.json")) as f:
        cfg = json.load(f)
    with open(os.path.join(ROOT, "models/demo/tokenizer.json")) as f:
        vocab = len(json.load(f)["tokens"])
    return cfg, vocab


def read_array(path: str, dtype) -> np.ndarray:
    if os.path.exists(path):
        return np.fromfile(path, dtype=dtype)
    with lzma.open(path + ".xz") as f:
        return np.frombuffer(f.read(), dtype=dtype)


def autocast(device: str, on: bool = True):
    return torch.autocast("cuda", dtype=torch.bfloat16) if on and device == "cuda" else contextlib.nullcontext()


def export(model: Gemma4, out: str, dtype: str, extra: dict | None = None) -> None:
    os.makedirs(out, exist_ok=True)
    np_dtype = np.float16 if dtype == "float16" else np.float32
    tensors, shard, shard_i, offset = [], bytearray(), 0, 0

    def flush():
        nonlocal shard, shard_i, offset
        if shard:
            with open(os.path.join(out, f"weights-{shard_i}.bin"), "wb") as f:
                f.write(shard)
            shard_i += 1
            shard = bytearray()
            offset = 0

    for name, dims, t in model.gguf_tensors():
        b = t.detach().float().cpu().numpy().astype(np_dtype).tobytes()
        if offset and offset + len(b) > SHARD_BYTES:
            flush()
        tensors.append({"name": name, "dims": dims, "file": f"weights-{shard_i}.bin", "offset": offset})
        shard += b
        offset += len(b)
        pad = (-offset) % 64
        shard += b"\0" * pad
        offset += pad
    flush()
    with open(os.path.join(out, "weights.json"), "w") as f:
        json.dump({"dtype": dtype, "tensors": tensors, **(extra or {})}, f, indent=0)


def batches_from(stream: np.ndarray, starts: np.ndarray, seq: int, rng: np.random.Generator, batch: int) -> np.ndarray:
    ok = starts[starts + seq + 1 <= len(stream)]
    pick = rng.choice(ok, size=batch)
    idx = pick[:, None] + np.arange(seq + 1)[None, :]
    return stream[idx]


def heldout_rows(stream: np.ndarray, starts: np.ndarray, seq: int):
    """Greedy packing of whole samples into rows of seq+1 (pad 0, mask); every token scored once."""
    ends = np.append(starts[1:], len(stream))
    rows, masks, cur = [], [], []
    for s, e in zip(starts, ends):
        sample = stream[s:e][: seq + 1]
        if len(cur) + len(sample) > seq + 1 and cur:
            rows.append(cur)
            cur = []
        cur = cur + list(sample)
    if cur:
        rows.append(cur)
    X = np.zeros((len(rows), seq + 1), np.int64)
    M = np.zeros((len(rows), seq), np.float32)
    for i, r in enumerate(rows):
        X[i, : len(r)] = r
        M[i, : len(r) - 1] = 1
    return X, M


@torch.no_grad()
def evaluate(model, X, M, device, bs=64, amp=True):
    tot, n = 0.0, 0.0
    for i in range(0, len(X), bs):
        x = torch.from_numpy(X[i : i + bs]).to(device)
        m = torch.from_numpy(M[i : i + bs]).to(device)
        with autocast(device, amp):
            logits = model(x[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="none")
        tot += float((loss * m.reshape(-1)).sum())
        n += float(m.sum())
    return tot / n


def cmd_train(a) -> int:
    t_start = time.time()
    cfg, V = load_cfg()
    tr = cfg["train"]
    seconds = a.seconds or tr["train_seconds"]
    torch.manual_seed(tr["seed"])
    rng = np.random.default_rng(tr["seed"])
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = True
    stream = torch.from_numpy(read_array(os.path.join(a.data, "train.u16"), np.uint16).astype(np.int64))
    starts = read_array(os.path.join(a.data, "train.idx"), np.uint32).astype(np.int64)
    hs = read_array(os.path.join(a.data, "heldout.u16"), np.uint16).astype(np.int64)
    hi = read_array(os.path.join(a.data, "heldout.idx"), np.uint32).astype(np.int64)
    seq, B = tr["seq_len"], a.batch or tr["batch"]
    HX, HM = heldout_rows(hs, hi, seq)
    if a.eval_rows:
        HX, HM = HX[: a.eval_rows], HM[: a.eval_rows]
    # a training subset packed the same way, to compare with the held-out loss
    TX, TM = heldout_rows(stream.numpy()[: len(hs)], starts[starts < len(hs)], seq)
    TX, TM = TX[: len(HX)], TM[: len(HX)]
    stream_np = stream.numpy()
    model = Gemma4(cfg, V).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.params.items() if p.dim() == 2]
    no_decay = [p for n, p in model.params.items() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": tr["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
        lr=tr["lr"], betas=(tr["beta1"], tr["beta2"]), eps=1e-8, **({"fused": True} if device == "cuda" else {}),
    )
    print(f"# params {n_params}, tokens {len(stream_np)}, device {device}, batch {B}x{seq}", flush=True)
    curve = []
    step, tokens = 0, 0
    t0 = time.time()
    smooth = None
    while True:
        el = time.time() - t0
        frac = el / seconds
        if frac >= 1 or (a.max_steps and step >= a.max_steps):
            break
        warm = min(1.0, (step + 1) / tr["warmup_steps"])
        lr = tr["lr"] * warm * (tr["min_lr_frac"] + (1 - tr["min_lr_frac"]) * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))
        for g in opt.param_groups:
            g["lr"] = lr
        xb = torch.from_numpy(batches_from(stream_np, starts, seq, rng, B)).to(device, non_blocking=True)
        with autocast(device):
            logits = model(xb[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(-1, V), xb[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), tr["grad_clip"])
        opt.step()
        step += 1
        tokens += B * seq
        if step % 25 == 0 or step == 1:
            lv = float(loss)
            smooth = lv if smooth is None else 0.9 * smooth + 0.1 * lv
            curve.append((step, tokens, round(time.time() - t0, 2), lr, round(lv, 4), round(float(gn), 4)))
            if step % 250 == 0 or step == 1:
                print(f"step {step} tok {tokens} t {time.time() - t0:.0f}s lr {lr:.2e} loss {lv:.4f} gn {float(gn):.3f} tok/s {tokens / (time.time() - t0):.0f}", flush=True)
    train_s = time.time() - t0
    model.eval()
    held = evaluate(model, HX, HM, device)
    trsub = evaluate(model, TX, TM, device)
    scales = [float(model.w(f"blk.{i}.layer_output_scale.weight")) for i in range(model.L)]
    summary = {
        "params": n_params, "steps": step, "tokens_seen": tokens, "train_tokens": int(len(stream_np)),
        "epochs": round(tokens / len(stream_np), 2), "train_seconds": round(train_s, 1), "tokens_per_s": round(tokens / train_s),
        "heldout_loss": round(held, 4), "heldout_ppl": round(math.exp(held), 3), "heldout_tokens": int(HM.sum()),
        "train_subset_loss": round(trsub, 4), "train_subset_ppl": round(math.exp(trsub), 3),
        "final_loss_smoothed": smooth, "layer_output_scales": scales, "settings": {**tr, "batch": B, "train_seconds": seconds},
        "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu", "torch": torch.__version__,
        "wall_s": round(time.time() - t_start, 1),
    }
    print(json.dumps(summary), flush=True)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "loss.csv"), "w") as f:
        f.write("step,tokens,seconds,lr,loss,grad_norm\n")
        for r in curve:
            f.write(",".join(str(x) for x in r) + "\n")
    with open(os.path.join(a.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    export(model, a.out, "float16", {"heldout_ppl": summary["heldout_ppl"]})
    return 0


def cmd_selftest(a) -> int:
    cfg, V = load_cfg()
    torch.manual_seed(1)
    model = Gemma4(cfg, V).double()
    with torch.no_grad():
        for n, p in model.params.items():
            if p.dim() == 1:
                p.mul_(1 + 0.2 * torch.randn_like(p))
        for i in range(model.L):
            model.w(f"blk.{i}.layer_output_scale.weight").fill_(0.6 + 0.1 * i)
    export(model, a.out, "float32")
    g = torch.Generator().manual_seed(7)
    toks = [2] + torch.randint(5, V, (a.tokens - 1,), generator=g).tolist()
    with torch.no_grad():
        logits = model(torch.tensor([toks]))[0]
    logits.float().numpy().astype("<f4").tofile(os.path.join(a.out, "logits-torch.f32"))
    with open(os.path.join(a.out, "tokens.json"), "w") as f:
        json.dump({"tokens": toks}, f)
    print(json.dumps({"out": a.out, "tokens": len(toks), "vocab": V}))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--data", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--seconds", type=float, default=0)
    t.add_argument("--batch", type=int, default=0)
    t.add_argument("--max-steps", type=int, default=0)
    t.add_argument("--eval-rows", type=int, default=0, help="evaluate only this many held-out rows (dry runs)")
    s = sub.add_parser("selftest")
    s.add_argument("--out", required=True)
    s.add_argument("--tokens", type=int, default=150)
    a = ap.parse_args()
    return {"train": cmd_train, "selftest": cmd_selftest}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
