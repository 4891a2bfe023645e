#!/usr/bin/env python3
"""
Parity check of our engine's logits against Hugging Face transformers (fp32) on the same GGUF.

The GGUF is read by a small reader below (no `gguf` package needed); every tensor is dequantised
with numpy (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K, value for value what
ggml's dequantize_row_* give, checked against src/core/quant/dequant.ts by `selftest`), mapped to
transformers' Gemma4TextConfig / Gemma4ForCausalLM state dict, and run in float32 on the GPU
(TF32 off, eager attention). Our logits come from bench/hf-logits.ts (float32 files).

Subcommands:
  selftest GGUF DUMPDIR      compare the numpy dequantisers with dumps of our TS dequantiser
                             (DUMPDIR/<tensor>.f32; written by tmp/dequant-dump.ts, see README)
  config GGUF                print the transformers config this GGUF maps to (needs transformers)
  compare --model GGUF --run DIR [--out FILE] [--label L]
                             DIR holds tokens.json and logits-*.f32 ([T][V] float32 LE) from
                             bench/hf-logits.ts; builds Gemma4ForCausalLM, runs the tokens, compares

Only numpy is needed for `selftest`; `config`/`compare` need torch and transformers.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import struct
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

# ---------------------------------------------------------------------------------------------
# GGUF reader
# ---------------------------------------------------------------------------------------------

# ggml types: id -> (name, block size in values, block size in bytes)
GGML = {
    0: ("F32", 1, 4),
    1: ("F16", 1, 2),
    2: ("Q4_0", 32, 18),
    3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24),
    8: ("Q8_0", 32, 34),
    12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210),
    30: ("BF16", 1, 2),
}

_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_NP = {0: np.uint8, 1: np.int8, 2: np.uint16, 3: np.int16, 4: np.uint32, 5: np.int32, 6: np.float32, 7: np.bool_, 10: np.uint64, 11: np.int64, 12: np.float64}


class GGUF:
    """Header, metadata and tensor infos of a GGUF file; tensor bytes through a memory map."""

    def __init__(self, path: str):
        self.path = path
        self.mm = np.memmap(path, dtype=np.uint8, mode="r")
        self.head = bytes(self.mm[: 1 << 24])  # the header is parsed from a bytes copy (grown on demand)
        self.pos = 0
        if self.head[0:4] != b"GGUF":
            raise ValueError(f"{path}: not a GGUF file")
        self.pos = 4
        self.version = self._u32()
        n_tensors = self._u64()
        n_kv = self._u64()
        self.meta: dict[str, object] = {}
        for _ in range(n_kv):
            key = self._str()
            vtype = self._u32()
            self.meta[key] = self._value(vtype)
        self.tensors: dict[str, dict] = {}
        for _ in range(n_tensors):
            name = self._str()
            nd = self._u32()
            dims = [self._u64() for _ in range(nd)]
            ttype = self._u32()
            off = self._u64()
            self.tensors[name] = {"dims": dims, "type": ttype, "offset": off}
        align = int(self.meta.get("general.alignment", 32))
        self.data_start = (self.pos + align - 1) // align * align

    def _take(self, n: int) -> bytes:
        while self.pos + n > len(self.head):
            if len(self.head) >= self.mm.shape[0]:
                raise ValueError(f"{self.path}: truncated header")
            self.head = bytes(self.mm[: 2 * len(self.head)])
        b = self.head[self.pos : self.pos + n]
        self.pos += n
        return b

    def _u32(self) -> int:
        return struct.unpack("<I", self._take(4))[0]

    def _u64(self) -> int:
        return struct.unpack("<Q", self._take(8))[0]

    def _str(self) -> str:
        n = self._u64()
        return self._take(n).decode("utf-8", errors="replace")

    def _value(self, vtype: int):
        if vtype == 8:
            return self._str()
        if vtype == 9:
            etype = self._u32()
            n = self._u64()
            if etype == 8:
                return [self._str() for _ in range(n)]
            if etype == 9:
                return [self._value(9) for _ in range(n)]
            dt = np.dtype(_NP[etype]).newbyteorder("<")
            arr = np.frombuffer(self._take(n * dt.itemsize), dtype=dt).copy()
            return arr.tolist()
        fmt = _SCALAR[vtype]
        return struct.unpack(fmt, self._take(struct.calcsize(fmt)))[0]

    def type_name(self, name: str) -> str:
        return GGML.get(self.tensors[name]["type"], (f"type{self.tensors[name]['type']}",))[0]

    def raw(self, name: str) -> np.ndarray:
        t = self.tensors[name]
        if t["type"] not in GGML:
            raise ValueError(f"{name}: ggml type {t['type']} is not supported")
        _, bs, ts = GGML[t["type"]]
        count = int(np.prod(t["dims"]))
        nbytes = count // bs * ts
        start = self.data_start + t["offset"]
        return self.mm[start : start + nbytes]

    def tensor(self, name: str) -> np.ndarray:
        """Dequantised float32, shaped like PyTorch: reversed ne (ne[0] fastest = last axis)."""
        t = self.tensors[name]
        count = int(np.prod(t["dims"]))
        flat = dequantize(t["type"], self.raw(name), count)
        return flat.reshape(list(reversed(t["dims"])))


# ---------------------------------------------------------------------------------------------
# Dequantisers (numpy, vectorised over blocks; float32 arithmetic in ggml's order)
# ---------------------------------------------------------------------------------------------


def _f16(b: np.ndarray) -> np.ndarray:
    """Little-endian f16 from a [..., 2] uint8 array -> float32 [...]."""
    return np.ascontiguousarray(b).view("<f2")[..., 0].astype(np.float32)


def _scale_min_k4(scales: np.ndarray):
    """ggml get_scale_min_k4 for j = 0..7 over [nb, 12] uint8 -> (sc, m) [nb, 8] uint8."""
    s = scales.astype(np.uint8)
    sc = np.empty((s.shape[0], 8), np.uint8)
    m = np.empty((s.shape[0], 8), np.uint8)
    sc[:, :4] = s[:, 0:4] & 63
    m[:, :4] = s[:, 4:8] & 63
    sc[:, 4:] = (s[:, 8:12] & 0xF) | ((s[:, 0:4] >> 6) << 4)
    m[:, 4:] = (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)
    return sc, m


def dq_q4_k(raw: np.ndarray) -> np.ndarray:
    b = raw.reshape(-1, 144)
    d = _f16(b[:, 0:2].reshape(-1, 1, 2))  # [nb,1]
    dmin = _f16(b[:, 2:4].reshape(-1, 1, 2))
    sc, m = _scale_min_k4(b[:, 4:16])
    qs = b[:, 16:144].reshape(-1, 4, 32)  # 4 groups of 64 values, 32 bytes each
    lo = (qs & 0xF).astype(np.float32)
    hi = (qs >> 4).astype(np.float32)
    q = np.stack([lo, hi], axis=2).reshape(-1, 8, 32)  # sub-block j: group j//2, low (even j) / high (odd j) nibbles
    d1 = (d * sc.astype(np.float32))[:, :, None]
    m1 = (dmin * m.astype(np.float32))[:, :, None]
    return (d1 * q - m1).astype(np.float32).reshape(-1)


def dq_q5_k(raw: np.ndarray) -> np.ndarray:
    b = raw.reshape(-1, 176)
    d = _f16(b[:, 0:2].reshape(-1, 1, 2))
    dmin = _f16(b[:, 2:4].reshape(-1, 1, 2))
    sc, m = _scale_min_k4(b[:, 4:16])
    qh = b[:, 16:48]  # [nb, 32]
    qs = b[:, 48:176].reshape(-1, 4, 32)
    out = np.empty((b.shape[0], 8, 32), np.float32)
    for g in range(4):
        u1 = np.uint8(1 << (2 * g))
        u2 = np.uint8(2 << (2 * g))
        lo = (qs[:, g] & 0xF) + np.where(qh & u1, 16, 0).astype(np.uint8)
        hi = (qs[:, g] >> 4) + np.where(qh & u2, 16, 0).astype(np.uint8)
        out[:, 2 * g] = lo.astype(np.float32)
        out[:, 2 * g + 1] = hi.astype(np.float32)
    d1 = (d * sc.astype(np.float32))[:, :, None]
    m1 = (dmin * m.astype(np.float32))[:, :, None]
    return (d1 * out - m1).astype(np.float32).reshape(-1)


def dq_q6_k(raw: np.ndarray) -> np.ndarray:
    b = raw.reshape(-1, 210)
    ql = b[:, 0:128].reshape(-1, 2, 64)
    qh = b[:, 128:192].reshape(-1, 2, 32)
    scales = np.ascontiguousarray(b[:, 192:208]).view(np.int8).reshape(-1, 2, 8)
    d = _f16(b[:, 208:210].reshape(-1, 1, 1, 2))  # [nb,1,1]
    ql0 = ql[:, :, 0:32]
    ql1 = ql[:, :, 32:64]
    q1 = (ql0 & 0xF) | (((qh >> 0) & 3) << 4)
    q2 = (ql1 & 0xF) | (((qh >> 2) & 3) << 4)
    q3 = (ql0 >> 4) | (((qh >> 4) & 3) << 4)
    q4 = (ql1 >> 4) | (((qh >> 6) & 3) << 4)
    q = np.stack([q1, q2, q3, q4], axis=2).astype(np.int16) - 32  # [nb, 2 halves, 4 quarters, 32]
    # scale index: is = l // 16 (+0, +2, +4, +6 for the quarters) within the half's 8 scales
    s = scales.astype(np.float32).reshape(-1, 2, 4, 2)  # [nb, half, quarter, l//16]
    ds = (d[:, :, :, None] * s)  # d * sc in float32
    qf = q.astype(np.float32).reshape(-1, 2, 4, 2, 16)
    return (ds[..., None] * qf).astype(np.float32).reshape(-1)


def dq_q8_0(raw: np.ndarray) -> np.ndarray:
    b = raw.reshape(-1, 34)
    d = _f16(b[:, 0:2].reshape(-1, 1, 2))
    q = np.ascontiguousarray(b[:, 2:34]).view(np.int8).astype(np.float32)
    return (q * d).astype(np.float32).reshape(-1)


def dq_q4_0(raw: np.ndarray) -> np.ndarray:
    b = raw.reshape(-1, 18)
    d = _f16(b[:, 0:2].reshape(-1, 1, 2))
    qs = b[:, 2:18]
    lo = (qs & 0xF).astype(np.int16) - 8
    hi = (qs >> 4).astype(np.int16) - 8
    q = np.concatenate([lo, hi], axis=1).astype(np.float32)
    return (q * d).astype(np.float32).reshape(-1)


def dq_q4_1(raw: np.ndarray) -> np.ndarray:
    b = raw.reshape(-1, 20)
    d = _f16(b[:, 0:2].reshape(-1, 1, 2))
    m = _f16(b[:, 2:4].reshape(-1, 1, 2))
    qs = b[:, 4:20]
    q = np.concatenate([qs & 0xF, qs >> 4], axis=1).astype(np.float32)
    return (q * d + m).astype(np.float32).reshape(-1)


def _q5_bits(qh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    j = np.arange(16, dtype=np.uint32)
    h0 = (((qh[:, None] >> j) << 4) & 0x10).astype(np.uint8)
    h1 = ((qh[:, None] >> (j + 12)) & 0x10).astype(np.uint8)
    return h0, h1


def dq_q5_0(raw: np.ndarray) -> np.ndarray:
    b = raw.reshape(-1, 22)
    d = _f16(b[:, 0:2].reshape(-1, 1, 2))
    qh = np.ascontiguousarray(b[:, 2:6]).view("<u4")[:, 0]
    h0, h1 = _q5_bits(qh)
    qs = b[:, 6:22]
    x0 = ((qs & 0xF) | h0).astype(np.int16) - 16
    x1 = ((qs >> 4) | h1).astype(np.int16) - 16
    q = np.concatenate([x0, x1], axis=1).astype(np.float32)
    return (q * d).astype(np.float32).reshape(-1)


def dq_q5_1(raw: np.ndarray) -> np.ndarray:
    b = raw.reshape(-1, 24)
    d = _f16(b[:, 0:2].reshape(-1, 1, 2))
    m = _f16(b[:, 2:4].reshape(-1, 1, 2))
    qh = np.ascontiguousarray(b[:, 4:8]).view("<u4")[:, 0]
    h0, h1 = _q5_bits(qh)
    qs = b[:, 8:24]
    x0 = (qs & 0xF) | h0
    x1 = (qs >> 4) | h1
    q = np.concatenate([x0, x1], axis=1).astype(np.float32)
    return (q * d + m).astype(np.float32).reshape(-1)


def dq_f32(raw: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(raw).view("<f4").astype(np.float32)


def dq_f16(raw: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(raw).view("<f2").astype(np.float32)


def dq_bf16(raw: np.ndarray) -> np.ndarray:
    u = np.ascontiguousarray(raw).view("<u2").astype(np.uint32) << 16
    return u.view(np.float32)


DEQUANT = {0: dq_f32, 1: dq_f16, 30: dq_bf16, 8: dq_q8_0, 2: dq_q4_0, 3: dq_q4_1, 6: dq_q5_0, 7: dq_q5_1, 12: dq_q4_k, 13: dq_q5_k, 14: dq_q6_k}

# Rows of blocks dequantised per piece (bounded temporaries; pieces run on threads).
_PIECE_VALUES = 1 << 22


def dequantize(ttype: int, raw: np.ndarray, count: int, threads: int = 0) -> np.ndarray:
    if ttype not in DEQUANT:
        raise ValueError(f"dequantising ggml type {ttype} is not supported")
    _, bs, ts = GGML[ttype]
    nb = count // bs
    fn = DEQUANT[ttype]
    raw = raw[: nb * ts]
    if count <= _PIECE_VALUES:
        return fn(np.asarray(raw)).reshape(-1)[:count]
    out = np.empty(count, np.float32)
    blocks_per_piece = max(1, _PIECE_VALUES // bs)
    starts = list(range(0, nb, blocks_per_piece))

    def piece(b0: int) -> None:
        b1 = min(nb, b0 + blocks_per_piece)
        out[b0 * bs : b1 * bs] = fn(np.asarray(raw[b0 * ts : b1 * ts]))

    with ThreadPoolExecutor(max_workers=threads or min(16, os.cpu_count() or 1)) as ex:
        list(ex.map(piece, starts))
    return out


# ---------------------------------------------------------------------------------------------
# selftest: numpy dequantisers vs dumps of our TypeScript dequantiser
# ---------------------------------------------------------------------------------------------


def cmd_selftest(args) -> int:
    g = GGUF(args.gguf)
    bad = 0
    seen: dict[str, int] = {}
    for name, t in g.tensors.items():
        path = os.path.join(args.dumpdir, name + ".f32")
        if not os.path.exists(path):
            continue
        ref = np.fromfile(path, dtype="<f4")
        ours = g.tensor(name).reshape(-1)
        tn = g.type_name(name)
        seen[tn] = seen.get(tn, 0) + 1
        same = ref.shape == ours.shape and np.array_equal(ref.view(np.uint32), ours.view(np.uint32))
        if not same:
            bad += 1
            diff = np.abs(ref - ours) if ref.shape == ours.shape else None
            print(f"MISMATCH {name} {tn} dims={t['dims']} max|diff|={None if diff is None else float(diff.max())}")
    print(json.dumps({"file": args.gguf, "checked_by_type": seen, "mismatches": bad}))
    return 1 if bad else 0


# ---------------------------------------------------------------------------------------------
# GGUF -> transformers Gemma4TextConfig
# ---------------------------------------------------------------------------------------------


def text_config_kwargs(g: GGUF) -> dict:
    m = g.meta
    arch = m["general.architecture"]
    if arch != "gemma4":
        raise ValueError(f"architecture {arch}, expected gemma4")
    k = lambda s: m[f"gemma4.{s}"]  # noqa: E731
    n = int(k("block_count"))
    ffn = k("feed_forward_length")
    pattern = k("attention.sliding_window_pattern")
    shared = int(m.get("gemma4.attention.shared_kv_layers", 0))
    if isinstance(ffn, list):
        base = int(ffn[0])
        first_shared = n - shared
        double = any(int(f) != base for f in ffn)
        want = [base * (2 if (double and i >= first_shared > 0) else 1) for i in range(n)]
        if [int(f) for f in ffn] != want:
            raise ValueError(f"feed_forward_length {ffn} is not expressible as intermediate_size + use_double_wide_mlp")
    else:
        base, double = int(ffn), False
    hd_global = int(k("attention.key_length"))
    hd_swa = int(m.get("gemma4.attention.key_length_swa", hd_global))
    if int(k("attention.value_length")) != hd_global or int(m.get("gemma4.attention.value_length_swa", hd_swa)) != hd_swa:
        raise ValueError("value_length differs from key_length")
    if int(m.get("gemma4.rope.dimension_count", hd_global)) != hd_global or int(m.get("gemma4.rope.dimension_count_swa", hd_swa)) != hd_swa:
        raise ValueError("rope dimension_count differs from the head dims")
    # rope_freqs: 1.0 for rotating pairs, 1e30 (identity) for the rest -> partial_rotary_factor
    freqs = g.tensor("rope_freqs.weight").reshape(-1) if "rope_freqs.weight" in g.tensors else None
    if freqs is not None:
        rot = int(np.sum(freqs == 1.0))
        if not (np.all(freqs[:rot] == 1.0) and np.all(freqs[rot:] >= 1e29)):
            raise ValueError(f"rope_freqs is not [1]*r + [1e30]*rest: {freqs[:8]}…")
        if freqs.shape[0] != hd_global // 2:
            raise ValueError(f"rope_freqs has {freqs.shape[0]} entries, expected {hd_global // 2}")
        partial = rot * 2 / hd_global
    else:
        partial = 1.0
    head_kv = k("attention.head_count_kv")
    if isinstance(head_kv, list):
        raise ValueError("per-layer head_count_kv (26B/31B) is not handled here")
    ple = int(m.get("gemma4.embedding_length_per_layer_input", 0))
    vocab = int(g.tensors["token_embd.weight"]["dims"][1])
    kw = dict(
        vocab_size=vocab,
        hidden_size=int(k("embedding_length")),
        intermediate_size=base,
        use_double_wide_mlp=double,
        num_hidden_layers=n,
        num_attention_heads=int(k("attention.head_count")),
        num_key_value_heads=int(head_kv),
        head_dim=hd_swa,
        global_head_dim=hd_global,
        hidden_activation="gelu_pytorch_tanh",
        max_position_embeddings=int(k("context_length")),
        rms_norm_eps=float(k("attention.layer_norm_rms_epsilon")),
        sliding_window=int(k("attention.sliding_window")),
        layer_types=["sliding_attention" if s else "full_attention" for s in pattern],
        final_logit_softcapping=float(m["gemma4.final_logit_softcapping"]) if "gemma4.final_logit_softcapping" in m else None,
        hidden_size_per_layer_input=ple,
        vocab_size_per_layer_input=int(g.tensors["per_layer_token_embd.weight"]["dims"][1]) if ple else vocab,
        num_kv_shared_layers=shared,
        rope_parameters={
            "sliding_attention": {"rope_type": "default", "rope_theta": float(k("rope.freq_base_swa"))},
            "full_attention": {"rope_type": "proportional", "partial_rotary_factor": partial, "rope_theta": float(k("rope.freq_base"))},
        },
        attention_bias=False,
        attention_k_eq_v=False,
        enable_moe_block=False,
        tie_word_embeddings="output.weight" not in g.tensors,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=1,
    )
    return kw


# HF Gemma4ForCausalLM parameter name (under model.) -> GGUF name
def hf_to_gguf_name(hf: str) -> str | None:
    top = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.embed_tokens_per_layer.weight": "per_layer_token_embd.weight",
        "model.per_layer_model_projection.weight": "per_layer_model_proj.weight",
        "model.per_layer_projection_norm.weight": "per_layer_proj_norm.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "token_embd.weight",
    }
    if hf in top:
        return top[hf]
    if not hf.startswith("model.layers."):
        return None
    rest = hf[len("model.layers.") :]
    i, leaf = rest.split(".", 1)
    per = {
        "input_layernorm.weight": "attn_norm.weight",
        "self_attn.q_proj.weight": "attn_q.weight",
        "self_attn.k_proj.weight": "attn_k.weight",
        "self_attn.v_proj.weight": "attn_v.weight",
        "self_attn.o_proj.weight": "attn_output.weight",
        "self_attn.q_norm.weight": "attn_q_norm.weight",
        "self_attn.k_norm.weight": "attn_k_norm.weight",
        "post_attention_layernorm.weight": "post_attention_norm.weight",
        "pre_feedforward_layernorm.weight": "ffn_norm.weight",
        "mlp.gate_proj.weight": "ffn_gate.weight",
        "mlp.up_proj.weight": "ffn_up.weight",
        "mlp.down_proj.weight": "ffn_down.weight",
        "post_feedforward_layernorm.weight": "post_ffw_norm.weight",
        "per_layer_input_gate.weight": "inp_gate.weight",
        "per_layer_projection.weight": "proj.weight",
        "post_per_layer_input_norm.weight": "post_norm.weight",
        "layer_scalar": "layer_output_scale.weight",
    }
    if leaf in per:
        return f"blk.{i}.{per[leaf]}"
    return None


# ---------------------------------------------------------------------------------------------
# compare
# ---------------------------------------------------------------------------------------------


def log(msg: str) -> None:
    print(f"# {msg}", file=sys.stderr, flush=True)


def build_hf(g: GGUF, device: str):
    import torch
    import transformers
    from transformers import Gemma4ForCausalLM, Gemma4TextConfig

    kw = text_config_kwargs(g)
    pending = dict(kw)
    dropped: dict = {}
    for _ in range(8):  # a field this transformers does not know: set it as an attribute instead
        try:
            cfg = Gemma4TextConfig(**pending)
            break
        except TypeError as e:
            import re

            hit = re.search(r"argument '(\w+)'", str(e))
            if not hit or hit.group(1) not in pending:
                raise
            log(f"Gemma4TextConfig rejected {hit.group(1)}: {e}")
            dropped[hit.group(1)] = pending.pop(hit.group(1))
    for k, v in dropped.items():
        setattr(cfg, k, v)
    try:
        cfg._attn_implementation = "eager"
    except Exception as e:  # noqa: BLE001
        log(f"could not set eager attention on the config: {e}")
    t0 = time.time()
    with torch.device(device):
        model = Gemma4ForCausalLM(cfg)
    model = model.to(device=device, dtype=torch.float32).eval()
    log(f"built Gemma4ForCausalLM in {time.time() - t0:.1f} s (attn {model.config._attn_implementation})")

    # Fill every parameter and persistent buffer from the GGUF.
    t0 = time.time()
    state = dict(model.named_parameters(remove_duplicate=False))
    state.update(dict(model.named_buffers()))
    persistent = set(model.state_dict().keys())
    loaded, unmapped, used = [], [], set()
    cache: dict[str, "torch.Tensor"] = {}
    uses: dict[str, int] = {}
    for name in state:
        gname = hf_to_gguf_name(name)
        if gname is not None:
            uses[gname] = uses.get(gname, 0) + 1
    for name, p in state.items():
        gname = hf_to_gguf_name(name)
        if gname is None:
            if name in persistent:
                unmapped.append(name)
            continue
        if gname not in g.tensors:
            raise KeyError(f"{name}: GGUF has no {gname}")
        if gname not in cache:
            t = g.tensors[gname]
            count = int(np.prod(t["dims"]))
            shape = list(reversed(t["dims"]))
            if t["type"] == 30:  # BF16: convert on the GPU (exact)
                raw = np.ascontiguousarray(g.raw(gname)).view("<i2").reshape(shape)
                cache[gname] = torch.from_numpy(raw).to(device).view(torch.bfloat16).float()
            else:
                arr = dequantize(t["type"], g.raw(gname), count).reshape(shape)
                cache[gname] = torch.from_numpy(arr).to(device)
        src = cache[gname]
        if tuple(src.shape) != tuple(p.shape):
            if src.numel() == p.numel() and src.dim() == 1:
                src = src.reshape(p.shape)
            else:
                raise ValueError(f"{name} {tuple(p.shape)} vs {gname} {tuple(src.shape)}")
        with torch.no_grad():
            p.data.copy_(src)
        loaded.append(name)
        used.add(gname)
        uses[gname] -= 1
        if uses[gname] == 0:
            del cache[gname], src  # keep GPU memory at about the model's own size
    cache.clear()
    tied = model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    unused = sorted(set(g.tensors) - used - {"rope_freqs.weight"})
    log(f"loaded {len(loaded)} tensors in {time.time() - t0:.1f} s; lm_head tied: {tied}; unmapped HF: {unmapped}; unused GGUF: {unused[:10]}{'…' if len(unused) > 10 else ''}")
    if unmapped:
        raise ValueError(f"HF parameters with no GGUF tensor: {unmapped}")
    info = {
        "config_fields_set_as_attributes": sorted(dropped),
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "config": {k: v for k, v in cfg.to_dict().items() if k in kw or k in ("per_layer_config", "global_head_dim", "_attn_implementation")},
        "loaded_tensors": len(loaded),
        "lm_head_tied": tied,
        "unused_gguf_tensors": unused,
    }
    return model, cfg, info


def check_hf_structure(model, cfg, g: GGUF) -> dict:
    """Checks HF's per-layer head dims, KV sharing, rope frequencies and layer scalars against the spec."""
    import torch

    out: dict = {}
    layers = model.model.layers
    n = len(layers)
    hd = [layers[i].self_attn.head_dim for i in range(n)]
    shared = [bool(layers[i].self_attn.is_kv_shared_layer) for i in range(n)]
    store = [bool(getattr(layers[i].self_attn, "store_full_length_kv", False)) for i in range(n)]
    ffn = [layers[i].mlp.intermediate_size for i in range(n)]
    out["head_dim"] = hd
    out["kv_shared"] = shared
    out["kv_donors"] = [i for i in range(n) if store[i]]
    out["ffn"] = ffn
    out["scaling"] = sorted({float(layers[i].self_attn.scaling) for i in range(n)})
    ggml_ffn = g.meta["gemma4.feed_forward_length"]
    ggml_ffn = ggml_ffn if isinstance(ggml_ffn, list) else [ggml_ffn] * n
    problems = []
    if [int(x) for x in ggml_ffn] != ffn:
        problems.append(f"ffn widths {ffn} vs GGUF {ggml_ffn}")
    pattern = g.meta["gemma4.attention.sliding_window_pattern"]
    want_hd = [int(g.meta["gemma4.attention.key_length_swa"]) if s else int(g.meta["gemma4.attention.key_length"]) for s in pattern]
    if hd != want_hd:
        problems.append(f"head dims {hd} vs {want_hd}")
    if out["scaling"] != [1.0]:
        problems.append(f"attention scaling {out['scaling']}")
    re = model.model.rotary_emb
    for lt in ("sliding_attention", "full_attention"):
        inv = getattr(re, f"{lt}_inv_freq", None)
        if inv is None:
            problems.append(f"no {lt}_inv_freq")
            continue
        inv = inv.detach().double().cpu().numpy()
        if lt == "sliding_attention":
            dim = want_hd[pattern.index(True)] if True in pattern else 0
            base = float(g.meta["gemma4.rope.freq_base_swa"])
            want = base ** (-np.arange(0, dim, 2) / dim)
        else:
            dim = int(g.meta["gemma4.attention.key_length"])
            base = float(g.meta["gemma4.rope.freq_base"])
            freqs = g.tensor("rope_freqs.weight").astype(np.float64)
            want = base ** (-np.arange(0, dim, 2) / dim) / freqs  # spec §3.4: θ^(-2j/n) / f_j
        ok = inv.shape == want.shape and np.allclose(inv, want, rtol=1e-6, atol=1e-30)
        out[f"{lt}_inv_freq"] = {"n": int(inv.shape[0]), "nonzero": int(np.sum(inv != 0)), "first": inv[:3].tolist(), "matches_spec": bool(ok),
                                 "attention_scaling": float(getattr(re, f"{lt}_attention_scaling", float("nan")))}
        if not ok:
            problems.append(f"{lt} inv_freq differs from spec §3.4 (max rel {float(np.max(np.abs(inv - want) / np.maximum(np.abs(want), 1e-30))) if inv.shape == want.shape else 'shape'})")
        if getattr(re, f"{lt}_attention_scaling", 1.0) != 1.0:
            problems.append(f"{lt} attention_scaling {getattr(re, f'{lt}_attention_scaling')}")
    es = float(model.model.embed_tokens.embed_scale)
    out["embed_scale"] = es
    if abs(es - math.sqrt(cfg.hidden_size)) > 1e-6 * es:
        problems.append(f"embed_scale {es}")
    out["problems"] = problems
    return out


