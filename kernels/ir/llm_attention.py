"""Causal attention of the tiny LLaMA over its KV cache, built from the attention IR ops.

The ops are xfops' (``kernels/ir/attention.py``, docs/formats.md "Transformer
ops"): ``AttnMatMul(qk)`` with the 1/sqrt(hd) folded into the per-head
requantisation onto 8-bit score codes, ``Softmax`` (shift-based exp2, codes of
scale 1/127), ``AttnMatMul(av)`` requantised per head onto the codes wo reads.
This module only applies them causally: the query at position t reads the keys
0..t, which is exactly one decode step of the generated C over a KV cache of
t + 1 rows (``C_BODY``), so the batched reference and the token loop agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .attention import AttnMatMul, Softmax


@dataclass
class CausalAttention:
    qk: AttnMatMul
    softmax: Softmax
    av: AttnMatMul
    heads: int

    @classmethod
    def from_scales(cls, name: str, heads: int, head_dim: int, s_q: float, s_k: float, s_score: float,
                    s_v: float, s_o: float, out_bits: int) -> "CausalAttention":
        """``s_score``: scale of the score codes (of ``q.k / sqrt(hd)``); ``s_o``: of wo's input codes."""
        qk = AttnMatMul.from_scales(f"{name}_qk", "qk", heads, s_q, s_k, s_score * math.sqrt(head_dim), 8)
        sm = Softmax.from_scale(f"{name}_softmax", s_score)
        av = AttnMatMul.from_scales(f"{name}_av", "av", heads, 1.0 / 127, s_v, s_o, out_bits)
        return cls(qk, sm, av, heads)

    def run(self, q, k, v) -> np.ndarray:
        """int8 codes (B, T, D) -> wo's input codes (B, T, D); position t attends to 0..t."""
        q, k, v = (np.asarray(a, dtype=np.int64) for a in (q, k, v))
        out = np.empty_like(q)
        for t in range(q.shape[1]):
            s = self.qk.run([q[:, t:t + 1], k[:, :t + 1]])           # (B, H, 1, t+1)
            p = self.softmax.run([s])
            out[:, t:t + 1] = self.av.run([p, v[:, :t + 1]])
        return out

    def c_decls(self, sym: str, ctx_array) -> str:
        rows = []
        for op, tag in ((self.qk, "qk"), (self.av, "av")):
            rq = op.rq
            rows += [ctx_array("int32_t", f"{sym}_{tag}_b", rq.bias), ctx_array("int32_t", f"{sym}_{tag}_m", rq.mult),
                     ctx_array("uint8_t", f"{sym}_{tag}_s", rq.shift)]
        return "\n".join(rows)

    def c_body(self, sym: str, q: str, kc: str, vc: str, len_expr: str, hd: int, sc8: str, p8: str, e32: str,
               out: str) -> str:
        """One query over ``len_expr`` cached keys/values (rows of D codes)."""
        H = self.heads
        D = H * hd
        return "\n".join([
            f"mico_attn_qk({q}, {kc}, acc, {H}u, 1u, {len_expr}, {hd}u);",
            f"api->requant(acc, {sc8}, {H}u * {len_expr}, {H}u, {len_expr}, {sym}_qk_b, {sym}_qk_m, {sym}_qk_s, 0, 8);",
            f"mico_softmax_rows({sc8}, {p8}, {H}u, {len_expr}, {self.softmax.mult}, {self.softmax.shift}u, {e32});",
            f"mico_attn_av({p8}, {vc}, acc, {H}u, 1u, {len_expr}, {hd}u);",
            f"api->requant(acc, {out}, {D}u, {H}u, {hd}u, {sym}_av_b, {sym}_av_m, {sym}_av_s, 0, {self.av.out_bits});",
        ])
