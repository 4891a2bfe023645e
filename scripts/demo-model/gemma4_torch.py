"""
A small, self-contained PyTorch Gemma 4 text model written from ../shared/spec/gemma4.md §3, used to
train the demo model. Parameters carry the GGUF tensor names (with '.' → '__'), so export needs no
mapping. Checked against the project's float64 CPU reference (src/core/reference) by
`train.py selftest` + `check_torch.ts`, and the trained weights against Hugging Face transformers'
Gemma4ForCausalLM by scripts/dev/hf_compare.py on the GPU machine.

Runs on torch 1.13 (CPU, manual attention) and torch 2.x (scaled_dot_product_attention).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))


def rms(x: torch.Tensor, w: torch.Tensor | None, eps: float) -> torch.Tensor:
    xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    y = xf * torch.pow(xf.pow(2).mean(-1, keepdim=True) + eps, -0.5)
    if w is not None:
        y = y * w.to(y.dtype)
    return y.to(x.dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Gemma4(nn.Module):
    def __init__(self, cfg: dict, vocab_size: int):
        super().__init__()
        self.cfg = cfg
        self.V = vocab_size
        self.d = cfg["n_embd"]
        self.L = len(cfg["sliding_pattern"])
        self.P = cfg["ple"]
        self.H = cfg["n_head"]
        self.KV = cfg["n_head_kv"]
        self.eps = cfg["rms_eps"]
        self.sliding = list(cfg["sliding_pattern"])
        self.first_shared = self.L - cfg["shared_kv_layers"]
        # donor = last KV-owning layer of the same type (spec §0.6)
        self.donor = []
        for i in range(self.L):
            if i < self.first_shared:
                self.donor.append(i)
            else:
                self.donor.append(max(j for j in range(self.first_shared) if self.sliding[j] == self.sliding[i]))
        self.params = nn.ParameterDict()
        p = self.params
        d, L, P, V = self.d, self.L, self.P, self.V

        def lin(name: str, out_f: int, in_f: int) -> None:
            p[name.replace(".", "__")] = nn.Parameter(torch.randn(out_f, in_f) * in_f**-0.5)

        def vec(name: str, n: int, value: float = 1.0) -> None:
            p[name.replace(".", "__")] = nn.Parameter(torch.full((n,), float(value)))

        p["token_embd__weight"] = nn.Parameter(torch.randn(V, d) * d**-0.5)
        if P:
            p["per_layer_token_embd__weight"] = nn.Parameter(torch.randn(V, L * P) * P**-0.5)
            lin("per_layer_model_proj.weight", L * P, d)
            vec("per_layer_proj_norm.weight", P)
        vec("output_norm.weight", d)
        for i in range(L):
            hd = self.head_dim(i)
            b = f"blk.{i}."
            vec(b + "attn_norm.weight", d)
            lin(b + "attn_q.weight", self.H * hd, d)
            vec(b + "attn_q_norm.weight", hd, hd**-0.25)
            if i < self.first_shared:
                lin(b + "attn_k.weight", self.KV * hd, d)
                vec(b + "attn_k_norm.weight", hd, hd**-0.25)
                lin(b + "attn_v.weight", self.KV * hd, d)
            lin(b + "attn_output.weight", d, self.H * hd)
            vec(b + "post_attention_norm.weight", d)
            vec(b + "ffn_norm.weight", d)
            F_ = cfg["ffn"][i]
            lin(b + "ffn_gate.weight", F_, d)
            lin(b + "ffn_up.weight", F_, d)
            lin(b + "ffn_down.weight", d, F_)
            vec(b + "post_ffw_norm.weight", d)
            if P:
                lin(b + "inp_gate.weight", P, d)
                lin(b + "proj.weight", d, P)
                vec(b + "post_norm.weight", d)
            vec(b + "layer_output_scale.weight", 1)

    def head_dim(self, i: int) -> int:
        return self.cfg["head_dim_swa"] if self.sliding[i] else self.cfg["head_dim_global"]

    def w(self, name: str) -> torch.Tensor:
        return self.params[name.replace(".", "__")]

    def gguf_tensors(self):
        """(GGUF name, GGUF dims (ne, fastest first), tensor) for every parameter."""
        for k, v in self.params.items():
            yield k.replace("__", "."), list(reversed(v.shape)), v

    def rope(self, T: int, sliding: bool, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.cfg
        if sliding:
            n, theta, rot = c["head_dim_swa"], c["rope_base_swa"], c["head_dim_swa"] // 2
        else:
            n, theta = c["head_dim_global"], c["rope_base"]
            rot = int(c["head_dim_global"] // 2 * c["rope_rotary_fraction"])
        j = torch.arange(n // 2, dtype=torch.float64, device=device)
        inv = theta ** (-2.0 * j / n)
        inv[rot:] = 0.0
        ang = torch.arange(T, dtype=torch.float64, device=device)[:, None] * inv[None, :]
        ang = torch.cat((ang, ang), dim=-1)
        return ang.cos().to(dtype), ang.sin().to(dtype)

    @staticmethod
    def apply_rope(u: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """NeoX rotate-half in the cos/sin precision; [B,T,heads,hd] -> [B,heads,T,hd]."""
        uf = u.to(cos.dtype)
        return (uf * cos[:, None, :] + rotate_half(uf) * sin[:, None, :]).to(u.dtype).transpose(1, 2)

    def masks(self, T: int, device) -> dict[bool, torch.Tensor]:
        q = torch.arange(T, device=device)[:, None]
        k = torch.arange(T, device=device)[None, :]
        causal = k <= q
        return {False: causal, True: causal & (q - k < self.cfg["sliding_window"])}

    def attend(self, q, k, v, mask):
        # q [B,H,T,hd], k/v [B,KV,T,hd]; scale 1.0
        if self.KV != self.H:
            k = k.repeat_interleave(self.H // self.KV, dim=1)
            v = v.repeat_interleave(self.H // self.KV, dim=1)
        if hasattr(F, "scaled_dot_product_attention") and q.is_cuda:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0)
        s = (q @ k.transpose(-1, -2)).float()
        s = s.masked_fill(~mask, float("-inf"))
        return (torch.softmax(s, dim=-1).to(v.dtype)) @ v

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        B, T = ids.shape
        d, L, P = self.d, self.L, self.P
        h = F.embedding(ids, self.w("token_embd.weight")) * math.sqrt(d)
        if P:
            e = F.embedding(ids, self.w("per_layer_token_embd.weight")).view(B, T, L, P) * math.sqrt(P)
            c = F.linear(h, self.w("per_layer_model_proj.weight")) * (d**-0.5)
            c = rms(c.view(B, T, L, P), self.w("per_layer_proj_norm.weight"), self.eps)
            ple = (c + e) * (2.0**-0.5)
        rdt = torch.float64 if h.dtype == torch.float64 else torch.float32
        ropes = {s: self.rope(T, s, ids.device, rdt) for s in (True, False)}
        masks = self.masks(T, ids.device)
        kv: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        for i in range(L):
            b = f"blk.{i}."
            s = self.sliding[i]
            hd = self.head_dim(i)
            cos, sin = ropes[s]
            x = rms(h, self.w(b + "attn_norm.weight"), self.eps)
            q = F.linear(x, self.w(b + "attn_q.weight")).view(B, T, self.H, hd)
            q = rms(q, self.w(b + "attn_q_norm.weight"), self.eps)
            q = self.apply_rope(q, cos, sin)
            if i < self.first_shared:
                k = F.linear(x, self.w(b + "attn_k.weight")).view(B, T, self.KV, hd)
                k = rms(k, self.w(b + "attn_k_norm.weight"), self.eps)
                k = self.apply_rope(k, cos, sin)
                v = rms(F.linear(x, self.w(b + "attn_v.weight")).view(B, T, self.KV, hd), None, self.eps).transpose(1, 2)
                kv[i] = (k, v)
            else:
                k, v = kv[self.donor[i]]
            o = self.attend(q, k.to(q.dtype), v.to(q.dtype), masks[s])
            o = o.transpose(1, 2).reshape(B, T, self.H * hd)
            a = F.linear(o, self.w(b + "attn_output.weight"))
            h = h + rms(a, self.w(b + "post_attention_norm.weight"), self.eps)
            y = rms(h, self.w(b + "ffn_norm.weight"), self.eps)
            m = F.linear(gelu_tanh(F.linear(y, self.w(b + "ffn_gate.weight"))) * F.linear(y, self.w(b + "ffn_up.weight")), self.w(b + "ffn_down.weight"))
            h = h + rms(m, self.w(b + "post_ffw_norm.weight"), self.eps)
            if P:
                g = gelu_tanh(F.linear(h, self.w(b + "inp_gate.weight"))) * ple[:, :, i, :].to(h.dtype)
                h = h + rms(F.linear(g, self.w(b + "proj.weight")), self.w(b + "post_norm.weight"), self.eps)
            h = h * self.w(b + "layer_output_scale.weight").to(h.dtype)
        x = rms(h, self.w("output_norm.weight"), self.eps)
        logits = F.linear(x, self.w("token_embd.weight")).float()
        cap = self.cfg["final_logit_softcap"]
        return cap * torch.tanh(logits / cap) if cap else logits
