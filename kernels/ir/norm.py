"""Normalisation and activation IR ops of transformers: integer LayerNorm and GELU.

Numeric spec: docs/formats.md, "Transformer ops".  In short:

* :class:`LayerNorm` -- per token of a (T, D) code tensor: centred values scaled by D
  (exact), an integer square root of their sum of squares (digit by digit), a Q15
  quotient per element, then gamma and beta as one per-feature requantisation.
* :class:`GELU` -- ``x * (1 + erf(x / sqrt 2)) / 2`` with erf as I-BERT's second-order
  polynomial (clipped at 1.769), all in integers, then one requantisation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from .ops import Op, Scratch, _one
from .types import IRError, Requant, TensorType, quantize_multiplier

LN_FRAC = 15                  # the normalised value's fixed point (Q15 of (x - mean) / (sigma sqrt D))
LN_MAX_D = 256                # |c| = |D x - sum x| < 2^16, so |c| << 15 fits 32 unsigned bits


def isqrt(v: np.ndarray) -> np.ndarray:
    """floor(sqrt(v)) of int64 ``v`` in [0, 2^52) (exact, as the C's digit-by-digit root)."""
    v = np.asarray(v, dtype=np.int64)
    r = np.floor(np.sqrt(v.astype(np.float64))).astype(np.int64)
    r = np.where(r * r > v, r - 1, r)
    return np.where((r + 1) * (r + 1) <= v, r + 1, r)


def layernorm_q15(x: np.ndarray) -> np.ndarray:
    """``(x - mean) / (sigma * sqrt(D))`` in Q15 along the last axis (docs/formats.md)."""
    x = np.asarray(x, dtype=np.int64)
    D = x.shape[-1]
    c = x * D - x.sum(axis=-1, keepdims=True)
    r = isqrt((c * c).sum(axis=-1, keepdims=True))
    rs = np.maximum(r, 1)
    n = ((np.abs(c) << LN_FRAC) + rs // 2) // rs
    return np.where(r > 0, np.sign(c) * n, 0)


LAYERNORM_C = r"""
static __attribute__((unused)) uint32_t mico_isqrt64(uint64_t v) {
    uint64_t r = 0, bit = (uint64_t)1 << 62;
    while (bit > v) bit >>= 2;
    while (bit) {
        if (v >= r + bit) { v -= r + bit; r = (r >> 1) + bit; } else r >>= 1;
        bit >>= 2;
    }
    return (uint32_t)r;
}

static __attribute__((unused)) void mico_layernorm_q15(const int8_t *x, int32_t *n, uint32_t T, uint32_t D,
                                                       const int8_t *sign) {
    for (uint32_t t = 0; t < T; t++) {
        const int8_t *xr = x + t * D;
        int32_t *nr = n + t * D;
        int32_t sum = 0;
        for (uint32_t i = 0; i < D; i++) sum += xr[i];
        uint64_t ss = 0;
        for (uint32_t i = 0; i < D; i++) {
            int32_t c = (int32_t)xr[i] * (int32_t)D - sum;
            nr[i] = c;
            ss += (uint64_t)((int64_t)c * c);
        }
        uint32_t r = mico_isqrt64(ss);
        for (uint32_t i = 0; i < D; i++) {
            int32_t c = nr[i];
            uint32_t a = (uint32_t)(c < 0 ? -c : c);
            int32_t v = r ? (int32_t)(((a << 15) + r / 2u) / r) : 0;
            v = c < 0 ? -v : v;
            nr[i] = sign[i] < 0 ? -v : v;
        }
    }
}
"""


@dataclass(eq=False)
class LayerNorm(Op):
    """Integer LayerNorm over the last axis of (T, D) codes; gamma's sign per feature
    (``sign``) and ``|gamma| sqrt(D) / (2^15 s_out)``, ``beta / s_out`` in ``rq``."""

    kind: ClassVar[str] = "layernorm"
    c_support: ClassVar[str] = LAYERNORM_C
    name: str = ""
    out_bits: int = 8
    sign: np.ndarray | None = None
    rq: Requant | None = None

    def __post_init__(self):
        if self.out_bits not in (1, 2, 4, 8):
            raise IRError(f"{self.name}: layer norm writes codes of 1, 2, 4 or 8 bits, not {self.out_bits}.")
        if self.sign is not None:
            self.sign = np.where(np.asarray(self.sign) < 0, -1, 1).astype(np.int8)
        if self.rq is not None and (self.rq.out_bits != self.out_bits or self.rq.relu):
            raise IRError(f"{self.name}: the requantisation must write {self.out_bits} bits without ReLU.")

    @classmethod
    def from_params(cls, name: str, gamma, beta, out_scale: float, out_bits: int) -> "LayerNorm":
        """The op of a float LayerNorm (weights ``gamma``, ``beta``) writing codes of scale ``out_scale``."""
        gamma = np.asarray(gamma, dtype=np.float64).ravel()
        beta = np.asarray(beta, dtype=np.float64).ravel()
        D = gamma.size
        real = np.maximum(np.abs(gamma), 1e-9) * math.sqrt(D) / (2 ** LN_FRAC * float(out_scale))
        pairs = [quantize_multiplier(r) for r in real]
        fixed = np.array([m / 2.0 ** s for m, s in pairs])
        bias = np.clip(np.round(beta / float(out_scale) / fixed), -(2**31), 2**31 - 1)
        rq = Requant(bias.astype(np.int64).astype(np.int32), np.array([p[0] for p in pairs], np.int32),
                     np.array([p[1] for p in pairs], np.uint8), False, out_bits, real_scale=real)
        return cls(name=name, out_bits=out_bits, sign=np.sign(gamma), rq=rq)

    @property
    def complete(self) -> bool:
        return self.sign is not None and self.rq is not None

    def infer(self, ins):
        t = _one(ins, self)
        if len(t.shape) != 2 or t.bits == 0:
            raise IRError(f"{self.name}: layer norm needs (T, D) codes, got {t.shape} at {t.bits} bits.")
        if t.shape[1] > LN_MAX_D:
            raise IRError(f"{self.name}: layer norm rows are at most {LN_MAX_D} wide, got {t.shape[1]}.")
        if self.rq is not None and self.rq.channels != t.shape[1]:
            raise IRError(f"{self.name}: {self.rq.channels} parameters for {t.shape[1]} features.")
        return TensorType(t.shape, self.out_bits)

    def run(self, xs):
        if not self.complete:
            raise IRError(f"{self.name}: the layer norm has no parameters (a structural graph cannot run).")
        n = layernorm_q15(xs[0]) * self.sign.astype(np.int64)
        return self.rq.apply(n, n.ndim - 1)

    def param_bits(self):
        return 0 if self.rq is None else 8 * self.rq.channels + 72 * self.rq.channels

    def randomized(self, rng, ins):
        D = ins[0].shape[1]
        top = 1 << max(self.out_bits - 1, 0)
        return type(self).from_params(self.name, rng.uniform(-1.5, 1.5, D), rng.uniform(-0.5, 0.5, D),
                                      3.0 / top, self.out_bits)

    def scratch(self, ins, out):
        return Scratch(acc_words=out.numel)

    def cost_terms(self, ins, out):
        T, D = ins[0].shape
        return {"elements_in": ins[0].numel, "elements_out": out.numel, "divides": out.numel, "rows": T}

    def spec(self, ins, batch=1, mode="kernel"):
        if mode != "layer":
            return None
        from harness.spec import KernelSpec

        T, D = ins[0].shape
        return KernelSpec("layernorm", (batch, T, D), ins[0].bits, 0, "layer", self.out_bits)

    @classmethod
    def from_spec(cls, spec):
        N, T, D = spec.shape
        return cls(name=spec.op, out_bits=spec.out_bits), TensorType((T, D), spec.qa)

    def c_decls(self, ctx):
        s = ctx.sym
        return "\n".join([ctx.array("int8_t", f"{s}_sg", self.sign), ctx.array("int32_t", f"{s}_b", self.rq.bias),
                          ctx.array("int32_t", f"{s}_m", self.rq.mult), ctx.array("uint8_t", f"{s}_s", self.rq.shift)])

    def c_body(self, ctx):
        if not self.complete:
            raise IRError(f"{self.name}: the layer norm has no parameters (a structural graph has no C).")
        T, D = ctx.ins[0].shape
        s = ctx.sym
        return "\n".join([
            f"mico_layernorm_q15({ctx.src[0]}, acc, {T}u, {D}u, {s}_sg);",
            f"api->requant(acc, {ctx.dst}, {T * D}u, {D}u, 1u, {s}_b, {s}_m, {s}_s, 0, {self.out_bits});",
        ])


# ---- GELU --------------------------------------------------------------------------------------

GELU_A, GELU_B = 0.2888, 1.769       # erf(u) ~ sgn(u) (1 - A (min(|u|, B) - B)^2)  (I-BERT's i-erf)
GELU_ACC_LIMIT = 1 << 31


def gelu_acc(x: np.ndarray, qb: int, qc: int) -> np.ndarray:
    """``x * (qc + sgn(x) * (qc - (min(|x|, qb) - qb)^2))`` (int64): GELU(x s) / (s A sigma^2 / 2)."""
    x = np.asarray(x, dtype=np.int64)
    m = np.minimum(np.abs(x), qb) - qb
    return x * (qc + np.sign(x) * (qc - m * m))


GELU_C = r"""
static __attribute__((unused)) void mico_gelu_acc(const int8_t *x, int32_t *acc, uint32_t n, int32_t qb,
                                                  int32_t qc) {
    for (uint32_t i = 0; i < n; i++) {
        int32_t v = x[i];
        int32_t a = v < 0 ? -v : v;
        int32_t m = (a < qb ? a : qb) - qb;
        int32_t e = qc - m * m;
        acc[i] = v * (v < 0 ? qc - e : v > 0 ? qc + e : qc);
    }
}
"""


@dataclass(eq=False)
class GELU(Op):
    """Integer GELU of codes of scale ``s``: ``sigma = s / sqrt 2``, ``qb = round(B / sigma)``,
    ``qc = round(1 / (A sigma^2))``; :func:`gelu_acc`, then ``rq`` (one channel, multiplier
    ``s A sigma^2 / (2 s_out)``)."""

    kind: ClassVar[str] = "gelu"
    c_support: ClassVar[str] = GELU_C
    name: str = ""
    out_bits: int = 8
    qb: int | None = None
    qc: int | None = None
    rq: Requant | None = None
    in_scale: float | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.out_bits not in (1, 2, 4, 8):
            raise IRError(f"{self.name}: GELU writes codes of 1, 2, 4 or 8 bits, not {self.out_bits}.")
        if self.qc is not None and (self.qc < 1 or 128 * (2 * self.qc) >= GELU_ACC_LIMIT):
            raise IRError(f"{self.name}: GELU input scale too small for 32-bit accumulators (qc = {self.qc}).")

    @classmethod
    def from_scales(cls, name: str, in_scale: float, out_scale: float, out_bits: int) -> "GELU":
        sigma = float(in_scale) / math.sqrt(2.0)
        qb = max(1, int(round(GELU_B / sigma)))
        qc = int(round(1.0 / (GELU_A * sigma * sigma)))
        real = float(in_scale) * GELU_A * sigma * sigma / 2.0 / float(out_scale)
        rq = Requant.from_scale(np.zeros(1, np.int32), real, relu=False, out_bits=out_bits)
        return cls(name=name, out_bits=out_bits, qb=qb, qc=qc, rq=rq, in_scale=float(in_scale))

    @property
    def complete(self) -> bool:
        return self.qb is not None and self.qc is not None and self.rq is not None

    def infer(self, ins):
        t = _one(ins, self)
        if t.bits == 0:
            raise IRError(f"{self.name}: GELU reads codes, not int32 accumulators.")
        return TensorType(t.shape, self.out_bits)

    def run(self, xs):
        if not self.complete:
            raise IRError(f"{self.name}: the GELU has no scales (a structural graph cannot run).")
        acc = gelu_acc(xs[0], self.qb, self.qc)
        return self.rq.apply(acc.reshape(acc.shape[0], 1, -1), 1).reshape(acc.shape)

    def param_bits(self):
        return 128

    def randomized(self, rng, ins):
        top = 1 << max(self.out_bits - 1, 0)
        s = float(rng.uniform(0.02, 0.06))
        return type(self).from_scales(self.name, s, s * 128 / top, self.out_bits)

    def scratch(self, ins, out):
        return Scratch(acc_words=out.numel)

    def spec(self, ins, batch=1, mode="kernel"):
        if mode != "layer":
            return None
        from harness.spec import KernelSpec

        return KernelSpec("gelu", (batch, ins[0].numel), ins[0].bits, 0, "layer", self.out_bits)

    @classmethod
    def from_spec(cls, spec):
        N, E = spec.shape
        return cls(name=spec.op, out_bits=spec.out_bits), TensorType((E,), spec.qa)

    def c_decls(self, ctx):
        s = ctx.sym
        return "\n".join([ctx.array("int32_t", f"{s}_b", self.rq.bias), ctx.array("int32_t", f"{s}_m", self.rq.mult),
                          ctx.array("uint8_t", f"{s}_s", self.rq.shift)])

    def c_body(self, ctx):
        if not self.complete:
            raise IRError(f"{self.name}: the GELU has no scales (a structural graph has no C).")
        n = ctx.out.numel
        s = ctx.sym
        return "\n".join([
            f"mico_gelu_acc({ctx.src[0]}, acc, {n}u, {self.qb}, {self.qc});",
            f"api->requant(acc, {ctx.dst}, {n}u, 1u, {n}u, {s}_b, {s}_m, {s}_s, 0, {self.out_bits});",
        ])


__all__ = ["GELU", "LayerNorm", "gelu_acc", "isqrt", "layernorm_q15"]