def _log_softmax(x: np.ndarray) -> np.ndarray:
    m = x.max(axis=1, keepdims=True)
    z = x - m
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def metrics(ours: np.ndarray, ref: np.ndarray, rows_per_step: int = 32) -> dict:
    """Per-position metrics of ours [T,V] vs ref [T,V], in float64 (numpy, a few rows at a time)."""
    T = ref.shape[0]
    rel_l2 = np.empty(T)
    rel_max = np.empty(T)
    max_abs = np.empty(T)
    cos = np.empty(T)
    kl = np.empty(T)
    am_a = np.empty(T, np.int64)
    am_b = np.empty(T, np.int64)
    margin = np.empty(T)
    for r0 in range(0, T, rows_per_step):
        r1 = min(T, r0 + rows_per_step)
        a = ours[r0:r1].astype(np.float64)
        b = ref[r0:r1].astype(np.float64)
        d = a - b
        nb = np.linalg.norm(b, axis=1)
        rel_l2[r0:r1] = np.linalg.norm(d, axis=1) / nb
        max_abs[r0:r1] = np.abs(d).max(axis=1)
        rel_max[r0:r1] = max_abs[r0:r1] / np.abs(b).max(axis=1)
        cos[r0:r1] = (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * nb)
        am_a[r0:r1] = a.argmax(axis=1)
        am_b[r0:r1] = b.argmax(axis=1)
        top2 = np.partition(b, -2, axis=1)[:, -2:]
        margin[r0:r1] = top2[:, 1] - top2[:, 0]
        lp_a = _log_softmax(a)
        lp_b = _log_softmax(b)
        kl[r0:r1] = (np.exp(lp_b) * (lp_b - lp_a)).sum(axis=1)  # KL(ref || ours)
    disagree = [int(i) for i in np.nonzero(am_a != am_b)[0]]
    return {
        "positions": int(T),
        "rel_l2": {"max": float(rel_l2.max()), "mean": float(rel_l2.mean()), "median": float(np.median(rel_l2)), "worst_position": int(np.argmax(rel_l2))},
        "rel_max": {"max": float(rel_max.max()), "mean": float(rel_max.mean()), "worst_position": int(np.argmax(rel_max))},
        "max_abs_diff": float(max_abs.max()),
        "cosine": {"min": float(cos.min()), "mean": float(cos.mean()), "worst_position": int(np.argmin(cos))},
        "kl": {"max": float(kl.max()), "mean": float(kl.mean())},
        "argmax_agree": int(np.sum(am_a == am_b)),
        "argmax_disagree_positions": disagree[:50],
        "argmax_disagree_ref_margins": [float(margin[i]) for i in disagree[:50]],
        "ref_top2_margin_min": float(margin.min()),
        "ref_logit_absmax": float(np.abs(ref).max()),
        "per_position": {"rel_l2": [float(x) for x in rel_l2], "rel_max": [float(x) for x in rel_max], "cosine": [float(x) for x in cos]},
    }


