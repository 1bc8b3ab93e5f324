"""Attention IR ops: integer softmax, activation x activation matmuls, token-wise linear, transpose.

Numeric spec: docs/formats.md, "Transformer ops".  In short:

* :class:`Softmax` -- shift-based exp2 on the row maximum's offset, a cubic for
  the fractional power of two in Q15, one integer division per output; output
  codes ``round(127 * e_i / sum e)`` in [0, 127] (scale 1/127).
* :class:`AttnMatMul` -- ``QK^T`` (``mode="qk"``: (T, D) x (S, D) -> (H, T, S)) and
  ``AV`` (``mode="av"``: (H, T, S) x (S, D) -> (T, D)) on int8 values of any code
  width, int32 accumulators, then a :class:`~kernels.ir.Requant` with one
  multiplier/shift per head.
* :class:`TokenLinear` -- a linear layer applied to every token of a (T, K)
  tensor: the MAC op of transformers (the bit-packed ``mico_matmul`` with N = T).
* :class:`Transpose` -- (A, B) -> (B, A) codes (patch embedding -> tokens).

Every op's C is its own ``c_support`` (compiled into the model image), so no
firmware change is needed.  The C uses only 32-bit division and 64-bit
multiplies/shifts (inline on rv32im).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from kernels import reference

from .ops import Linear, Op, Scratch, _one
from .types import IRError, Requant, TensorType, quantize_multiplier

#: Q16 fixed point of the base-2 exponent; Q15 of the fractional power
EXP_FRAC = 16
#: 2^-f ~= 1 + f*(C1 + f*(C2 + f*C3)) on f in [0, 1), coefficients in Q15
#: (relative-error minimax-like cubic with the constant term pinned to 1, so the row maximum maps to
#: exactly 2^15; benchmarks/bench_transformer_ops.py measures its error)
EXP2_C = (-22661, 7575, -1298)
SOFTMAX_ONE = 127                  # the output code of probability 1.0 (scale 1/127)


def exp2_neg_q15(z: np.ndarray) -> np.ndarray:
    """``2^(-z / 2^16) * 2^15`` for int64 ``z >= 0`` (Q16 exponent), integer: the
    fraction's cubic in Q15, then a right shift by the integer part (0 past 15)."""
    z = np.asarray(z, dtype=np.int64)
    q = z >> EXP_FRAC
    f = (z & ((1 << EXP_FRAC) - 1)) >> 1
    p = np.full_like(z, EXP2_C[2])
    p = EXP2_C[1] + ((p * f) >> 15)
    p = EXP2_C[0] + ((p * f) >> 15)
    p = 32768 + ((p * f) >> 15)
    return np.where(q > 15, 0, p >> np.minimum(q, 15))


