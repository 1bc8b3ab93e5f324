"""Data-movement IR ops: concatenation, channel shuffle, the 1-D im2col, reshapes.

None of them computes: codes move, widths and scales stay.  A concatenation
therefore needs every input on one code (the lowering inserts a
:class:`~kernels.ir.eltwise.Rescale` where a branch ends on another one).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import ClassVar

import numpy as np

from .ops import Op, _one
from .types import IRError, TensorType


@dataclass(eq=False)
class Concat(Op):
    """Concatenation along the channel axis (axis 0 of a tensor without batch).

    In the C-order layout the generated models use (one image), that is each
    input copied after the previous one (``mico_copy_i8``)."""

    kind: ClassVar[str] = "concat"
    name: str = ""
    count: int = 2

    def __post_init__(self):
        if self.count < 2:
            raise IRError(f"{self.name}: a concatenation needs at least two inputs.")

    @property
    def n_inputs(self) -> int:       # type: ignore[override]
        return self.count

    def infer(self, ins):
        if len(ins) != self.count:
            raise IRError(f"{self.name}: takes {self.count} inputs, got {len(ins)}.")
        first = ins[0]
        for t in ins[1:]:
            if t.shape[1:] != first.shape[1:] or (t.bits, t.signed) != (first.bits, first.signed) or t.bits == 0:
                raise IRError(f"{self.name}: concatenated tensors need one code and equal shapes past the channels, "
                              f"got {[u.shape for u in ins]} at {[u.bits for u in ins]} bits.")
        return TensorType((sum(t.shape[0] for t in ins), *first.shape[1:]), first.bits, first.signed)

    def run(self, xs):
        return np.concatenate([np.asarray(x, dtype=np.int64) for x in xs], axis=1)

    def spec(self, ins, batch=1, mode="kernel"):
        if mode != "layer" or self.count != 2:
            return None     # no zoo model concatenates more than two tensors: no spec kind for it yet
        from harness.spec import KernelSpec

        t = ins[0]
        rest = t.numel // t.shape[0]
        return KernelSpec("concat", (batch, t.shape[0], ins[1].shape[0], rest), t.bits, 0, "layer", t.bits)

    @classmethod
    def from_spec(cls, spec) -> tuple["Concat", list[TensorType]]:
        N, C1, C2, S = spec.shape
        return cls(name=spec.op), [TensorType((C1, S), spec.qa), TensorType((C2, S), spec.qa)]

    def c_body(self, ctx):
        lines, off = [], 0
        for src, t in zip(ctx.src, ctx.ins):
            lines.append(f"api->copy({src}, {ctx.dst} + {off}u, {t.numel}u);")
            off += t.numel
        return "\n".join(lines)


@dataclass(eq=False)
class ChannelShuffle(Op):
    """ShuffleNet's channel shuffle: channel ``g*(C/G) + k`` moves to ``k*G + g``
    (torch: view (G, C/G, ...), transpose, flatten)."""

    kind: ClassVar[str] = "shuffle"
    name: str = ""
    groups: int = 2

    def infer(self, ins):
        t = _one(ins, self)
        if len(t.shape) < 2 or t.shape[0] % self.groups or self.groups < 1 or t.bits == 0:
            raise IRError(f"{self.name}: shuffling {self.groups} groups needs a code tensor whose channels "
                          f"they divide, got {t.shape}.")
        return t

    def run(self, xs):
        x = np.asarray(xs[0], dtype=np.int64)
        n, c = x.shape[:2]
        rest = x.shape[2:]
        return x.reshape(n, self.groups, c // self.groups, *rest).swapaxes(1, 2).reshape(x.shape)

    def spec(self, ins, batch=1, mode="kernel"):
        if mode != "layer":
            return None
        from harness.spec import KernelSpec

        t = ins[0]
        return KernelSpec("shuffle", (batch, t.shape[0], t.numel // t.shape[0], self.groups), t.bits, 0, "layer",
                          t.bits)

    @classmethod
    def from_spec(cls, spec) -> tuple["ChannelShuffle", TensorType]:
        N, C, S, G = spec.shape
        return cls(name=spec.op, groups=G), TensorType((C, S), spec.qa)

    def c_body(self, ctx):
        t = ctx.ins[0]
        return (f"api->channel_shuffle({ctx.src[0]}, {ctx.dst}, {t.shape[0]}u, {t.numel // t.shape[0]}u, "
                f"{self.groups}u);")


@dataclass(eq=False)
class Unfold1d(Op):
    """1-D im2col: (C, L) -> (C*KS, 1, OL), channel ``c*KS + j`` at output position
    ``o`` holding ``x[c, o*S + j - P]`` (0 in the padding).  A conv1d is this
    followed by a 1x1 :class:`~kernels.ir.Conv2d` (same groups: group g's
    channels stay contiguous), which keeps conv1d on the measured conv2d
    kernel, its KernelSpec and the accelerator's GEMM."""

    kind: ClassVar[str] = "unfold"
    name: str = ""
    ks: int = 3
    stride: int = 1
    pad: int = 0

    def __post_init__(self):
        if self.ks < 1 or self.stride < 1 or self.pad < 0:
            raise IRError(f"{self.name}: unfold needs kernel and stride >= 1 and padding >= 0.")

    def _dims(self, t: TensorType) -> tuple[int, int, int]:
        if len(t.shape) != 2 or t.bits == 0:
            raise IRError(f"{self.name}: a 1-D convolution needs a (C, L) code tensor, got {t.shape}.")
        C, L = t.shape
        OL = (L + 2 * self.pad - self.ks) // self.stride + 1
        if OL < 1:
            raise IRError(f"{self.name}: the {self.ks}-tap kernel does not fit the padded length {L}.")
        return C, L, OL

    def infer(self, ins):
        t = _one(ins, self)
        C, _, OL = self._dims(t)
        return TensorType((C * self.ks, 1, OL), t.bits, t.signed)

    def run(self, xs):
        x = np.asarray(xs[0], dtype=np.int64)
        n, C, L = x.shape
        OL = (L + 2 * self.pad - self.ks) // self.stride + 1
        xp = np.zeros((n, C, L + 2 * self.pad), dtype=np.int64)
        xp[:, :, self.pad:self.pad + L] = x
        idx = np.arange(self.ks)[:, None] + self.stride * np.arange(OL)[None, :]     # (KS, OL)
        return xp[:, :, idx].reshape(n, C * self.ks, 1, OL)

    def cost_terms(self, ins, out):
        return {"elements_in": ins[0].numel, "elements_out": out.numel}

    def spec(self, ins, batch=1, mode="kernel"):
        if mode != "layer":
            return None
        from harness.spec import KernelSpec

        C, L, _ = self._dims(ins[0])
        return KernelSpec("unfold", (batch, C, L, self.ks, self.stride, self.pad), ins[0].bits, 0, "layer",
                          ins[0].bits)

    @classmethod
    def from_spec(cls, spec) -> tuple["Unfold1d", TensorType]:
        N, C, L, KS, S, P = spec.shape
        return cls(name=spec.op, ks=KS, stride=S, pad=P), TensorType((C, L), spec.qa)

    def c_body(self, ctx):
        C, L, _ = self._dims(ctx.ins[0])
        return f"api->unfold1d({ctx.src[0]}, {ctx.dst}, {C}u, {L}u, {self.ks}u, {self.stride}u, {self.pad}u);"


@dataclass(eq=False)
class Reshape(Op):
    """A new shape for the same codes in C order: a view, no code on the device.
    One entry of ``shape`` may be -1 (whatever the others leave, as NumPy)."""

    kind: ClassVar[str] = "reshape"
    timed: ClassVar[bool] = False
    view: ClassVar[bool] = True
    name: str = ""
    shape: tuple[int, ...] = ()

    def _shape(self, t: TensorType) -> tuple[int, ...]:
        shape = tuple(int(v) for v in self.shape)
        known = prod(v for v in shape if v != -1)
        if shape.count(-1) == 1 and known and t.numel % known == 0:
            shape = tuple(t.numel // known if v == -1 else v for v in shape)
        if not shape or min(shape) < 1 or prod(shape) != t.numel:
            raise IRError(f"{self.name}: cannot view {t.shape} as {self.shape}.")
        return shape

    def infer(self, ins):
        t = _one(ins, self)
        return TensorType(self._shape(t), t.bits, t.signed)

    def run(self, xs):
        return xs[0].reshape(xs[0].shape[0], *self._shape(TensorType(xs[0].shape[1:])))

    def c_body(self, ctx):
        return ""


__all__ = ["Concat", "ChannelShuffle", "Unfold1d", "Reshape"]