def cmd_config(args) -> int:
    g = GGUF(args.gguf)
    print(json.dumps(text_config_kwargs(g), indent=1))
    return 0


def cmd_compare(args) -> int:
    t_all = time.time()
    g = GGUF(args.model)
    run = json.load(open(os.path.join(args.run, "tokens.json")))
    tokens = run["tokens"]
    V = int(g.tensors["token_embd.weight"]["dims"][1])
    T = len(tokens)
    result = {
        "label": args.label,
        "model": {"path": args.model, "bytes": os.path.getsize(args.model), "types": sorted({g.type_name(n) for n in g.tensors})},
        "tokens": {"count": T, "first": tokens[:8], "sha": run.get("tokens_sha")},
        "ours": run.get("ours", {}),
        "comparisons": {},
    }
    files = {k: os.path.join(args.run, f) for k, f in run.get("logits", {}).items()}
    for k in [k for k, f in files.items() if not os.path.exists(f)]:
        result["comparisons"][k] = {"error": f"missing {files.pop(k)}"}
        log(f"{k}: no logits file, skipped")
    load = lambda k: np.fromfile(files[k], dtype="<f4").reshape(T, V)  # noqa: E731
    hf = None
    if not args.skip_hf:
        import torch

        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.set_float32_matmul_precision("highest")
        device = "cuda" if torch.cuda.is_available() else "cpu"
        log(f"{args.label}: {T} tokens, vocab {V}, device {device}")
        model, cfg, info = build_hf(g, device)
        result["hf"] = info
        try:
            result["hf_structure"] = check_hf_structure(model, cfg, g)
            log(f"HF structure problems: {result['hf_structure']['problems']}")
        except Exception as e:  # noqa: BLE001 - report and go on to the logits
            result["hf_structure"] = {"error": repr(e)}
            log(f"structure check failed: {e!r}")
        ids = torch.tensor([tokens], dtype=torch.long, device=device)
        t0 = time.time()
        with torch.no_grad():
            out = model(input_ids=ids, use_cache=False)
            logits = out.logits[0].float()
        if device == "cuda":
            torch.cuda.synchronize()
        result["hf_forward_ms"] = round((time.time() - t0) * 1000, 1)
        hf = logits.cpu().numpy()
        del out, logits, model
        log(f"HF forward {result['hf_forward_ms']:.0f} ms; logits {hf.shape}")
        if args.save_hf:
            hf.astype("<f4").tofile(args.save_hf)
        for key in sorted(files):
            m = metrics(load(key), hf)
            result["comparisons"][f"{key}_vs_hf"] = m
            log(f"{key} vs HF: rel_l2 max {m['rel_l2']['max']:.3e} (pos {m['rel_l2']['worst_position']}), rel_max max {m['rel_max']['max']:.3e}, cos min {m['cosine']['min']:.9f}, argmax {m['argmax_agree']}/{m['positions']}")
    if "gpu" in files and "cpu" in files:
        m = metrics(load("gpu"), load("cpu"))
        result["comparisons"]["gpu_vs_cpu_reference"] = m
        log(f"gpu vs cpu reference: rel_l2 max {m['rel_l2']['max']:.3e}, argmax {m['argmax_agree']}/{m['positions']}")
    result["total_s"] = round(time.time() - t_all, 1)
    text = json.dumps(result, indent=1)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")
    short = json.loads(text)  # the summary on stdout leaves the per-position arrays in the file
    for c in short["comparisons"].values():
        c.pop("per_position", None)
    short.get("hf", {}).pop("unused_gguf_tensors", None)
    print(json.dumps(short, indent=1))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("selftest")
    s.add_argument("gguf")
    s.add_argument("dumpdir")
    c = sub.add_parser("config")
    c.add_argument("gguf")
    p = sub.add_parser("compare")
    p.add_argument("--model", required=True)
    p.add_argument("--run", required=True)
    p.add_argument("--out")
    p.add_argument("--label", default="run")
    p.add_argument("--save-hf", help="also write HF's logits here (float32 [T][V])")
    p.add_argument("--skip-hf", action="store_true", help="no transformers: only compare our logit files with each other")
    a = ap.parse_args()
    return {"selftest": cmd_selftest, "config": cmd_config, "compare": cmd_compare}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