def softmax_codes(x: np.ndarray, mult: int, shift: int) -> np.ndarray:
    """The integer softmax along the last axis of int64 codes (docs/formats.md)."""
    x = np.asarray(x, dtype=np.int64)
    d = x.max(axis=-1, keepdims=True) - x                       # >= 0
    z = (d * int(mult) + (1 << (int(shift) - 1))) >> int(shift)  # Q16 base-2 exponent
    e = exp2_neg_q15(z)
    s = e.sum(axis=-1, keepdims=True)
    return (e * SOFTMAX_ONE + s // 2) // s


SOFTMAX_C = r"""
static __attribute__((unused)) void mico_softmax_rows(const int8_t *x, int8_t *y, uint32_t rows, uint32_t L, int32_t mult,
                              uint32_t shift, uint32_t *e) {
    for (uint32_t r = 0; r < rows; r++) {
        const int8_t *xr = x + r * L;
        int8_t *yr = y + r * L;
        int32_t m = xr[0];
        for (uint32_t i = 1; i < L; i++) if (xr[i] > m) m = xr[i];
        uint32_t s = 0;
        for (uint32_t i = 0; i < L; i++) {
            int64_t d = (int64_t)(m - xr[i]);
            int64_t z = (d * mult + ((int64_t)1 << (shift - 1u))) >> shift;
            int32_t q = (int32_t)(z >> 16);
            int32_t f = (int32_t)((z & 0xFFFF) >> 1);
            int32_t p = MICO_EXP2_C3;
            p = MICO_EXP2_C2 + ((p * f) >> 15);
            p = MICO_EXP2_C1 + ((p * f) >> 15);
            p = 32768 + ((p * f) >> 15);
            e[i] = q > 15 ? 0u : (uint32_t)(p >> q);
            s += e[i];
        }
        for (uint32_t i = 0; i < L; i++) yr[i] = (int8_t)((e[i] * 127u + s / 2u) / s);
    }
}
""".replace("MICO_EXP2_C1", f"({EXP2_C[0]})").replace("MICO_EXP2_C2", f"({EXP2_C[1]})") \
   .replace("MICO_EXP2_C3", f"({EXP2_C[2]})")


@dataclass(eq=False)
class Softmax(Op):
    """Integer softmax along the last axis of a code tensor of real scale ``in_scale``.

    ``mult / 2^shift`` is ``in_scale * log2(e) * 2^16`` (the code difference to the row
    maximum as a Q16 base-2 exponent).  Output: 8-bit codes in [0, 127], scale 1/127."""

    kind: ClassVar[str] = "softmax"
    c_support: ClassVar[str] = SOFTMAX_C
    name: str = ""
    mult: int | None = None
    shift: int | None = None
    in_scale: float | None = field(default=None, repr=False)

    @classmethod
    def from_scale(cls, name: str, in_scale: float) -> "Softmax":
        mult, shift = quantize_multiplier(float(in_scale) * math.log2(math.e) * (1 << EXP_FRAC))
        return cls(name=name, mult=mult, shift=shift, in_scale=float(in_scale))

    @property
    def complete(self) -> bool:
        return self.mult is not None and self.shift is not None

    def infer(self, ins):
        t = _one(ins, self)
        if t.bits == 0:
            raise IRError(f"{self.name}: softmax reads codes, not int32 accumulators.")
        if t.shape[-1] > 65535:
            raise IRError(f"{self.name}: softmax rows are at most 65535 long, got {t.shape[-1]}.")
        return TensorType(t.shape, 8)

    def run(self, xs):
        if not self.complete:
            raise IRError(f"{self.name}: the softmax has no input scale (a structural graph cannot run).")
        return softmax_codes(xs[0], self.mult, self.shift)

    def param_bits(self):
        return 40

    def randomized(self, rng, ins):
        return type(self).from_scale(self.name, float(rng.uniform(0.02, 0.2)))

    def scratch(self, ins, out):
        return Scratch(acc_words=ins[0].shape[-1])

    def cost_terms(self, ins, out):
        return {"elements_in": ins[0].numel, "elements_out": out.numel, "divides": out.numel}

    def spec(self, ins, batch=1, mode="kernel"):
        if mode != "layer":
            return None
        from harness.spec import KernelSpec

        t = ins[0]
        return KernelSpec("softmax", (batch, t.numel // t.shape[-1], t.shape[-1]), t.bits, 0, "layer", 8)

    @classmethod
    def from_spec(cls, spec):
        N, R, L = spec.shape
        return cls(name=spec.op), TensorType((R, L), spec.qa)

    def c_body(self, ctx):
        if not self.complete:
            raise IRError(f"{self.name}: the softmax has no input scale (a structural graph has no C).")
        L = ctx.ins[0].shape[-1]
        return (f"mico_softmax_rows({ctx.src[0]}, {ctx.dst}, {ctx.out.numel // L}u, {L}u, {self.mult}, "
                f"{self.shift}u, (uint32_t *)(void *)acc);")


# ---- activation x activation matmul --------------------------------------------------------------

ATTN_C = r"""
static __attribute__((unused)) void mico_attn_qk(const int8_t *a, const int8_t *b, int32_t *acc, uint32_t H, uint32_t T, uint32_t S,
                         uint32_t dh) {
    uint32_t D = H * dh;
    for (uint32_t h = 0; h < H; h++)
        for (uint32_t t = 0; t < T; t++) {
            const int8_t *ar = a + t * D + h * dh;
            for (uint32_t s = 0; s < S; s++) {
                const int8_t *br = b + s * D + h * dh;
                int32_t v = 0;
                for (uint32_t j = 0; j < dh; j++) v += (int32_t)ar[j] * br[j];
                acc[(h * T + t) * S + s] = v;
            }
        }
}

static __attribute__((unused)) void mico_attn_av(const int8_t *p, const int8_t *v, int32_t *acc, uint32_t H, uint32_t T, uint32_t S,
                         uint32_t dh) {
    uint32_t D = H * dh;
    for (uint32_t t = 0; t < T; t++)
        for (uint32_t h = 0; h < H; h++) {
            const int8_t *pr = p + (h * T + t) * S;
            int32_t *out = acc + t * D + h * dh;
            for (uint32_t j = 0; j < dh; j++) out[j] = 0;
            for (uint32_t s = 0; s < S; s++) {
                int32_t w = pr[s];
                const int8_t *vr = v + s * D + h * dh;
                for (uint32_t j = 0; j < dh; j++) out[j] += w * vr[j];
            }
        }
}
"""


@dataclass(eq=False)
class AttnMatMul(Op):
    """A matmul of two activation tensors, per head, with per-head requantisation.

    ``mode="qk"``: a (T, D), b (S, D) -> y (H, T, S), ``y[h,t,s] = sum_j a[t, h*dh+j] b[s, h*dh+j]``.
    ``mode="av"``: a (H, T, S), b (S, D) -> y (T, D), ``y[t, h*dh+j] = sum_s a[h,t,s] b[s, h*dh+j]``.
    Inputs are code values of any width (read as int8 values, no packing); the int32
    accumulators go through ``rq`` (bias 0, one multiplier and shift per head)."""

    kind: ClassVar[str] = "attn_matmul"
    n_inputs: ClassVar[int] = 2
    c_support: ClassVar[str] = ATTN_C
    name: str = ""
    mode: str = "qk"
    heads: int = 1
    out_bits: int = 8
    rq: Requant | None = None

    def __post_init__(self):
        if self.mode not in ("qk", "av"):
            raise IRError(f"{self.name}: attention matmul mode {self.mode!r} is not 'qk' or 'av'.")
        if self.heads < 1:
            raise IRError(f"{self.name}: heads must be >= 1.")
        if self.out_bits not in (1, 2, 4, 8):
            raise IRError(f"{self.name}: writes codes of 1, 2, 4 or 8 bits, not {self.out_bits}.")
        if self.rq is not None:
            if self.rq.channels != self.heads or self.rq.out_bits != self.out_bits or self.rq.relu:
                raise IRError(f"{self.name}: the requantisation needs one channel per head ({self.heads}), "
                              f"{self.out_bits} output bits and no ReLU.")

    @classmethod
    def from_scales(cls, name: str, mode: str, heads: int, scale_a: float, scale_b, scale_out: float,
                    out_bits: int) -> "AttnMatMul":
        """``scale_b`` may be one scale or one per head; the multiplier of head h is
        ``scale_a * scale_b[h] / scale_out``."""
        real = np.broadcast_to(np.asarray(scale_b, dtype=np.float64) * float(scale_a) / float(scale_out), (heads,))
        rq = Requant.from_scale(np.zeros(heads, np.int32), real, relu=False, out_bits=out_bits)
        return cls(name=name, mode=mode, heads=heads, out_bits=out_bits, rq=rq)

    @property
    def complete(self) -> bool:
        return self.rq is not None

    def _dims(self, ins) -> tuple[int, int, int, int]:
        """(H, T, S, dh) for these input types."""
        a, b = ins
        if a.bits == 0 or b.bits == 0:
            raise IRError(f"{self.name}: attention matmuls read codes, not int32 accumulators.")
        if len(b.shape) != 2 or b.shape[1] % self.heads:
            raise IRError(f"{self.name}: the second input must be (S, D) with D divisible by {self.heads} heads, "
                          f"got {b.shape}.")
        S, D = b.shape
        dh = D // self.heads
        if self.mode == "qk":
            if a.shape != (a.shape[0], D) or len(a.shape) != 2:
                raise IRError(f"{self.name}: QK^T needs (T, {D}) and (S, {D}), got {a.shape} and {b.shape}.")
            return self.heads, a.shape[0], S, dh
        if len(a.shape) != 3 or a.shape[0] != self.heads or a.shape[2] != S:
            raise IRError(f"{self.name}: AV needs ({self.heads}, T, {S}) and ({S}, {D}), got {a.shape} and {b.shape}.")
        return self.heads, a.shape[1], S, dh

    def infer(self, ins):
        if len(ins) != 2:
            raise IRError(f"{self.name}: takes two inputs, got {len(ins)}.")
        H, T, S, dh = self._dims(ins)
        return TensorType((H, T, S) if self.mode == "qk" else (T, H * dh), self.out_bits)

    def accumulate(self, xs) -> np.ndarray:
        """int64 accumulators: (N, H, T, S) for qk, (N, T, H, dh) for av."""
        a, b = (np.asarray(x, dtype=np.int64) for x in xs)
        N, S, D = b.shape
        bh = b.reshape(N, S, self.heads, D // self.heads)
        if self.mode == "qk":
            ah = a.reshape(N, a.shape[1], self.heads, D // self.heads)
            return np.einsum("nthj,nshj->nhts", ah, bh)
        return np.einsum("nhts,nshj->nthj", a, bh)

    def run(self, xs):
        if self.rq is None:
            raise IRError(f"{self.name}: the op has no requantisation (a structural graph cannot run).")
        acc = self.accumulate(xs)
        if self.mode == "qk":
            return self.rq.apply(acc, 1)
        N, T, H, dh = acc.shape
        return self.rq.apply(acc, 2).reshape(N, T, H * dh)

    def param_bits(self):
        return 40 * self.heads

    def randomized(self, rng, ins):
        H, T, S, dh = self._dims(ins)
        red = dh if self.mode == "qk" else S
        top = 1 << max(self.out_bits - 1, 0)
        ra = max(abs(v) for v in ins[0].value_range)
        rb = max(abs(v) for v in ins[1].value_range)
        return type(self).from_scales(self.name, self.mode, self.heads, 1.0,
                                      rng.uniform(0.5, 1.5, H) * top / (ra * rb * red ** 0.5), 1.0, self.out_bits)

    def scratch(self, ins, out):
        return Scratch(acc_words=out.numel)

    def cost_terms(self, ins, out):
        H, T, S, dh = self._dims(ins)
        return {"macs": H * T * S * dh, "elements_in": ins[0].numel + ins[1].numel, "elements_out": out.numel}

    def spec(self, ins, batch=1, mode="kernel"):
        if mode != "layer":
            return None
        from harness.spec import KernelSpec

        H, T, S, dh = self._dims(ins)
        return KernelSpec(f"attn_{self.mode}", (batch, H, T, S, dh), ins[0].bits, ins[1].bits, "layer",
                          self.out_bits)

    @classmethod
    def from_spec(cls, spec):
        N, H, T, S, dh = spec.shape
        mode = spec.op[len("attn_"):]
        a = TensorType((T, H * dh), spec.qa) if mode == "qk" else TensorType((H, T, S), spec.qa)
        return cls(name=spec.op, mode=mode, heads=H, out_bits=spec.out_bits), [a, TensorType((S, H * dh), spec.qw)]

    def c_decls(self, ctx):
        s = ctx.sym
        return "\n".join([ctx.array("int32_t", f"{s}_b", self.rq.bias), ctx.array("int32_t", f"{s}_m", self.rq.mult),
                          ctx.array("uint8_t", f"{s}_s", self.rq.shift)])

    def c_body(self, ctx):
        if self.rq is None:
            raise IRError(f"{self.name}: the op has no requantisation (a structural graph has no C).")
        H, T, S, dh = self._dims(ctx.ins)
        s = ctx.sym
        n = ctx.out.numel
        inner = T * S if self.mode == "qk" else dh
        return "\n".join([
            f"mico_attn_{self.mode}({ctx.src[0]}, {ctx.src[1]}, acc, {H}u, {T}u, {S}u, {dh}u);",
            f"api->requant(acc, {ctx.dst}, {n}u, {H}u, {inner}u, {s}_b, {s}_m, {s}_s, 0, {self.out_bits});",
        ])


# ---- per-token linear and transpose ------------------------------------------------------------

@dataclass(eq=False)
class TokenLinear(Linear):
    """``Y[t, m] = sum_k X[t, k] W[m, k]`` for every token t of a (T, K) input: the
    transformer's MAC op, run as one bit-packed ``mico_matmul`` with N = T rows (its
    kernel spec is that matmul's, so sweeps and the latency model price it as one)."""

    kind: ClassVar[str] = "token_linear"

    def infer(self, ins):
        from .ops import _check_act

        t = _one(ins, self)
        _check_act(self, t, self.qa)
        if len(t.shape) != 2:
            raise IRError(f"{self.name}: a token-wise linear layer needs a (T, K) input, got {t.shape}.")
        if self.weight is not None and self.weight.shape != (self.out_features, t.shape[1]):
            raise IRError(f"{self.name}: weights {self.weight.shape} do not fit {t.shape[1]} inputs.")
        if self.rq is not None and self.rq.channels != self.out_features:
            raise IRError(f"{self.name}: {self.rq.channels} requant channels for {self.out_features} outputs.")
        return TensorType((t.shape[0], self.out_features), self.out_bits, self.out_signed)

    def _weight_shape(self, ins):
        return (self.out_features, ins[0].shape[1])

    def accumulate(self, xs):
        w, _ = self._require()
        x = np.asarray(xs[0])
        N, T, K = x.shape
        return reference.matmul(x.reshape(N * T, K), w).reshape(N, T, self.out_features)

    def finish(self, acc):
        _, rq = self._require()
        return rq.apply(acc, 2)

    def spec(self, ins, batch=1, mode="kernel"):
        from harness.spec import KernelSpec

        T, K = ins[0].shape
        return KernelSpec("matmul", (batch * T, self.out_features, K), self.qa, self.qw, mode,
                          self.out_bits if mode == "layer" else 0)

    def cost_terms(self, ins, out):
        T, K = ins[0].shape
        return {"macs": T * self.out_features * K, "elements_in": T * K, "elements_out": out.numel,
                "weights": self.out_features * K}

    def scratch(self, ins, out):
        T, K = ins[0].shape
        return Scratch(packed_words=T * reference.words_per_row(K, self.qa), acc_words=T * self.out_features,
                       kernel_bytes=2 * ((K + 31) & ~31))

    def c_body(self, ctx):
        T, K = ctx.ins[0].shape
        wpr = reference.words_per_row(K, self.qa)
        M = self.out_features
        return "\n".join([
            f"for (uint32_t t = 0; t < {T}u; t++)",
            f"    api->pack({ctx.src[0]} + t * {K}u, {K}u, {self.qa}, packed + t * {wpr}u);",
            *([self._c_flip(T, K)] if self._unsigned_in(ctx.ins) else []),
            f"api->matmul(packed, {ctx.sym}_w, acc, {T}u, {M}u, {K}u, {self.qa}, {self.qw}, kscratch);",
            self._rq_body(ctx, T * M, M, 1),
        ])


TRANSPOSE_C = r"""
static __attribute__((unused)) void mico_transpose_i8(const int8_t *x, int8_t *y, uint32_t A, uint32_t B) {
    for (uint32_t a = 0; a < A; a++)
        for (uint32_t b = 0; b < B; b++) y[b * A + a] = x[a * B + b];
}
"""


@dataclass(eq=False)
class Transpose(Op):
    """(A, B) -> (B, A) codes: channels-first feature maps to tokens and back."""

    kind: ClassVar[str] = "transpose"
    c_support: ClassVar[str] = TRANSPOSE_C
    name: str = ""

    def infer(self, ins):
        t = _one(ins, self)
        if len(t.shape) != 2 or t.bits == 0:
            raise IRError(f"{self.name}: transpose needs a (A, B) code tensor, got {t.shape} at {t.bits} bits.")
        return TensorType(t.shape[::-1], t.bits, t.signed)

    def run(self, xs):
        return np.swapaxes(xs[0], 1, 2)

    def spec(self, ins, batch=1, mode="kernel"):
        if mode != "layer":
            return None
        from harness.spec import KernelSpec

        return KernelSpec("transpose", (batch, *ins[0].shape), ins[0].bits, 0, "layer", ins[0].bits)

    @classmethod
    def from_spec(cls, spec):
        N, A, B = spec.shape
        return cls(name=spec.op), TensorType((A, B), spec.qa)

    def c_body(self, ctx):
        A, B = ctx.ins[0].shape
        return f"mico_transpose_i8({ctx.src[0]}, {ctx.dst}, {A}u, {B}u);"


__all__ = ["AttnMatMul", "Softmax", "TokenLinear", "Transpose", "exp2_neg_q15", "softmax_codes"]
