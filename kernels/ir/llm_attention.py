"""Causal attention of the tiny LLaMA on int8 codes: QK^T, integer softmax, AV, per-head requant.

INTERIM: issue 17 gives the integer softmax and the activation x activation
matmuls to the ``xfops`` branch; until its "softmax:" commit is merged this module
holds the minimal one the LLM token loop needs (base-2 exponent: a 256-entry
Q15 table of 2^-f/256 and a shift).  Replace ``softmax_q15`` by xfops' op when it
lands; the attention interface (``attention_params``, ``causal_attention``,
``C_SUPPORT``'s ``llm_attend``) stays.

Numerics, per head and query position t (keys j <= t):
``s_j = sum_d q_d k_jd`` (int32);  ``u_j = round_shift((max s - s_j) * M, S)`` is
``(max - s_j) * s_q s_k / sqrt(hd) * log2(e)`` in Q8;  ``e_j = EXP2[u_j & 255] >> (u_j >> 8)``
(0 once the shift reaches 31);  ``p_j = floor((e_j * 2^15 + E/2) / E)`` with ``E = sum e``;
``o_d = sum_j p_j v_jd`` (int32), requantised per head onto wo's input codes.
"""

from __future__ import annotations

import math

import numpy as np

from .llm import requant_codes, round_shift
from .types import quantize_multiplier

EXP2 = np.round((1 << 15) * 2.0 ** (-np.arange(256) / 256.0)).astype(np.int64)   # Q15, EXP2[0] = 32768
U_MAX = 31 << 8


def attention_params(heads: int, head_dim: int, s_q: float, s_k: float, s_v: float, s_o: float, bits: int):
    """(softmax parameters, per-head requantisation of AV onto ``bits``-bit codes of scale ``s_o``)."""
    m, s = quantize_multiplier(s_q * s_k / math.sqrt(head_dim) * math.log2(math.e) * 256.0)
    om, osh = quantize_multiplier(s_v / (1 << 15) / s_o)
    return ({"mult": m, "shift": s},
            {"mult": np.full(heads, om, dtype=np.int64), "shift": np.full(heads, osh, dtype=np.int64), "bits": bits})


def softmax_q15(scores: np.ndarray, mask: np.ndarray, mult: int, shift: int) -> np.ndarray:
    """Q15 probabilities of int32 scores along the last axis; ``mask`` False entries get 0."""
    s = np.where(mask, scores, np.iinfo(np.int64).min // 4)
    mx = s.max(axis=-1, keepdims=True)
    u = np.minimum(round_shift((mx - np.where(mask, scores, mx)) * mult, shift), U_MAX)
    e = np.where(mask, EXP2[u & 255] >> (u >> 8), 0)
    tot = e.sum(axis=-1, keepdims=True)
    return (e * (1 << 15) + tot // 2) // tot


def causal_attention(q, k, v, heads: int, att: dict, o_in: dict) -> np.ndarray:
    """int8 codes (B, T, D) -> wo's input codes (B, T, D)."""
    q, k, v = (np.asarray(a, dtype=np.int64) for a in (q, k, v))
    B, T, D = q.shape
    hd = D // heads
    qh, kh, vh = (a.reshape(B, T, heads, hd).transpose(0, 2, 1, 3) for a in (q, k, v))
    scores = qh @ kh.transpose(0, 1, 3, 2)                          # (B, H, T, T)
    mask = np.tril(np.ones((T, T), dtype=bool))
    p = softmax_q15(scores, mask, att["mult"], att["shift"])
    o = p @ vh                                                      # (B, H, T, hd)
    out = np.empty_like(o)
    for h in range(heads):
        out[:, h] = requant_codes(o[:, h], o_in["mult"][h], o_in["shift"][h], o_in["bits"])
    return out.transpose(0, 2, 1, 3).reshape(B, T, D)


C_SUPPORT = r"""
/* ---- attention of one query over the KV cache (kernels/ir/llm_attention.py) ---- */
static const int32_t llm_exp2[256] = {EXP2_TABLE};

static void llm_attend(const int8_t *q, const int8_t *kc, const int8_t *vc, uint32_t len, uint32_t heads,
                       uint32_t hd, uint32_t d, int32_t mult, uint32_t shift, const int32_t *omult,
                       const uint8_t *oshift, int out_bits, int32_t *sc, int32_t *o32, int8_t *out) {
    int32_t lo = -(1 << (out_bits - 1)), hi = (1 << (out_bits - 1)) - 1;
    for (uint32_t h = 0; h < heads; h++) {
        const int8_t *qh = q + h * hd;
        int32_t mx = 0;
        for (uint32_t j = 0; j < len; j++) {
            const int8_t *kj = kc + j * d + h * hd;
            int32_t s = 0;
            for (uint32_t i = 0; i < hd; i++) s += (int32_t)qh[i] * kj[i];
            sc[j] = s;
            if (j == 0 || s > mx) mx = s;
        }
        uint32_t tot = 0;
        for (uint32_t j = 0; j < len; j++) {
            int64_t u = llm_rs((int64_t)(mx - sc[j]) * mult, shift);
            if (u > (31 << 8)) u = 31 << 8;
            uint32_t e = (uint32_t)llm_exp2[u & 255] >> (uint32_t)(u >> 8);
            sc[j] = (int32_t)e;
            tot += e;
        }
        for (uint32_t j = 0; j < len; j++) sc[j] = (int32_t)((((uint32_t)sc[j] << 15) + tot / 2u) / tot);
        for (uint32_t i = 0; i < hd; i++) o32[i] = 0;
        for (uint32_t j = 0; j < len; j++) {
            const int8_t *vj = vc + j * d + h * hd;
            for (uint32_t i = 0; i < hd; i++) o32[i] += sc[j] * vj[i];
        }
        for (uint32_t i = 0; i < hd; i++) {
            if (out_bits == 1) { out[h * hd + i] = (int8_t)(o32[i] >= 0 ? 1 : -1); continue; }
            out[h * hd + i] = (int8_t)llm_clamp(llm_rs((int64_t)o32[i] * omult[h], oshift[h]), lo, hi);
        }
    }
}
""".replace("EXP2_TABLE", ", ".join(str(int(v)) for v in EXP2))
