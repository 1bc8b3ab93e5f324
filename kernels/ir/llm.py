"""Integer ops of the tiny LLaMA (docs/formats.md, "Integer LLM ops"): NumPy semantics and their C.

Each function here is the NumPy twin of one C function in :data:`C_SUPPORT`,
which the LLM code generator (``kernels/ir/llm_codegen.py``) compiles into the
model image; ``mpq/models/tinyllama.py`` has the torch twins.  All three agree
element by element (``tests/test_tinyllama.py``).  Arrays are int64, batched
on the leading axes; the last axis is the feature axis.

Why these choices: the residual stream is int16-range int32 values (8-bit codes
lose too much between layers of a language model); every rescaling is the
project's one rounding ``round_shift`` (``mico_round_shift``); divisions and
square roots are 32-bit or bitwise, so the RISC-V image needs no libgcc.
"""

from __future__ import annotations

import math

import numpy as np

from .types import IRError

RES_MIN, RES_MAX = -(1 << 15), (1 << 15) - 1      # residual stream range
NORM_FRAC = 15                                     # RMSNorm output: Q15 (x / rms * 2^15)
INV_ONE = 1 << 30                                  # RMSNorm reciprocal: floor(2^30 / r)
NORM_MAX_K = 7                                     # RMSNorm: largest normalising shift (ms << 2k)
ROPE_FRAC = 14                                     # rotary tables: Q14 cos / sin


def round_shift(t, s):
    """``(t >> s) + ((t >> (s - 1)) & 1)``: round half up, arithmetic shifts (s >= 1)."""
    t = np.asarray(t, dtype=np.int64)
    s = np.asarray(s, dtype=np.int64)
    return (t >> s) + ((t >> (s - 1)) & 1)


def isqrt(v) -> np.ndarray:
    """floor(sqrt(v)) of non-negative int64 values, exactly (the C is the bitwise method)."""
    v = np.asarray(v, dtype=np.int64)
    if v.size and v.min() < 0:
        raise IRError("isqrt of a negative value.")
    r = np.floor(np.sqrt(v.astype(np.float64))).astype(np.int64)
    r = np.where(r * r > v, r - 1, r)            # float sqrt is within one of the exact root
    r = np.where((r + 1) * (r + 1) <= v, r + 1, r)
    return r


def embed(table: np.ndarray, tokens, mult: int, shift: int) -> np.ndarray:
    """Token embedding lookup onto the residual stream: ``clamp16(round_shift(E[tok] * m, s))``."""
    tokens = np.asarray(tokens, dtype=np.int64)
    if tokens.size and (tokens.min() < 0 or tokens.max() >= table.shape[0]):
        raise IRError(f"a token id is outside the vocabulary of {table.shape[0]}.")
    e = np.asarray(table, dtype=np.int64)[tokens]
    return np.clip(round_shift(e * int(mult), int(shift)), RES_MIN, RES_MAX)


