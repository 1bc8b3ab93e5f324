"""IR ops: each holds its shape rule, integer semantics, kernel spec, cost terms and C.

Adding a layer type is one class here (or anywhere: the walkers only use the
:class:`Op` interface) plus its kernel -- a C function the firmware exports
through the model API table, or ``c_support`` source compiled into the model
image itself.  Nothing outside an op dispatches on its class.

Batched NumPy semantics: ``run`` takes int64 arrays ``(N, *shape)`` and
returns one; they are exactly what the generated C computes on the device.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Sequence

import numpy as np

from kernels import reference

from . import pooling
from .types import UNSIGNED_BITS, IRError, Requant, TensorType

if TYPE_CHECKING:  # pragma: no cover
    from harness.spec import KernelSpec

    from .emit import EmitContext


@dataclass
class Scratch:
    """Per-op temporaries of the generated C (shared by all ops, sized by the largest)."""

    packed_words: int = 0      # packed activation words (uint32)
    acc_words: int = 0         # int32 accumulators
    kernel_bytes: int = 0      # the kernel's own scratch (mico_*_scratch)


class Op(ABC):
    """One IR op.  Subclasses are dataclasses with a ``name`` field."""

    kind: ClassVar[str] = "?"          # short name used in reports and deploy tables
    n_inputs: ClassVar[int] = 1
    timed: ClassVar[bool] = True       # runs code on the device and gets a timer slot
    view: ClassVar[bool] = False       # output aliases input 0 (no code, no copy)
    c_support: ClassVar[str] = ""      # C of the op's kernel when the firmware does not export it

    name: str = ""                     # set by the dataclass subclasses; Graph names unnamed ops

    @abstractmethod
    def infer(self, ins: Sequence[TensorType]) -> TensorType:
        """Output type for these input types; IRError if they do not fit the op."""

    @abstractmethod
    def run(self, xs: Sequence[np.ndarray]) -> np.ndarray:
        """Integer semantics on batched int64 arrays."""

    @property
    def complete(self) -> bool:
        """True when every numeric parameter is present (a structural op lacks weights)."""
        return True

    def spec(self, ins: Sequence[TensorType], batch: int = 1, mode: str = "kernel") -> "KernelSpec | None":
        """The spec the sweeps measure this op as and the latency model prices it by: in
        ``mode="layer"`` the op as a deployed model runs it (every timed op has one),
        in ``mode="kernel"`` the warm kernel alone (MAC ops only).  None: not measured."""
        return None

    def cost_terms(self, ins: Sequence[TensorType], out: TensorType) -> dict[str, int]:
        """Work counts that price the op: elements read and written by default."""
        return {"elements_in": sum(t.numel for t in ins), "elements_out": out.numel}

    @property
    def bits(self) -> tuple[int, int] | None:
        """(qa, qw) of a MAC op, None otherwise."""
        return None

    def param_bits(self) -> int:
        """Bits of constants the device stores for this op."""
        return 0

    def randomized(self, rng: np.random.Generator, ins: Sequence[TensorType]) -> "Op":
        """A complete copy with seeded random parameters (for measuring the op alone:
        latency does not depend on trained values).  Ops without parameters return self."""
        return self

    # ---- code generation ---------------------------------------------------------------
    def scratch(self, ins: Sequence[TensorType], out: TensorType) -> Scratch:
        return Scratch()

    def c_decls(self, ctx: "EmitContext") -> str:
        return ""

    @abstractmethod
    def c_body(self, ctx: "EmitContext") -> str:
        """C statements computing ``ctx.dst`` from ``ctx.src``."""


def _one(ins: Sequence[TensorType], op: Op) -> TensorType:
    if len(ins) != 1:
        raise IRError(f"{op.name}: takes one input, got {len(ins)}.")
    return ins[0]


def _check_act(op: Op, t: TensorType, qa: int) -> None:
    if t.bits != qa:
        raise IRError(f"{op.name}: its input carries {t.bits}-bit codes but the op reads qa={qa}.")
    if not t.signed and qa not in UNSIGNED_BITS:
        raise IRError(f"{op.name}: unsigned input codes exist only at {UNSIGNED_BITS} bits, not qa={qa}.")


def _sign_if_one_bit(op: Op, y: np.ndarray) -> np.ndarray:
    """Averages of 1-bit codes are 1-bit codes again: a rounded mean of 0 is +1 (as
    ``mico_pack`` and every 1-bit quantiser read it), negative ones -1."""
    return np.where(y >= 0, 1, -1) if getattr(op, "_one_bit", False) else y


def _c_sign_pass(ctx: "EmitContext") -> str:
    """The C of :func:`_sign_if_one_bit`: ``mico_add`` at 1 bit is the sign, in place."""
    if ctx.ins[0].bits != 1:
        return ""
    return f"\napi->add({ctx.dst}, (const int8_t *)0, {ctx.dst}, {ctx.out.numel}u, 1, 0, 1u, 0, 1, 127);"


# ---- MAC ops ------------------------------------------------------------------------------------

@dataclass(eq=False)
class _MacOp(Op):
    """conv / linear: a bit-packed kernel, then the requantisation (or int32 logits)."""

    name: str = ""
    qa: int = 8
    qw: int = 8
    out_bits: int = 8                     # next tensor's code width; 0: int32 logits
    weight: np.ndarray | None = None      # int8 VALUES
    rq: Requant | None = None
    out_signed: bool = True               # False: unsigned output codes (rq.unsigned; docs/formats.md)

    def __post_init__(self):
        if self.rq is not None and self.rq.unsigned == self.out_signed:
            raise IRError(f"{self.name}: the requantisation's signedness disagrees with out_signed={self.out_signed}.")
        for b, what in ((self.qa, "qa"), (self.qw, "qw")):
            if b not in reference.BITS:
                raise IRError(f"{self.name}: {what}={b} is not one of {reference.BITS}.")
        if self.rq is not None and self.rq.out_bits != self.out_bits:
            raise IRError(f"{self.name}: the requantisation writes {self.rq.out_bits} bits, the op says {self.out_bits}.")
        if self.weight is not None:
            self.weight = np.asarray(self.weight).astype(np.int8)
            lo, hi = reference.value_range(self.qw)
            if self.weight.size and (self.weight.min() < lo or self.weight.max() > hi):
                raise IRError(f"{self.name}: weights exceed the {self.qw}-bit range [{lo}, {hi}].")

    @property
    def complete(self) -> bool:
        return self.weight is not None and self.rq is not None

    @property
    def bits(self) -> tuple[int, int]:
        return (self.qa, self.qw)

    @abstractmethod
    def accumulate(self, xs: Sequence[np.ndarray]) -> np.ndarray:
        """The kernel alone: int32 accumulators (N, channels, ...)."""

    def finish(self, acc: np.ndarray) -> np.ndarray:
        """What follows the kernel: the requantisation (or bias-only int32 logits)."""
        _, rq = self._require()
        return rq.apply(acc, 1)

    def run(self, xs):
        return self.finish(self.accumulate(xs))

    def _require(self) -> tuple[np.ndarray, Requant]:
        if self.weight is None or self.rq is None:
            raise IRError(f"{self.name}: the op has no weights (a structural graph cannot run).")
        return self.weight, self.rq

    def param_bits(self) -> int:
        if self.weight is None:
            return 0
        return int(self.weight.size * self.qw + self.weight.shape[0] * (32 + (32 + 8 if self.out_bits else 0)))

    def weight_bits(self) -> int:
        return 0 if self.weight is None else int(self.weight.size * self.qw)

    def const_bytes(self, ins: Sequence[TensorType], out: TensorType) -> int:
        """Bytes of the constant arrays the generated C declares for this op: packed
        weight rows, the int32 bias, the multipliers and shifts, and an unsigned padded
        conv's correction array.  Known from shapes and bits alone (structural graphs)."""
        shape = self._weight_shape(ins)
        rows, red = shape[0], int(np.prod(shape[1:]))
        n = 4 * rows * reference.words_per_row(red, self.qw) + 4 * rows
        if self.out_bits:
            n += 5 * rows
        if self._unsigned_in(ins) and getattr(self, "pad", 0):
            n += 4 * out.numel
        return int(n)

    @abstractmethod
    def _weight_shape(self, ins: Sequence[TensorType]) -> tuple[int, ...]:
        """The weight tensor's shape for these inputs (Conv2d: K, C/G, KS, KS; Linear: M, K)."""

    def randomized(self, rng, ins):
        """Uniform random weight codes and a requantiser whose outputs spread over the output range."""
        import dataclasses

        shape = self._weight_shape(ins)
        lo, hi = reference.value_range(self.qw)
        if self.qw == 1:
            w = np.where(rng.integers(0, 2, size=shape) == 1, 1, -1)
        else:
            w = rng.integers(lo, hi + 1, size=shape)
        n, red = shape[0], int(np.prod(shape[1:]))
        bias = rng.integers(-4 * red, 4 * red + 1, n)
        amax = red * max(abs(v) for v in reference.value_range(self.qa)) * max(abs(lo), abs(hi))
        top = 1 << max(self.out_bits - 1, 0)
        real = np.full(n, top / max(amax ** 0.5 * 4, 1.0))     # typical |acc| ~ sqrt(red) * ranges
        rq = Requant.from_scale(bias, real, relu=self.out_bits > 1, out_bits=self.out_bits)
        return dataclasses.replace(self, weight=w.astype(np.int8), rq=rq)

    # ---- unsigned inputs: lowered to the signed kernels exactly ---------------------------
    # An unsigned code u (qa = b in UNSIGNED_BITS) is packed as the signed code
    # u - 2^(b-1): the packed rows get their codes' top bit flipped (an XOR of
    # the code bits, pad bits left zero).  The kernel then accumulates
    # sum w * (u - c) over the taps inside the image, so
    #   acc_u = acc + c * sum_{taps inside} w:
    # c * sum_all w goes into the bias; a padded conv also adds, per output
    # position, -c * (the weights on padding taps) (``{sym}_corr``).
    def _unsigned_in(self, ins: Sequence[TensorType]) -> bool:
        return not ins[0].signed and not (isinstance(self, Conv2d) and self.direct(ins))

    def _offset_terms(self, ins: Sequence[TensorType]) -> tuple[np.ndarray, np.ndarray | None]:
        """(bias offset per channel, per-position correction or None) of an unsigned input."""
        w, _ = self._require()
        c = 1 << (self.qa - 1)
        full = c * w.reshape(w.shape[0], -1).astype(np.int64).sum(axis=1)
        return full, None

    def _c_flip(self, rows: int, L: int, packed: str = "packed") -> str:
        """C flipping the top bit of the first L codes of ``rows`` packed rows."""
        b = self.qa
        per = 32 // b
        nw = reference.words_per_row(L, b)
        top = 0
        for i in range(per):
            top |= 1 << (i * b + b - 1)
        rem = L - (nw - 1) * per
        last = 0
        for i in range(rem):
            last |= 1 << (i * b + b - 1)
        return (f"for (uint32_t r = 0; r < {rows}u; r++) {{\n"
                f"    for (uint32_t j = 0; j + 1 < {nw}u; j++) {packed}[r * {nw}u + j] ^= 0x{top:08x}u;\n"
                f"    {packed}[r * {nw}u + {nw - 1}u] ^= 0x{last:08x}u;\n}}")

    # shared C: constants of the requantisation and the step after the accumulator
    def _rq_decls(self, ctx: "EmitContext") -> str:
        _, rq = self._require()
        s = ctx.sym
        bias = rq.bias.astype(np.int64)
        if self._unsigned_in(ctx.ins):
            full, corr = self._offset_terms(ctx.ins)
            bias = bias + full
            if bias.min() < -(2**31) or bias.max() >= 2**31:
                raise IRError(f"{self.name}: the bias with the unsigned-input offset does not fit int32.")
        out = [ctx.array("int32_t", f"{s}_b", bias)]
        if self.out_bits:
            out += [ctx.array("int32_t", f"{s}_m", rq.mult), ctx.array("uint8_t", f"{s}_s", rq.shift)]
        return "\n".join(out)

    def _rq_body(self, ctx: "EmitContext", count: int, channels: int, inner: int) -> str:
        _, rq = self._require()
        s = ctx.sym
        if self.out_bits and (rq.clip_hi is not None or rq.unsigned):
            return (f"api->requant_clip(acc, {ctx.dst}, {count}u, {channels}u, {inner}u, {s}_b, {s}_m, {s}_s, "
                    f"{int(rq.relu)}, {rq.c_out_bits}, {rq.c_hi});")
        if self.out_bits:
            return (f"api->requant(acc, {ctx.dst}, {count}u, {channels}u, {inner}u, {s}_b, {s}_m, {s}_s, "
                    f"{int(rq.relu)}, {self.out_bits});")
        return f"for (uint32_t i = 0; i < {count}u; i++) {ctx.dst}[i] = acc[i] + {s}_b[i / {inner}u];"


