"""The integer model that deploy runs, with exact integer semantics.

:func:`build_integer_model` turns a BN-folded, calibrated (or QAT'd) quant model
into an :class:`IntegerModel`: integer weight VALUES, int32 biases on the
accumulator grid, and a per-channel fixed-point requantiser (``mult``,
``shift``) between layers, exactly as ``kernels/include/mico_kernels.h``
(``mico_requant``) and ``kernels/reference.py`` compute:

    t = (int64)(acc + bias[c]) * mult[c]
    y = (t + 2^(shift[c]-1)) >> shift[c]         (arithmetic shift)
    relu -> max(y, 0); clamp to out_bits;  out_bits == 1 -> acc + bias >= 0 ? +1 : -1

Each quant layer's output is requantised to the NEXT layer's input bits right
after the ReLU and before any pooling; the last layer (``out_bits == 0``)
returns ``acc + bias`` as int32 logits.  ``mult / 2^shift`` approximates the
real multiplier ``s_in * s_w[c] / s_out`` (for the last layer: the dequant
scale ``s_in * s_w[c]``, informational).

:meth:`IntegerModel.forward_int` runs this in torch on int64 tensors (conv via
float64 ``F.conv2d``, exact because every partial sum is an integer far below
2^53).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import ClassVar, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from harness.spec import KernelSpec

from .fold import is_folded
from .models import Flatten as FlattenStep
from .models import Layer, Pool as PoolStep, QuantModel
from .quant import QConv2d, quantize_codes
from .util import torch_threads

log = logging.getLogger(__name__)

MULT_MIN, MULT_LIMIT = 1 << 30, 1 << 31
SHIFT_MIN, SHIFT_MAX = 1, 62


# ---- fixed-point multipliers ------------------------------------------------------

def quantize_multiplier(m: float) -> tuple[int, int]:
    """(mult, shift) with ``mult / 2^shift ~= m``, mult in [2^30, 2^31), shift in 1..62.

    frexp: m = f * 2^e, f in [0.5, 1); mult = round(f * 2^31), shift = 31 - e;
    a rounding that reaches 2^31 becomes (2^30, shift - 1).  A multiplier below
    2^-32 (every output rounds to 0) is clamped to (2^30, 62) with a warning; one
    of 2^30 or more cannot be represented (ValueError)."""
    m = float(m)
    if not math.isfinite(m) or m <= 0:
        raise ValueError(f"requantisation multiplier {m!r} must be a positive finite number")
    f, e = math.frexp(m)
    mult = int(round(f * MULT_LIMIT))
    if mult == MULT_LIMIT:
        mult //= 2
        e += 1
    shift = 31 - e
    if shift < SHIFT_MIN:
        raise ValueError(f"requantisation multiplier {m:g} is too large for a shift >= {SHIFT_MIN}")
    if shift > SHIFT_MAX:
        log.debug("requantisation multiplier %.3g underflows; clamped to 2^-32 (outputs ~0)", m)
        return MULT_MIN, SHIFT_MAX
    return mult, shift


def quantize_multipliers(ms: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    pairs = [quantize_multiplier(m) for m in np.asarray(ms, dtype=np.float64).ravel()]
    mult = np.array([p[0] for p in pairs], dtype=np.int32)
    shift = np.array([p[1] for p in pairs], dtype=np.uint8)
    return mult, shift


# ---- integer ops -----------------------------------------------------------------

def requant_torch(acc: torch.Tensor, bias, mult, shift, relu: bool, out_bits: int,
                  channel_axis: int = 1) -> torch.Tensor:
    """``mico_requant`` in torch on int64 (channels along ``channel_axis``).
    ``out_bits == 0`` returns ``acc + bias`` (int64)."""
    acc = acc.to(torch.int64)
    shape = [1] * acc.dim()
    shape[channel_axis % acc.dim()] = -1

    def pc(v):
        return torch.as_tensor(np.asarray(v).astype(np.int64)).view(shape)

    v = acc + pc(bias)
    if out_bits == 0:
        return v
    if out_bits == 1:
        return torch.where(v >= 0, 1, -1).to(torch.int64)
    t = v * pc(mult)
    s = pc(shift)
    y = torch.bitwise_right_shift(t + torch.bitwise_left_shift(torch.ones_like(s), s - 1), s)
    if relu:
        y = torch.clamp_min(y, 0)
    lo, hi = -(1 << (out_bits - 1)), (1 << (out_bits - 1)) - 1
    return torch.clamp(y, lo, hi)


@dataclass
class QConv:
    """Quantised conv2d + requant.  weight: int8 VALUES (K, C/G, KS, KS);
    bias int32 (K,); mult int32 (K,) in [2^30, 2^31); shift uint8 (K,) in 1..62;
    out_bits: the next layer's qa (0: last layer, int32 acc + bias)."""

    name: str
    C: int
    H: int
    W: int
    K: int
    KS: int
    S: int
    P: int
    G: int
    qa: int
    qw: int
    weight: np.ndarray
    bias: np.ndarray
    mult: np.ndarray
    shift: np.ndarray
    relu: bool
    out_bits: int
    in_scale: float = 1.0                     # s_in (float, informational)
    w_scale: np.ndarray | None = None         # s_w per channel (float64)
    out_scale: float | None = None            # s_out (None for the last layer)

    kind: ClassVar[str] = "conv2d"

    @property
    def out_hw(self) -> tuple[int, int]:
        return ((self.H + 2 * self.P - self.KS) // self.S + 1, (self.W + 2 * self.P - self.KS) // self.S + 1)

    @property
    def out_shape(self) -> tuple[int, ...]:
        return (self.K,) + self.out_hw

    def spec(self, batch: int = 1) -> KernelSpec:
        return KernelSpec("conv2d", (batch, self.C, self.H, self.W, self.K, self.KS, self.S, self.P, self.G),
                          self.qa, self.qw)

    def accumulate(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.from_numpy(self.weight.astype(np.float64))
        y = F.conv2d(x.to(torch.float64), w, None, self.S, self.P, 1, self.G)
        return torch.round(y).to(torch.int64)


@dataclass
class QLinear:
    """Quantised matmul + requant.  weight: int8 VALUES (M=out_features, K=in_features)."""

    name: str
    in_features: int
    out_features: int
    qa: int
    qw: int
    weight: np.ndarray
    bias: np.ndarray
    mult: np.ndarray
    shift: np.ndarray
    relu: bool
    out_bits: int
    in_scale: float = 1.0
    w_scale: np.ndarray | None = None
    out_scale: float | None = None

    kind: ClassVar[str] = "matmul"

    @property
    def out_shape(self) -> tuple[int, ...]:
        return (self.out_features,)

    def spec(self, batch: int = 1) -> KernelSpec:
        return KernelSpec("matmul", (batch, self.out_features, self.in_features), self.qa, self.qw)

    def accumulate(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.from_numpy(self.weight.astype(np.float64))
        return torch.round(x.to(torch.float64) @ w.T).to(torch.int64)


@dataclass
class Pool:
    """Pooling on int8 values, NCHW, square window, no padding.
    avg rounds half up: floor((2*sum + cnt) / (2*cnt))."""

    kind: str   # 'max' | 'avg'
    C: int
    H: int
    W: int
    KS: int
    S: int

    @property
    def out_shape(self) -> tuple[int, ...]:
        return (self.C, (self.H - self.KS) // self.S + 1, (self.W - self.KS) // self.S + 1)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "max":
            return F.max_pool2d(x.to(torch.float64), self.KS, self.S).to(torch.int64)
        s = F.avg_pool2d(x.to(torch.float64), self.KS, self.S, divisor_override=1)
        s = torch.round(s).to(torch.int64)
        cnt = self.KS * self.KS
        return torch.div(2 * s + cnt, 2 * cnt, rounding_mode="floor")


@dataclass
class Flatten:
    """(N, C, H, W) -> (N, C*H*W), C-order (channel-major, as torch.flatten)."""

    features: int = 0

    def run(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1)


Op = Union[QConv, QLinear, Pool, Flatten]


@dataclass
class IntegerModel:
    """What deploy runs.  ``quantize_input`` maps float images to int8 VALUES
    (``input_bits``), ``forward_int`` maps those to int32 logits (N, classes)."""

    input_shape: tuple[int, int, int]
    input_bits: int
    input_scale: float
    ops: list = field(default_factory=list)
    input_offset: float = 0.0     # subtracted from the float input before quantising
    num_classes: int = 10

    # ---- structure --------------------------------------------------------------
    @property
    def layers(self) -> list:
        """The quant ops (QConv / QLinear) in order."""
        return [op for op in self.ops if isinstance(op, (QConv, QLinear))]

    @property
    def scheme(self) -> tuple[tuple[int, int], ...]:
        return tuple((op.qa, op.qw) for op in self.layers)

    def specs(self, batch: int = 1) -> list[KernelSpec]:
        """KernelSpec of every quant op, for the latency model."""
        return [op.spec(batch) for op in self.layers]

    def bops(self, batch: int = 1) -> int:
        return int(sum(s.bops for s in self.specs(batch)))

    @property
    def size_bits(self) -> int:
        """Weight storage in bits (weights x qw; biases, multipliers and shifts excluded)."""
        return int(sum(op.weight.size * op.qw for op in self.layers))

    @property
    def param_bits(self) -> int:
        """Everything the device stores per layer: weights, int32 bias, int32 mult, uint8 shift."""
        return self.size_bits + int(sum(len(op.bias) * (32 + 32 + 8) for op in self.layers))

    # ---- running ------------------------------------------------------------------
    def quantize_input(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """float (N, C, H, W) -> int8 VALUES with the first layer's qa and scale
        (the same float32 arithmetic as the fake-quant model's first quantiser)."""
        x = torch.as_tensor(x, dtype=torch.float32)
        if x.dim() == 3:
            x = x.unsqueeze(0)
        v = quantize_codes(x - self.input_offset, torch.tensor(self.input_scale, dtype=torch.float32),
                           self.input_bits)
        return v.to(torch.int8)

    @torch.no_grad()
    def forward_int(self, x_vals: torch.Tensor | np.ndarray, trace: bool = False):
        """Integer inference: int VALUES (N, C, H, W) -> int32 logits (N, classes).
        ``trace=True`` also returns every op's output (int64 tensors)."""
        x = torch.as_tensor(np.asarray(x_vals) if not torch.is_tensor(x_vals) else x_vals).to(torch.int64)
        if x.dim() == 3:
            x = x.unsqueeze(0)
        outs = []
        with torch_threads():
            for op in self.ops:
                if isinstance(op, (QConv, QLinear)):
                    acc = op.accumulate(x)
                    x = requant_torch(acc, op.bias, op.mult, op.shift, op.relu, op.out_bits, 1)
                else:
                    x = op.run(x)
                if trace:
                    outs.append(x)
        if x.numel() and (int(x.max()) > 2**31 - 1 or int(x.min()) < -(2**31)):
            raise OverflowError("integer logits overflow int32")
        y = x.to(torch.int32)
        return (y, outs) if trace else y

    def predict(self, x_float: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Class indices from float images (quantize_input + forward_int + argmax)."""
        return self.forward_int(self.quantize_input(x_float)).argmax(1)


# ---- construction ----------------------------------------------------------------

def build_integer_model(model: QuantModel) -> IntegerModel:
    """IntegerModel of a BN-folded quant model with fake quant on and calibrated
    activation scales (eval mode; nothing in ``model`` changes)."""
    if not is_folded(model):
        raise ValueError("fold BatchNorm (mpq.fold.fold_model) before building the integer model")
    layers = model.quant_layers()
    if not all(m.quant_enabled for _, m in layers):
        raise ValueError("fake quant must be enabled (and calibrated) to build the integer model")
    params = [m.integer_params() for _, m in layers]
    C, H, W = model.input_shape
    ops: list = []
    i = 0
    for step in model.plan:
        if isinstance(step, Layer):
            name, m = layers[i]
            p = params[i]
            last = i == len(layers) - 1
            s_in, s_w = p["s_in"], p["s_w"]
            if last:
                out_bits, relu, s_out = 0, False, None
                real = s_in * s_w
            else:
                out_bits = layers[i + 1][1].qa
                relu = out_bits != 1
                s_out = params[i + 1]["s_in"]
                real = s_in * s_w / s_out
            mult, shift = quantize_multipliers(real)
            common = dict(qa=m.qa, qw=m.qw, weight=p["weight"], bias=p["bias"], mult=mult, shift=shift,
                          relu=relu, out_bits=out_bits, in_scale=s_in, w_scale=s_w, out_scale=s_out)
            if isinstance(m, QConv2d):
                op = QConv(name=name, C=C, H=H, W=W, K=m.out_channels, KS=m.kernel_size[0], S=m.stride[0],
                           P=m.padding[0], G=m.groups, **common)
                C, H, W = op.out_shape
            else:
                op = QLinear(name=name, in_features=m.in_features, out_features=m.out_features, **common)
                C, H, W = m.out_features, 1, 1
            ops.append(op)
            i += 1
        elif isinstance(step, PoolStep):
            op = Pool(step.kind, C, H, W, step.ks, step.stride)
            ops.append(op)
            C, H, W = op.out_shape
        elif isinstance(step, FlattenStep):
            ops.append(Flatten(C * H * W))
            C, H, W = C * H * W, 1, 1
    return IntegerModel(input_shape=tuple(model.input_shape), input_bits=layers[0][1].qa,
                        input_scale=params[0]["s_in"], ops=ops, input_offset=float(model.input_offset),
                        num_classes=int(getattr(model, "num_classes", 10)))