def rmsnorm(h) -> np.ndarray:
    """Integer RMSNorm without gain (the gain is folded into the next linear's weights).

    ``s = sum h^2 + D`` (the ``+ D`` is the epsilon: one LSB^2 of the mean),
    ``k = min(7, max(0, (28 + log2 D - bitlen(s)) // 2))``, ``v = (s << 2k) >> log2 D``
    (the mean square times 4^k, at most 28 bits), ``r = isqrt(v)`` (~ rms * 2^k),
    ``inv = floor(2^30 / r)``, ``n = round_shift(h * inv, 15 - k)``: n is x / rms(x) in Q15
    (|n| <= sqrt(D) * 2^15).  Scaling by 4^k before the mean's floor and the root's keeps both
    errors below 2^-12 relative at any magnitude above a few LSBs."""
    h = np.asarray(h, dtype=np.int64)
    d = h.shape[-1]
    if d & (d - 1):
        raise IRError(f"the integer RMSNorm needs a power-of-two width, got {d}.")
    log2d = int(math.log2(d))
    s = (h * h).sum(axis=-1, keepdims=True) + d
    k = np.clip((28 + log2d - bit_length(s)) // 2, 0, NORM_MAX_K)
    r = isqrt((s << (2 * k)) >> log2d)
    inv = INV_ONE // r
    return round_shift(h * inv, NORM_FRAC - k)


def bit_length(v) -> np.ndarray:
    """Bits of non-negative int64 values below 2^53 (0 -> 0)."""
    v = np.asarray(v, dtype=np.int64)
    return np.where(v > 0, np.frexp(v.astype(np.float64))[1], 0).astype(np.int64)


def requant_codes(x, mult, shift, bits: int) -> np.ndarray:
    """Per-tensor requantisation of int32 values onto signed ``bits``-bit codes (``mico_requant``
    with one channel, no bias, no ReLU)."""
    if bits == 1:
        return np.where(np.asarray(x) >= 0, 1, -1).astype(np.int64)
    y = round_shift(np.asarray(x, dtype=np.int64) * np.asarray(mult, dtype=np.int64), shift)
    return np.clip(y, -(1 << (bits - 1)), (1 << (bits - 1)) - 1)


def resadd(h, y, mult, shift) -> np.ndarray:
    """Residual add: ``clamp16(h + round_shift(y * m[c], s[c]))`` (per output channel c)."""
    return np.clip(np.asarray(h, dtype=np.int64) + round_shift(np.asarray(y, dtype=np.int64) *
                   np.asarray(mult, dtype=np.int64), shift), RES_MIN, RES_MAX)


def rope_tables(max_len: int, head_dim: int, base: float = 10000.0) -> tuple[np.ndarray, np.ndarray]:
    """Q14 cos and sin of ``pos * base^(-2j/hd)``, (max_len, head_dim/2), rounded half away from 0."""
    j = np.arange(head_dim // 2, dtype=np.float64)
    ang = np.arange(max_len, dtype=np.float64)[:, None] * base ** (-2.0 * j / head_dim)[None, :]
    one = 1 << ROPE_FRAC
    return (np.round(np.cos(ang) * one).astype(np.int64), np.round(np.sin(ang) * one).astype(np.int64))


def rope(x, pos, cos: np.ndarray, sin: np.ndarray, heads: int) -> np.ndarray:
    """Rotate int8 codes ``x`` (..., T, D) at positions ``pos`` (T,) pairwise (j, j + hd/2) per head:
    ``a' = rs(a*c - b*s, 14)``, ``b' = rs(a*s + b*c, 14)``, clamped to int8.  Same scale in and out."""
    x = np.asarray(x, dtype=np.int64)
    d = x.shape[-1]
    hd = d // heads
    xs = x.reshape(*x.shape[:-1], heads, 2, hd // 2)
    c = cos[np.asarray(pos)][..., None, :]        # (T, 1, hd/2) broadcasts over heads
    s = sin[np.asarray(pos)][..., None, :]
    a, b = xs[..., 0, :], xs[..., 1, :]
    ya = round_shift(a * c - b * s, ROPE_FRAC)
    yb = round_shift(a * s + b * c, ROPE_FRAC)
    y = np.stack([ya, yb], axis=-2).reshape(x.shape)
    return np.clip(y, -128, 127)


def lut(table: np.ndarray, codes) -> np.ndarray:
    """A 256-entry int8 table indexed by an int8 code (the SiLU of codes)."""
    return np.asarray(table, dtype=np.int64)[np.asarray(codes, dtype=np.int64) + 128]


def argmax(logits) -> np.ndarray:
    """Greedy sampling: the first index of the largest logit (C: strict ``>`` scan)."""
    return np.argmax(np.asarray(logits), axis=-1)


#: C of the ops above (compiled into the model image; static, so unused ones cost nothing)
C_SUPPORT = r"""
/* ---- integer LLM ops (kernels/ir/llm.py, docs/formats.md "Integer LLM ops") ---- */
static inline int64_t llm_rs(int64_t t, uint32_t s) { return (t >> s) + ((t >> (s - 1u)) & 1); }
static inline int32_t llm_clamp(int64_t v, int32_t lo, int32_t hi) { return (int32_t)(v < lo ? lo : (v > hi ? hi : v)); }

static void llm_embed(const int8_t *table, uint32_t tok, uint32_t d, int32_t mult, uint32_t shift, int32_t *h) {
    const int8_t *e = table + tok * d;
    for (uint32_t i = 0; i < d; i++) h[i] = llm_clamp(llm_rs((int64_t)e[i] * mult, shift), -32768, 32767);
}

static uint32_t llm_isqrt(uint64_t v) {
    uint64_t r = 0, bit = 1ull << 62;
    while (bit > v) bit >>= 2;
    while (bit) {
        if (v >= r + bit) { v -= r + bit; r = (r >> 1) + bit; }
        else r >>= 1;
        bit >>= 2;
    }
    return (uint32_t)r;
}

static void llm_rmsnorm(const int32_t *h, uint32_t d, uint32_t log2d, int32_t *n) {
    uint64_t ss = d;
    for (uint32_t i = 0; i < d; i++) ss += (uint64_t)((int64_t)h[i] * h[i]);
    uint32_t b = 0, k;
    for (uint64_t v = ss; v; v >>= 1) b++;
    k = b >= 28u + log2d ? 0u : (28u + log2d - b) / 2u;
    if (k > 7u) k = 7u;
    uint32_t r = llm_isqrt((ss << (2u * k)) >> log2d);
    int64_t inv = (int64_t)((1u << 30) / r);
    for (uint32_t i = 0; i < d; i++) n[i] = (int32_t)llm_rs((int64_t)h[i] * inv, 15u - k);
}

static void llm_resadd(int32_t *h, const int32_t *y, uint32_t d, const int32_t *mult, const uint8_t *shift) {
    for (uint32_t i = 0; i < d; i++)
        h[i] = llm_clamp(h[i] + llm_rs((int64_t)y[i] * mult[i], shift[i]), -32768, 32767);
}

static void llm_rope(int8_t *x, uint32_t pos, uint32_t heads, uint32_t hd, const int32_t *cs, const int32_t *sn) {
    uint32_t half = hd / 2u;
    const int32_t *c = cs + pos * half, *s = sn + pos * half;
    for (uint32_t h = 0; h < heads; h++) {
        int8_t *a = x + h * hd, *b = a + half;
        for (uint32_t j = 0; j < half; j++) {
            int32_t xa = a[j], xb = b[j];
            a[j] = (int8_t)llm_clamp(llm_rs((int64_t)(xa * c[j] - xb * s[j]), 14u), -128, 127);
            b[j] = (int8_t)llm_clamp(llm_rs((int64_t)(xa * s[j] + xb * c[j]), 14u), -128, 127);
        }
    }
}

static void llm_lut(const int8_t *x, const int8_t *table, int32_t *y, uint32_t n, const int8_t *gate) {
    for (uint32_t i = 0; i < n; i++) y[i] = (int32_t)table[x[i] + 128] * gate[i];
}

static uint32_t llm_argmax(const int32_t *v, uint32_t n) {
    uint32_t best = 0;
    for (uint32_t i = 1; i < n; i++) if (v[i] > v[best]) best = i;
    return best;
}
"""
