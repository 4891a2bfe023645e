#!/usr/bin/env python3
"""
End-to-end LoRA gradients of our GPU training step against PyTorch autograd (fp32).

Reads what scripts/dev/train-grads.ts wrote for a tiny model (run.json, model.gguf, adapter.gguf,
grads.f32, reference.f32), builds transformers' Gemma4ForCausalLM from the model GGUF with
hf_compare.py (weights dequantised from the same GGUF, float32, eager attention, TF32 off),
attaches the adapter's LoRA pairs and computes the mean cross-entropy over the labelled positions
(labels[t] = the token position t predicts, -1 = none) with autograd, then compares every dA, dB
with ours.

Two independent ways of attaching the LoRA, each on a fresh model:
  peft    the `peft` package: LoraConfig(r, lora_alpha, dropout 0) on exactly the adapted
          modules, lora_A.weight [r, in] = A and lora_B.weight [out, r] = B from the adapter GGUF
  manual  explicit fp32 parameters A [r, in], B [out, r] around each nn.Linear:
          y = W x + (alpha / r) · B (A x)
(`peft` is used when it imports; --no-peft or its absence leaves `manual` alone.)

Adapter layout (llama.cpp's): <base>.lora_a has ne [in, r], i.e. A [r][in] row-major; <base>.lora_b
has ne [r, out], i.e. B [out][r]; scale = adapter.lora.alpha / r.

Errors, per tensor (dA or dB of one adapted weight), ours against theirs:
  rel_l2   ‖ours − theirs‖₂ / ‖theirs‖₂
  rel_max  max|ours − theirs| / max|theirs|
reported as the maximum over all tensors (with the worst tensor), and the loss difference. The
check passes when both maxima and the loss's relative difference are ≤ --tol (1e-3).

  python3 scripts/dev/peft_grad_check.py RUN_DIR [RUN_DIR …] [--model-root DIR] [--out FILE]
  python3 scripts/dev/peft_grad_check.py --numpy-only RUN_DIR …   # no torch: ours vs reference.f32
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hf_compare import GGUF, build_hf, hf_to_gguf_name, log  # noqa: E402


def load_run(run_dir: str, model_root: str | None) -> dict:
    run = json.load(open(os.path.join(run_dir, "run.json")))
    model = os.path.join(model_root, run["model"], "model.gguf") if model_root else os.path.join(run_dir, "model.gguf")
    run["model_path"] = model
    run["dir"] = run_dir
    ad = GGUF(os.path.join(run_dir, "adapter.gguf"))
    if ad.meta.get("general.type") != "adapter" or ad.meta.get("adapter.type") != "lora":
        raise ValueError("adapter.gguf is not a LoRA adapter")
    alpha = float(ad.meta["adapter.lora.alpha"])
    pairs = {}
    for t in run["tensors"]:
        base, r, n_in, n_out = t["base"], t["rank"], t["in"], t["out"]
        if ad.tensors[f"{base}.lora_a"]["dims"] != [n_in, r] or ad.tensors[f"{base}.lora_b"]["dims"] != [r, n_out]:
            raise ValueError(f"{base}: adapter dims {ad.tensors[base + '.lora_a']['dims']} / {ad.tensors[base + '.lora_b']['dims']}")
        a = ad.tensor(f"{base}.lora_a")  # reversed ne: [r, in] = A
        b = ad.tensor(f"{base}.lora_b")  # [out, r] = B
        pairs[base] = (a.astype(np.float32), b.astype(np.float32), alpha / r)
    scales = {s for _, _, s in pairs.values()}
    if scales != {run["scale"]}:
        raise ValueError(f"adapter scales {scales}, run.json scale {run['scale']}")
    run["alpha_from_adapter"] = alpha
    run["pairs"] = pairs

    def grads(name):
        flat = np.fromfile(os.path.join(run_dir, name), dtype="<f4")
        if flat.size != run["elements"]:
            raise ValueError(f"{name}: {flat.size} values, expected {run['elements']}")
        out = {}
        for t in run["tensors"]:
            r, n_in, n_out = t["rank"], t["in"], t["out"]
            out[t["base"]] = (flat[t["a_offset"] : t["a_offset"] + r * n_in].reshape(r, n_in), flat[t["b_offset"] : t["b_offset"] + n_out * r].reshape(n_out, r))
        return out

    run["ours"] = grads(run["grads"])
    run["reference_grads_arrays"] = grads(run["reference_grads"]) if run.get("reference_grads") and os.path.exists(os.path.join(run_dir, run["reference_grads"])) else None
    return run


def compare(ours: dict, theirs: dict) -> dict:
    """Per tensor rel_l2 and rel_max (see the module doc), and their maxima with the worst tensors."""
    per = {}
    for base in ours:
        for part, i in (("A", 0), ("B", 1)):
            o = np.asarray(ours[base][i], dtype=np.float64)
            t = np.asarray(theirs[base][i], dtype=np.float64)
            if o.shape != t.shape:
                raise ValueError(f"{base} d{part}: shapes {o.shape} vs {t.shape}")
            d = o - t
            nt = float(np.linalg.norm(t))
            mt = float(np.max(np.abs(t)))
            zero = float(np.max(np.abs(d))) == 0.0  # both exactly zero (a weight the model never uses)
            per[f"{base} d{part}"] = {
                "rel_l2": float(np.linalg.norm(d)) / nt if nt > 0 else (0.0 if zero else float("inf")),
                "rel_max": float(np.max(np.abs(d))) / mt if mt > 0 else (0.0 if zero else float("inf")),
                "norm_theirs": nt,
            }
    worst_l2 = max(per, key=lambda k: per[k]["rel_l2"])
    worst_max = max(per, key=lambda k: per[k]["rel_max"])
    return {
        "tensors": len(per),
        "max_rel_l2": per[worst_l2]["rel_l2"],
        "worst_rel_l2": worst_l2,
        "max_rel_max": per[worst_max]["rel_max"],
        "worst_rel_max": worst_max,
        "median_rel_l2": float(np.median([v["rel_l2"] for v in per.values()])),
        "per_tensor": per,
    }


def gguf_to_module(model) -> dict:
    """GGUF base weight name -> HF module path of the nn.Linear that holds it."""
    import torch

    out = {}
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear):
            g = hf_to_gguf_name(f"{name}.weight")
            if g is not None and g.startswith("blk."):
                out[g] = name
    return out


def torch_grads(run: dict, mode: str, device: str) -> tuple[float, dict, dict]:
    import torch
    import torch.nn.functional as F

    g = GGUF(run["model_path"])
    model, _cfg, info = build_hf(g, device)
    for p in model.parameters():
        p.requires_grad_(False)
    where = gguf_to_module(model)
    # k/v weights a KV-shared layer's GGUF carries but never uses (tiny-kquant, like the real E2B
    # file): HF builds no module for them, so their true gradient is zero; ours must be exactly zero.
    unused = [b for b in run["pairs"] if b not in where]
    if any(".attn_k." not in b and ".attn_v." not in b for b in unused):
        raise KeyError(f"no HF module for {unused[:5]}")
    pairs = {b: v for b, v in run["pairs"].items() if b in where}
    names = [where[b] for b in pairs]
    params = {}
    extra: dict = {"transformers": info["transformers"], "torch": info["torch"], "attn": model.config._attn_implementation, "unused_by_hf_zero_gradient": unused}
    if mode == "peft":
        import peft
        from peft import LoraConfig, get_peft_model

        r = {t["rank"] for t in run["tensors"]}
        assert len(r) == 1
        rank = r.pop()
        cfg = LoraConfig(r=rank, lora_alpha=run["alpha_from_adapter"], lora_dropout=0.0, bias="none", target_modules=names, init_lora_weights=True)
        pm = get_peft_model(model, cfg)
        base = pm.get_base_model()
        adapted = [n for n, m in base.named_modules() if hasattr(m, "lora_A") and "default" in getattr(m, "lora_A", {})]
        if sorted(adapted) != sorted(names):
            raise ValueError(f"PEFT adapted {len(adapted)} modules, wanted {len(names)}: {sorted(set(adapted) ^ set(names))[:5]}")
        for b, (a, bb, scale) in pairs.items():
            m = base.get_submodule(where[b])
            if abs(m.scaling["default"] - scale) > 1e-12:
                raise ValueError(f"{b}: PEFT scaling {m.scaling['default']}, ours {scale}")
            with torch.no_grad():
                m.lora_A["default"].weight.copy_(torch.from_numpy(a))
                m.lora_B["default"].weight.copy_(torch.from_numpy(bb))
            params[b] = (m.lora_A["default"].weight, m.lora_B["default"].weight)
        trainable = [n for n, p in pm.named_parameters() if p.requires_grad]
        if len(trainable) != 2 * len(names):
            raise ValueError(f"{len(trainable)} trainable parameters, expected {2 * len(names)}")
        extra["peft"] = peft.__version__
        forward = pm
    else:

        class LoraLinear(torch.nn.Module):
            def __init__(self, base_linear, a, b, scale):
                super().__init__()
                self.base = base_linear
                self.A = torch.nn.Parameter(torch.from_numpy(a).to(device))
                self.B = torch.nn.Parameter(torch.from_numpy(b).to(device))
                self.scale = scale

            def forward(self, x):
                return self.base(x) + ((x @ self.A.t()) @ self.B.t()) * self.scale

        for b, (a, bb, scale) in pairs.items():
            path = where[b]
            parent_path, leaf = path.rsplit(".", 1)
            parent = model.get_submodule(parent_path)
            w = LoraLinear(getattr(parent, leaf), a, bb, scale)
            setattr(parent, leaf, w)
            params[b] = (w.A, w.B)
        forward = model

    ids = torch.tensor([run["tokens"]], dtype=torch.long, device=device)
    labels = torch.tensor(run["labels"], dtype=torch.long, device=device)
    if int((labels >= 0).sum()) != run["count"]:
        raise ValueError("labelled count differs from run.json")
    t0 = time.time()
    out = forward(input_ids=ids, use_cache=False)
    logits = out.logits[0].float()
    loss = F.cross_entropy(logits, labels, ignore_index=-1, reduction="mean")
    loss.backward()
    if device == "cuda":
        torch.cuda.synchronize()
    extra["forward_backward_ms"] = round((time.time() - t0) * 1000, 1)
    grads = {}
    for b, (pa, pb) in params.items():
        if pa.grad is None or pb.grad is None:
            raise ValueError(f"{b}: no gradient reached the LoRA parameters")
        grads[b] = (pa.grad.detach().double().cpu().numpy(), pb.grad.detach().double().cpu().numpy())
    for b in unused:
        a, bb, _ = run["pairs"][b]
        grads[b] = (np.zeros(a.shape), np.zeros(bb.shape))
    value = float(loss.item())
    del out, logits, loss, model, forward, params
    if device == "cuda":
        torch.cuda.empty_cache()
    return value, grads, extra


def strip(c: dict) -> dict:
    return {k: v for k, v in c.items() if k != "per_tensor"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="folders written by scripts/dev/train-grads.ts")
    ap.add_argument("--model-root", help="read <root>/<model>/model.gguf instead of RUN_DIR/model.gguf")
    ap.add_argument("--out", help="write the full record (per-tensor errors) here")
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--no-peft", action="store_true")
    ap.add_argument("--numpy-only", action="store_true", help="no torch: check the files and compare ours with reference.f32")
    args = ap.parse_args()

    summary: dict = {"tol": args.tol, "definitions": {
        "rel_l2": "per tensor ||ours - theirs||_2 / ||theirs||_2, max over tensors",
        "rel_max": "per tensor max|ours - theirs| / max|theirs|, max over tensors",
        "loss_rel": "|loss_ours - loss_theirs| / |loss_theirs|",
    }, "runs": {}}
    full: dict = {"runs": {}}
    device = "cpu"
    modes: list[str] = []
    if not args.numpy_only:
        import torch

        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.set_float32_matmul_precision("highest")
        device = "cuda" if torch.cuda.is_available() else "cpu"
        summary["device"] = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
        try:
            import peft  # noqa: F401

            summary["peft_installed"] = True
        except ImportError as e:
            summary["peft_installed"] = False
            log(f"peft is not installed ({e}): LoRA attached by explicit fp32 parameters only")
        modes = (["peft"] if summary["peft_installed"] and not args.no_peft else []) + ["manual"]
    ok = True
    for d in args.runs:
        run = load_run(d, args.model_root)
        label = run["model"]
        res: dict = {"tokens": len(run["tokens"]), "labelled": run["count"], "pairs": len(run["tensors"]), "rank": run["tensors"][0]["rank"],
                     "alpha": run["alpha_from_adapter"], "scale": run["scale"], "loss_ours": run["loss"]}
        if "model_sha256" in run and os.path.exists(run["model_path"]):
            h = hashlib.sha256(open(run["model_path"], "rb").read()).hexdigest()
            res["model_sha256_matches"] = h == run["model_sha256"]
            if h != run["model_sha256"]:
                ok = False
                log(f"{label}: model.gguf sha256 {h} differs from run.json's {run['model_sha256']}")
        fl: dict = {}
        if run["reference_grads_arrays"] is not None:
            c = compare(run["ours"], run["reference_grads_arrays"])
            res["ours_vs_float64_reference"] = {**strip(c), "loss_reference": run["reference"]["loss"]}
            fl["ours_vs_float64_reference"] = c
        for mode in modes:
            t0 = time.time()
            try:
                loss, theirs, extra = torch_grads(run, mode, device)
            except Exception as e:  # noqa: BLE001 - report it and go on with the other mode
                import traceback

                traceback.print_exc()
                res[f"ours_vs_{mode}"] = {"error": repr(e), "pass": False}
                ok = False
                continue
            c = compare(run["ours"], theirs)
            loss_rel = abs(run["loss"] - loss) / abs(loss)
            passed = c["max_rel_l2"] <= args.tol and c["max_rel_max"] <= args.tol and loss_rel <= args.tol
            ok = ok and passed
            res[f"ours_vs_{mode}"] = {**strip(c), "loss_torch": loss, "loss_abs_diff": abs(run["loss"] - loss), "loss_rel": loss_rel, "pass": passed, **extra, "s": round(time.time() - t0, 1)}
            fl[f"ours_vs_{mode}"] = c
            if run["reference_grads_arrays"] is not None:
                r = compare(run["reference_grads_arrays"], theirs)
                res[f"float64_reference_vs_{mode}"] = {"max_rel_l2": r["max_rel_l2"], "max_rel_max": r["max_rel_max"], "loss_rel": abs(run["reference"]["loss"] - loss) / abs(loss)}
            log(f"{label} vs {mode}: loss {run['loss']:.7f} vs {loss:.7f} (rel {loss_rel:.2e}); max rel_l2 {c['max_rel_l2']:.3e} ({c['worst_rel_l2']}), max rel_max {c['max_rel_max']:.3e} ({c['worst_rel_max']}) -> {'PASS' if passed else 'FAIL'}")
            if mode == "peft" and "manual" in modes:
                theirs_peft = theirs
                res["_peft_grads"] = theirs_peft  # kept for the peft-vs-manual line below
            if mode == "manual" and "_peft_grads" in res:
                pm = compare(res.pop("_peft_grads"), theirs)
                res["peft_vs_manual"] = {"max_rel_l2": pm["max_rel_l2"], "max_rel_max": pm["max_rel_max"]}
        res.pop("_peft_grads", None)
        summary["runs"][label] = res
        full["runs"][label] = {**res, "per_tensor": fl}
    summary["pass"] = ok if modes else None
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({**summary, **full}, fh, indent=1)
    print(json.dumps(summary, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
