"""Element-wise IR ops on code tensors: the residual add and the one-input rescale.

Both are one requantisation of an int64 sum (DESIGN.md s3, docs/formats.md):

    t = x1 * m1 + x2 * m2                  (Rescale: t = x1 * m1)
    y = Requant(bias 0, mult 1, shift s, relu, out_bits, clip_hi).apply(t)

so the rounding, ReLU, ReLU6 clamp and saturation are :class:`~kernels.ir.Requant`'s
and nothing else.  The per-input multipliers put both inputs on the output's
scale with one shift: for real ratios ``r_i = s_i / s_out``, ``(m, s) =
quantize_multiplier(max r_i)`` and ``m_i = round(r_i * 2^s)`` (so the larger
input gets ``m`` itself, in [2^30, 2^31), and the other a smaller int32).
C: ``mico_add`` (kernels/src/eltwise.c).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Sequence

import numpy as np

from .ops import Op
from .types import IRError, Requant, TensorType, quantize_multiplier


def add_multipliers(ratios: Sequence[float]) -> tuple[tuple[int, ...], int]:
    """Integer multipliers ``m_i`` and one shift ``s`` with ``m_i / 2^s ~= ratios[i]``."""
    ratios = [float(r) for r in ratios]
    if min(ratios) <= 0:
        raise IRError(f"add/rescale scale ratios {ratios} must be positive.")
    _, shift = quantize_multiplier(max(ratios))
    return tuple(int(round(r * 2.0 ** shift)) for r in ratios), shift


@dataclass(eq=False)
class _Sum(Op):
    """``Requant(t)`` of ``t = sum_i x_i * mults[i]`` (int64), element-wise."""

    name: str = ""
    out_bits: int = 8
    mults: tuple[int, ...] | None = None
    rq: Requant | None = None
    real: tuple[float, ...] | None = field(default=None, repr=False)    # s_i / s_out before rounding

    def __post_init__(self):
        if self.out_bits not in (1, 2, 4, 8):
            raise IRError(f"{self.name}: {self.kind} writes codes of 1, 2, 4 or 8 bits, not {self.out_bits}.")
        if self.mults is not None:
            self.mults = tuple(int(m) for m in self.mults)
            if len(self.mults) != self.n_inputs or min(self.mults) < 0 or max(self.mults) >= 2**31:
                raise IRError(f"{self.name}: needs {self.n_inputs} multipliers in 0..2^31-1, got {self.mults}.")
        if self.rq is not None:
            if self.rq.channels != 1 or int(self.rq.bias[0]) != 0 or int(self.rq.mult[0]) != 1:
                raise IRError(f"{self.name}: the requantisation of a sum has bias 0, multiplier 1, one channel.")
            if self.rq.out_bits != self.out_bits:
                raise IRError(f"{self.name}: the requantisation writes {self.rq.out_bits} bits, the op says {self.out_bits}.")

    @classmethod
    def from_scales(cls, name: str, in_scales: Sequence[float], out_scale: float, out_bits: int,
                    relu: bool = False, clip_hi: int | None = None) -> "_Sum":
        """The op that puts inputs of real scales ``in_scales`` on ``out_scale``."""
        ratios = [float(s) / float(out_scale) for s in in_scales]
        mults, shift = add_multipliers(ratios)
        rq = Requant(np.zeros(1, np.int32), np.ones(1, np.int32), np.array([shift], np.uint8),
                     relu and out_bits != 1, out_bits, clip_hi=clip_hi)
        return cls(name=name, out_bits=out_bits, mults=mults, rq=rq, real=tuple(ratios))

    @property
    def complete(self) -> bool:
        return self.mults is not None and self.rq is not None

    def infer(self, ins):
        if len(ins) != self.n_inputs:
            raise IRError(f"{self.name}: takes {self.n_inputs} inputs, got {len(ins)}.")
        shape = ins[0].shape
        for t in ins:
            if t.shape != shape or t.bits == 0:
                raise IRError(f"{self.name}: {self.kind} needs code tensors of one shape, got "
                              f"{[u.shape for u in ins]} at {[u.bits for u in ins]} bits.")
        return TensorType(shape, self.out_bits)

    def run(self, xs):
        if self.mults is None or self.rq is None:
            raise IRError(f"{self.name}: the op has no multipliers (a structural graph cannot run).")
        t = sum(np.asarray(x, dtype=np.int64) * m for x, m in zip(xs, self.mults))
        return self.rq.apply(t.reshape(t.shape[0], 1, -1), 1).reshape(t.shape)

    def param_bits(self) -> int:
        return 32 * (self.n_inputs + 1)

    def spec(self, ins, batch=1, mode="kernel"):
        if mode != "layer":
            return None
        from harness.spec import KernelSpec

        # mico_add's time depends on the element count and the output path (sign or clamp), not on the
        # input widths: qa is the first input's
        return KernelSpec(self.kind, (batch, ins[0].numel), ins[0].bits, 0, "layer", self.out_bits)

    @classmethod
    def from_spec(cls, spec) -> tuple["_Sum", list[TensorType]]:
        N, E = spec.shape
        return cls(name=spec.op, out_bits=spec.out_bits), [TensorType((E,), spec.qa)] * cls.n_inputs

    def randomized(self, rng, ins):
        """Seeded scale ratios near those of a model: a b-bit input's scale over the output's is
        about 2^(out_bits - b) (the codes span one real range), times [0.5, 1.5).  The ratio sets
        the shift, and on rv32 a 64-bit shift by 32 or more takes another path: 4-bit sums of
        8-bit codes measured at ratios near 1 took 26% longer than in the model.  ReLU on codes
        wider than one bit, as the MAC layers."""
        ratios = [2.0 ** (self.out_bits - t.bits) * rng.uniform(0.5, 1.5) for t in ins]
        return type(self).from_scales(self.name, ratios, 1.0, self.out_bits, relu=self.out_bits > 1)

    def cost_terms(self, ins, out):
        return {"elements_in": sum(t.numel for t in ins), "elements_out": out.numel,
                "multiplies": self.n_inputs * out.numel}

    def c_body(self, ctx):
        if self.mults is None or self.rq is None:
            raise IRError(f"{self.name}: the op has no multipliers (a structural graph has no C).")
        m = list(self.mults) + [0]
        x2 = ctx.src[1] if self.n_inputs == 2 else "(const int8_t *)0"
        return (f"api->add({ctx.src[0]}, {x2}, {ctx.dst}, {ctx.out.numel}u, {m[0]}, {m[1]}, "
                f"{int(self.rq.shift[0])}u, {int(self.rq.relu)}, {self.out_bits}, {self.rq.c_hi});")


@dataclass(eq=False)
class Add(_Sum):
    """Residual add of two code tensors of one shape, each with its own scale, onto the
    output's code (optionally with ReLU / ReLU6): see the module doc."""

    kind: ClassVar[str] = "add"
    n_inputs: ClassVar[int] = 2


@dataclass(eq=False)
class Rescale(_Sum):
    """A code tensor requantised to another code (width and scale): where a consumer
    reads a tensor at a code other than the one its producer wrote."""

    kind: ClassVar[str] = "rescale"
    n_inputs: ClassVar[int] = 1


__all__ = ["Add", "Rescale", "add_multipliers"]