#: grouped convs run on ``mico_gconv2d`` (int8 values, direct loops) when each group
#: has one input channel (depthwise) or a per-group reduction C/G*KS*KS up to this
#: many taps (a depthwise conv1d after its unfold); wider groups stay on the packed
#: mico_conv2d, which shares one gathered patch among the group's output channels.
#: Measured by benchmarks/bench_zoo_gconv.py (results/zoo_gconv.json): depthwise
#: 3x3 2.2-5.5x faster direct on vexriscv-full, 2-7x on the host; grouped 1x1 with
#: 20 inputs per group break-even, with 80 five to nine times slower.
DIRECT_MAX_REDUCTION = 9


@dataclass(eq=False)
class Conv2d(_MacOp):
    """NCHW conv2d, square kernel, stride, zero padding, groups (DESIGN.md s3).

    ``kernel`` picks the C kernel: ``"packed"`` (``mico_conv2d`` on bit-packed
    planes), ``"direct"`` (``mico_gconv2d`` on int8 values) or ``"auto"``
    (direct for depthwise convs and groups with a tiny reduction, where the
    packed path gathers and decodes a few taps per output: see
    DIRECT_MAX_REDUCTION).  The result is the same; only the speed differs."""

    kind: ClassVar[str] = "conv"
    out_channels: int = 1
    ks: int = 3
    stride: int = 1
    pad: int = 0
    groups: int = 1
    kernel: str = "auto"

    def __post_init__(self):
        super().__post_init__()
        if min(self.out_channels, self.ks, self.stride, self.groups) < 1 or self.pad < 0:
            raise IRError(f"{self.name}: channels, kernel, stride and groups must be >= 1 and padding >= 0.")
        if self.kernel not in ("auto", "packed", "direct"):
            raise IRError(f"{self.name}: kernel {self.kernel!r} is not 'auto', 'packed' or 'direct'.")

    def direct(self, ins: Sequence[TensorType]) -> bool:
        """True when the generated C runs this conv on ``mico_gconv2d``."""
        if self.kernel != "auto":
            return self.kernel == "direct"
        cg = ins[0].shape[0] // self.groups
        return self.groups > 1 and (cg == 1 or cg * self.ks * self.ks <= DIRECT_MAX_REDUCTION)

    def _dims(self, t: TensorType) -> tuple[int, int, int, int, int]:
        if len(t.shape) != 3:
            raise IRError(f"{self.name}: conv2d needs a (C, H, W) input, got {t.shape}.")
        C, H, W = t.shape
        if C % self.groups or self.out_channels % self.groups:
            raise IRError(f"{self.name}: groups={self.groups} must divide C={C} and K={self.out_channels}.")
        OH, OW = reference.conv_out_hw(H, W, self.ks, self.stride, self.pad)
        if OH < 1 or OW < 1:
            raise IRError(f"{self.name}: the {self.ks}x{self.ks} kernel does not fit the padded {H}x{W} input.")
        return C, H, W, OH, OW

    def _weight_shape(self, ins):
        return (self.out_channels, ins[0].shape[0] // self.groups, self.ks, self.ks)

    def infer(self, ins):
        t = _one(ins, self)
        _check_act(self, t, self.qa)
        C, H, W, OH, OW = self._dims(t)
        if self.weight is not None and self.weight.shape != (self.out_channels, C // self.groups, self.ks, self.ks):
            raise IRError(f"{self.name}: weights {self.weight.shape} do not fit a {C}-channel input.")
        if self.rq is not None and self.rq.channels != self.out_channels:
            raise IRError(f"{self.name}: {self.rq.channels} requant channels for {self.out_channels} outputs.")
        return TensorType((self.out_channels, OH, OW), self.out_bits, self.out_signed)

    def accumulate(self, xs):
        w, _ = self._require()
        return reference.conv2d(xs[0], w, self.stride, self.pad, self.groups)

    def spec(self, ins, batch=1, mode="kernel"):
        from harness.spec import KernelSpec

        C, H, W = ins[0].shape
        return KernelSpec("conv2d", (batch, C, H, W, self.out_channels, self.ks, self.stride, self.pad, self.groups),
                          self.qa, self.qw, mode, self.out_bits if mode == "layer" else 0)

    @classmethod
    def from_spec(cls, spec: "KernelSpec") -> tuple["Conv2d", TensorType]:
        N, C, H, W, K, KS, S, P, G = spec.shape
        op = cls(name="conv2d", qa=spec.qa, qw=spec.qw, out_bits=spec.out_bits, out_channels=K, ks=KS, stride=S,
                 pad=P, groups=G)
        return op, TensorType((C, H, W), spec.qa)

    def cost_terms(self, ins, out):
        C, H, W = ins[0].shape
        red = C // self.groups * self.ks * self.ks
        return {"macs": out.numel * red, "elements_in": C * H * W, "elements_out": out.numel,
                "weights": self.out_channels * red}

    def scratch(self, ins, out):
        C, H, W = ins[0].shape
        L = C // self.groups * self.ks * self.ks
        if self.direct(ins):
            plane = (H + 2 * self.pad) * (W + 2 * self.pad)
            return Scratch(acc_words=out.numel, kernel_bytes=((L + 3) & ~3) + ((plane + 3) & ~3))  # mico_gconv_scratch
        w2, w1x2 = reference.words_per_row(L, 2), 2 * reference.words_per_row(L, 1)
        kbytes = ((L + 31) & ~31) + 4 * max(w2, w1x2)      # mico_conv_scratch
        return Scratch(packed_words=C * reference.words_per_row(H * W, self.qa), acc_words=out.numel,
                       kernel_bytes=kbytes)

    def _offset_terms(self, ins):
        full, _ = super()._offset_terms(ins)
        if not self.pad:
            return full, None
        w, _ = self._require()
        c = 1 << (self.qa - 1)
        C, H, W = ins[0].shape
        ones = np.ones((1, C, H, W), dtype=np.int64)
        inside = reference.conv2d(ones, w, self.stride, self.pad, self.groups)[0].astype(np.int64)
        corr = c * inside - full.reshape(-1, 1, 1)
        return full, corr.reshape(-1)

    def c_decls(self, ctx):
        w, _ = self._require()
        C, H, W = ctx.ins[0].shape
        s = ctx.sym
        packed = reference.pack(w.reshape(self.out_channels, -1), self.qw).reshape(-1)
        extra = []
        if self._unsigned_in(ctx.ins):
            _, corr = self._offset_terms(ctx.ins)
            if corr is not None:
                extra.append(ctx.array("int32_t", f"{s}_corr", corr))
        return "\n".join([
            ctx.array("uint32_t", f"{s}_w", packed),
            self._rq_decls(ctx), *extra,
            f"static const mico_conv_shape {s}_shape = {{ 1u, {C}u, {H}u, {W}u, {self.out_channels}u, "
            f"{self.ks}u, {self.stride}u, {self.pad}u, {self.groups}u }};",
        ])

    def c_body(self, ctx):
        C, H, W = ctx.ins[0].shape
        _, OH, OW = ctx.out.shape
        pw = reference.words_per_row(H * W, self.qa)
        s = ctx.sym
        if self.direct(ctx.ins):
            return "\n".join([
                f"api->gconv2d({ctx.src[0]}, {s}_w, acc, &{s}_shape, {self.qw}, kscratch);",
                self._rq_body(ctx, self.out_channels * OH * OW, self.out_channels, OH * OW),
            ])
        lines = [
            f"for (uint32_t c = 0; c < {C}u; c++)",
            f"    api->pack({ctx.src[0]} + c * {H * W}u, {H * W}u, {self.qa}, packed + c * {pw}u);",
        ]
        unsigned = self._unsigned_in(ctx.ins)
        if unsigned:
            lines.append(self._c_flip(C, H * W))
        lines.append(f"api->conv2d(packed, {s}_w, acc, &{s}_shape, {self.qa}, {self.qw}, kscratch);")
        if unsigned and self.pad:
            n = self.out_channels * OH * OW
            lines.append(f"for (uint32_t i = 0; i < {n}u; i++) acc[i] += {s}_corr[i];")
        lines.append(self._rq_body(ctx, self.out_channels * OH * OW, self.out_channels, OH * OW))
        return "\n".join(lines)


@dataclass(eq=False)
class Linear(_MacOp):
    """Y[m] = sum_k x[k] * W[m, k] on a flat input (matmul with N = 1 per image)."""

    kind: ClassVar[str] = "linear"
    out_features: int = 1

    def _weight_shape(self, ins):
        return (self.out_features, ins[0].shape[0])

    def infer(self, ins):
        t = _one(ins, self)
        _check_act(self, t, self.qa)
        if len(t.shape) != 1:
            raise IRError(f"{self.name}: linear needs a flat input; insert a Flatten before it (got {t.shape}).")
        if self.weight is not None and self.weight.shape != (self.out_features, t.shape[0]):
            raise IRError(f"{self.name}: weights {self.weight.shape} do not fit {t.shape[0]} inputs.")
        if self.rq is not None and self.rq.channels != self.out_features:
            raise IRError(f"{self.name}: {self.rq.channels} requant channels for {self.out_features} outputs.")
        return TensorType((self.out_features,), self.out_bits, self.out_signed)

    def accumulate(self, xs):
        w, _ = self._require()
        return reference.matmul(xs[0], w)

    def spec(self, ins, batch=1, mode="kernel"):
        from harness.spec import KernelSpec

        return KernelSpec("matmul", (batch, self.out_features, ins[0].shape[0]), self.qa, self.qw, mode,
                          self.out_bits if mode == "layer" else 0)

    @classmethod
    def from_spec(cls, spec: "KernelSpec") -> tuple["Linear", TensorType]:
        N, M, K = spec.shape
        return cls(name="matmul", qa=spec.qa, qw=spec.qw, out_bits=spec.out_bits, out_features=M), \
            TensorType((K,), spec.qa)

    def cost_terms(self, ins, out):
        k = ins[0].shape[0]
        return {"macs": self.out_features * k, "elements_in": k, "elements_out": self.out_features,
                "weights": self.out_features * k}

    def scratch(self, ins, out):
        k = ins[0].shape[0]
        return Scratch(packed_words=reference.words_per_row(k, self.qa), acc_words=self.out_features,
                       kernel_bytes=2 * ((k + 31) & ~31))    # mico_matmul_scratch (two planes below 8 bits)

    def c_decls(self, ctx):
        w, _ = self._require()
        return "\n".join([ctx.array("uint32_t", f"{ctx.sym}_w", reference.pack(w, self.qw).reshape(-1)),
                          self._rq_decls(ctx)])

    def c_body(self, ctx):
        k = ctx.ins[0].shape[0]
        return "\n".join([
            f"api->pack({ctx.src[0]}, {k}u, {self.qa}, packed);",
            *([self._c_flip(1, k)] if self._unsigned_in(ctx.ins) else []),
            f"api->matmul(packed, {ctx.sym}_w, acc, 1u, {self.out_features}u, {k}u, {self.qa}, {self.qw}, kscratch);",
            self._rq_body(ctx, self.out_features, self.out_features, 1),
        ])


# ---- data movement ------------------------------------------------------------------------------

@dataclass(eq=False)
class Pool(Op):
    """Max or average pooling of codes, square window, zero padding ``pad``.

    A (C, H, W) input pools both spatial axes; a (C, L) input (1-D models)
    pools along L with a ``ks``-long window.  Average rounds half up:
    floor((2*sum + cnt) / (2*cnt)) with ``cnt`` the whole window (padding
    counts as value 0, torch's ``count_include_pad``); max ignores the padding.
    ``pad`` is at most ``ks // 2`` (as torch), so every window holds a real value."""

    kind: ClassVar[str] = "pool"
    name: str = ""
    mode: str = "max"
    ks: int = 2
    stride: int = 2
    pad: int = 0

    def __post_init__(self):
        if self.mode not in ("max", "avg"):
            raise IRError(f"{self.name}: pooling mode {self.mode!r} is not 'max' or 'avg'.")
        if self.ks < 1 or self.stride < 1:
            raise IRError(f"{self.name}: pooling window and stride must be >= 1.")
        if not 0 <= self.pad <= self.ks // 2:
            raise IRError(f"{self.name}: pooling padding {self.pad} must be within 0..{self.ks // 2} (half the window).")

    def window(self, t: TensorType) -> "pooling.Window":
        """The window of this pool on an input of type ``t`` (1-D inputs pool along L)."""
        if len(t.shape) == 2:
            C, L = t.shape
            return pooling.Window(C, 1, L, 1, self.ks, 1, self.stride, 0, self.pad)
        C, H, W = t.shape
        return pooling.Window(C, H, W, self.ks, self.ks, self.stride, self.stride, self.pad, self.pad)

    def infer(self, ins):
        t = _one(ins, self)
        if len(t.shape) not in (2, 3) or t.bits == 0:
            raise IRError(f"{self.name}: pooling needs (C, H, W) or (C, L) codes, got {t.shape} at {t.bits} bits.")
        win = self.window(t)
        if win.out_h < 1 or win.out_w < 1:
            raise IRError(f"{self.name}: the {self.ks}x{self.ks} window does not fit {t.shape[1:]}.")
        self._one_bit = self.mode == "avg" and t.bits == 1       # fixed when the op joins a graph
        shape = (t.shape[0], win.out_w) if len(t.shape) == 2 else (t.shape[0], win.out_h, win.out_w)
        return TensorType(shape, t.bits, t.signed)

    def _plain(self, t: TensorType) -> bool:
        """The unpadded square case runs the original kernels (mico_maxpool / mico_avgpool)."""
        return self.pad == 0 and len(t.shape) == 3

    def run(self, xs):
        x = xs[0]
        if x.ndim == 4 and self.pad == 0:
            f = reference.maxpool if self.mode == "max" else reference.avgpool
            return _sign_if_one_bit(self, f(x, self.ks, self.stride).astype(np.int64))
        win = self.window(TensorType(x.shape[1:]))
        y = pooling.pool(x.reshape(x.shape[0], win.C, win.H, win.W), self.mode, win)
        return _sign_if_one_bit(self, y.reshape(x.shape[0], x.shape[1], win.out_w) if x.ndim == 3 else y)

    def cost_terms(self, ins, out):
        win = self.window(ins[0])
        return {"elements_in": ins[0].numel, "elements_out": out.numel, "window_reads": out.numel * win.KH * win.KW}

    def c_decls(self, ctx):
        if self._plain(ctx.ins[0]):
            return ""
        return f"static const mico_pool_shape {ctx.sym}_shape = {self.window(ctx.ins[0]).c_init()};"

    def spec(self, ins, batch=1, mode="kernel"):
        if mode != "layer":
            return None
        from harness.spec import KernelSpec

        t = ins[0]
        if len(t.shape) == 2:
            return KernelSpec(f"{self.mode}pool1d", (batch, *t.shape, self.ks, self.stride, self.pad), t.bits, 0,
                              "layer", t.bits)
        return KernelSpec(f"{self.mode}pool", (batch, *t.shape, self.ks, self.stride, self.pad), t.bits, 0, "layer",
                          t.bits)

    @classmethod
    def from_spec(cls, spec: "KernelSpec") -> tuple["Pool", TensorType]:
        *_, KS, S, P = spec.shape
        op = cls(name=spec.op, mode=spec.op[:3], ks=KS, stride=S, pad=P)
        return op, TensorType(tuple(spec.shape[1:-3]), spec.qa)

    def c_body(self, ctx):
        sign = _c_sign_pass(ctx) if self.mode == "avg" else ""
        if not self._plain(ctx.ins[0]):
            return f"api->{self.mode}pool_pad({ctx.src[0]}, {ctx.dst}, &{ctx.sym}_shape);" + sign
        C, H, W = ctx.ins[0].shape
        return (f"api->{self.mode}pool({ctx.src[0]}, {ctx.dst}, 1u, {C}u, {H}u, {W}u, "
                f"{self.ks}u, {self.stride}u);" + sign)


@dataclass(eq=False)
class AdaptiveAvgPool(Op):
    """Average pooling to a fixed output size (global pooling: all ones).

    ``out`` is (OH, OW) for (C, H, W) inputs or (OL,) for (C, L) inputs;
    window i spans [floor(i*n/out), ceil((i+1)*n/out)) as torch's
    ``adaptive_avg_pool``; the mean rounds half up as every average pool."""

    kind: ClassVar[str] = "gap"
    name: str = ""
    out: tuple[int, ...] = (1, 1)

    def __post_init__(self):
        self.out = tuple(int(v) for v in self.out)
        if not self.out or min(self.out) < 1:
            raise IRError(f"{self.name}: adaptive pooling needs an output size >= 1, got {self.out}.")

    def _hw(self, t: TensorType) -> tuple[int, int, int, int, int]:
        if len(t.shape) != len(self.out) + 1 or len(self.out) not in (1, 2) or t.bits == 0:
            raise IRError(f"{self.name}: adaptive pooling to {self.out} needs a {'(C, H, W)' if len(self.out) == 2 else '(C, L)'} "
                          f"code tensor, got {t.shape} at {t.bits} bits.")
        C, *hw = t.shape
        H, W = (1, hw[0]) if len(hw) == 1 else hw
        OH, OW = (1, self.out[0]) if len(self.out) == 1 else self.out
        if OH > H or OW > W:
            raise IRError(f"{self.name}: cannot pool {t.shape[1:]} up to {self.out}.")
        return C, H, W, OH, OW

    def infer(self, ins):
        t = _one(ins, self)
        self._hw(t)
        self._one_bit = t.bits == 1           # fixed when the op joins a graph
        return TensorType((t.shape[0], *self.out), t.bits, t.signed)

    def run(self, xs):
        x = xs[0]
        C, H, W, OH, OW = self._hw(TensorType(x.shape[1:]))
        y = pooling.adaptive_avgpool(x.reshape(x.shape[0], C, H, W), OH, OW)
        return _sign_if_one_bit(self, y.reshape(x.shape[0], C, *self.out))

    def cost_terms(self, ins, out):
        return {"elements_in": ins[0].numel, "elements_out": out.numel}

    def spec(self, ins, batch=1, mode="kernel"):
        if mode != "layer":
            return None
        from harness.spec import KernelSpec

        C, H, W, OH, OW = self._hw(ins[0])      # a 1-D pool runs the same C as H = OH = 1
        return KernelSpec("gavgpool", (batch, C, H, W, OH, OW), ins[0].bits, 0, "layer", ins[0].bits)

    @classmethod
    def from_spec(cls, spec: "KernelSpec") -> tuple["AdaptiveAvgPool", TensorType]:
        N, C, H, W, OH, OW = spec.shape
        return cls(name=spec.op, out=(OH, OW)), TensorType((C, H, W), spec.qa)

    def c_body(self, ctx):
        C, H, W, OH, OW = self._hw(ctx.ins[0])
        return f"api->adaptive_avgpool({ctx.src[0]}, {ctx.dst}, {C}u, {H}u, {W}u, {OH}u, {OW}u);" + _c_sign_pass(ctx)


@dataclass(eq=False)
class Flatten(Op):
    """(C, H, W) -> (C*H*W,) in C order: a view, no code on the device."""

    kind: ClassVar[str] = "flatten"
    timed: ClassVar[bool] = False
    view: ClassVar[bool] = True
    name: str = ""

    def infer(self, ins):
        t = _one(ins, self)
        return TensorType((t.numel,), t.bits, t.signed)

    def run(self, xs):
        return xs[0].reshape(xs[0].shape[0], -1)

    def c_body(self, ctx):
        return ""


MAC_OPS = (Conv2d, Linear)
__all__ = ["Op", "Scratch", "Conv2d", "Linear", "Pool", "AdaptiveAvgPool", "Flatten", "MAC_OPS"]
