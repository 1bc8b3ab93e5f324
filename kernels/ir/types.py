"""Value types of the layer IR and the one requantisation.

A tensor flowing between IR ops is a block of integer codes of one bit-width
(``bits`` 1..8, stored one value per int8 on the device) or, for the logits a
model returns, an int32 accumulator (``bits == 0``).  Shapes exclude the batch.

:class:`Requant` is the only definition of the integer requantisation in the
project (DESIGN.md s3): the IR ops, the integer reference of a model, the
BitFusion deploy and the code generator all use it, and its arithmetic is
``kernels.reference.requant`` -- the NumPy twin of ``mico_requant`` in C.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from math import prod
from typing import Sequence

import numpy as np

from kernels import reference


log = logging.getLogger(__name__)

MULT_MIN, MULT_LIMIT = 1 << 30, 1 << 31
#: widths at which a non-negative activation tensor uses unsigned codes [0, 2^b - 1]
#: (1 bit stays -1/+1; 8 bits stays signed: the generated C keeps one code per int8)
UNSIGNED_BITS = (2, 4)
SHIFT_MIN, SHIFT_MAX = 1, 62


class IRError(ValueError):
    """An IR graph that cannot exist (shape chain broken, bad parameters); one sentence."""


@dataclass(frozen=True)
class TensorType:
    """Shape without batch (``(C, H, W)`` feature maps, ``(F,)`` vectors) and code width.

    ``bits == 0`` marks int32 accumulators (a model's logits); ``signed``
    says which code range a width covers (DESIGN.md s3: two's complement
    when signed, [0, 2^b - 1] when not)."""

    shape: tuple[int, ...]
    bits: int = 8
    signed: bool = True

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(v) for v in self.shape))
        if not self.shape or min(self.shape) < 1:
            raise IRError(f"tensor shape {self.shape} must have at least one dimension, all >= 1.")
        if self.bits not in (0, 1, 2, 4, 8):
            raise IRError(f"tensor code width {self.bits} is not 0 (int32) or one of 1, 2, 4, 8.")

    @property
    def numel(self) -> int:
        return prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes the generated C keeps it in (one int8 per code, int32 accumulators)."""
        return self.numel * (4 if self.bits == 0 else 1)

    @property
    def value_range(self) -> tuple[int, int]:
        if self.bits == 0:
            return -(2**31), 2**31 - 1
        return reference.value_range(self.bits, self.signed)

    def with_bits(self, bits: int) -> "TensorType":
        return TensorType(self.shape, bits, self.signed)


def quantize_multiplier(m: float) -> tuple[int, int]:
    """(mult, shift) with ``mult / 2^shift ~= m``, mult in [2^30, 2^31), shift in 1..62.

    frexp: m = f * 2^e, f in [0.5, 1); mult = round(f * 2^31), shift = 31 - e;
    a rounding that reaches 2^31 becomes (2^30, shift - 1).  A multiplier below
    2^-32 (every output rounds to 0) is clamped to (2^30, 62); one of 2^30 or
    more cannot be represented (IRError)."""
    m = float(m)
    if not math.isfinite(m) or m <= 0:
        raise IRError(f"requantisation multiplier {m!r} must be a positive finite number.")
    f, e = math.frexp(m)
    mult = int(round(f * MULT_LIMIT))
    if mult == MULT_LIMIT:
        mult //= 2
        e += 1
    shift = 31 - e
    if shift < SHIFT_MIN:
        raise IRError(f"requantisation multiplier {m:g} is too large for a shift >= {SHIFT_MIN}.")
    if shift > SHIFT_MAX:
        log.debug("requantisation multiplier %.3g underflows; clamped to 2^-32 (outputs ~0)", m)
        return MULT_MIN, SHIFT_MAX
    return mult, shift


def quantize_multipliers(ms: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    pairs = [quantize_multiplier(m) for m in np.asarray(ms, dtype=np.float64).ravel()]
    mult = np.array([p[0] for p in pairs], dtype=np.int32)
    shift = np.array([p[1] for p in pairs], dtype=np.uint8)
    return mult, shift


def _int_array(v, dtype, n: int, what: str) -> np.ndarray:
    a = np.asarray(v)
    if a.shape != (n,):
        raise IRError(f"{what} has shape {a.shape}; it needs one value per output channel ({n}).")
    return a.astype(dtype)


@dataclass(eq=False)
class Requant:
    """``y = clamp(round_shift((acc + bias[c]) * mult[c], shift[c]), out_bits)`` per channel.

    ``out_bits == 0`` keeps ``acc + bias`` (int32 logits of the last layer;
    ``mult``/``shift`` are then the informational dequantisation scale).
    ``relu`` clamps at 0 first; ``out_bits == 1`` takes the sign of
    ``acc + bias`` (a ReLU feeding a 1-bit quantiser is dropped).
    ``clip_hi`` (optional) lowers the upper end of the clamp to that code:
    ReLU6 is ``relu`` with ``clip_hi`` = the code of 6.0 (ignored at 1 bit).

    ``unsigned`` (out_bits 2 or 4, with ``relu``): the output is an unsigned
    code, clamped to ``[0, 2^b - 1]`` instead of the two's complement range --
    a ReLU output then uses every code.  The C computes it as
    ``mico_requant_clip`` at out_bits 8 with ``hi = min(2^b - 1, clip_hi)``
    (the value fits an int8; codes up to 15), so no kernel changes."""

    bias: np.ndarray
    mult: np.ndarray
    shift: np.ndarray
    relu: bool = False
    out_bits: int = 8
    real_scale: np.ndarray | None = field(default=None, repr=False)   # mult / 2^shift before rounding
    clip_hi: int | None = None
    unsigned: bool = False

    def __post_init__(self):
        n = int(np.asarray(self.bias).shape[0]) if np.ndim(self.bias) == 1 else -1
        self.bias = _int_array(self.bias, np.int32, n, "the requant bias")
        self.mult = _int_array(self.mult, np.int32, n, "the requant multiplier")
        self.shift = _int_array(self.shift, np.uint8, n, "the requant shift")
        if self.out_bits not in (0, 1, 2, 4, 8):
            raise IRError(f"requant output width {self.out_bits} is not 0 (int32) or one of 1, 2, 4, 8.")
        if self.out_bits and (np.any(self.mult <= 0) or np.any(self.shift < 1) or np.any(self.shift > 62)):
            raise IRError("requant multipliers must be positive and shifts within 1..62.")
        self.relu = bool(self.relu)
        self.unsigned = bool(self.unsigned)
        if self.unsigned and (self.out_bits not in UNSIGNED_BITS or not self.relu):
            raise IRError(f"an unsigned requantisation needs a ReLU and out_bits in {UNSIGNED_BITS}, "
                          f"got out_bits={self.out_bits}, relu={self.relu}.")
        if self.clip_hi is not None:
            self.clip_hi = int(self.clip_hi)
            if not -(2**31) <= self.clip_hi < 2**31:
                raise IRError(f"requant upper clamp {self.clip_hi} does not fit int32.")

    @classmethod
    def from_scale(cls, bias, real_scale, relu: bool, out_bits: int, clip_hi: int | None = None,
                   unsigned: bool = False) -> "Requant":
        """The fixed-point requantiser of a real per-channel multiplier
        ``s_in * s_w[c] / s_out`` (for logits: the dequantisation scale)."""
        real = np.broadcast_to(np.asarray(real_scale, dtype=np.float64), np.shape(bias))
        mult, shift = quantize_multipliers(real)
        return cls(bias, mult, shift, relu, out_bits, real_scale=np.array(real), clip_hi=clip_hi, unsigned=unsigned)

    @property
    def c_hi(self) -> int:
        """The upper clamp the C kernels take (``mico_requant_clip``'s ``hi``)."""
        hi = 127 if self.clip_hi is None else self.clip_hi
        if self.unsigned:
            hi = min(hi, (1 << self.out_bits) - 1)
        return hi

    @property
    def c_out_bits(self) -> int:
        """The out_bits the C requantisation runs at (8 for unsigned codes, whose
        range [0, 2^b - 1] is then the ReLU plus ``c_hi``)."""
        return 8 if self.unsigned else self.out_bits

    @property
    def channels(self) -> int:
        return int(self.bias.shape[0])

    def apply(self, acc: np.ndarray, channel_axis: int = 1) -> np.ndarray:
        """Requantise an int accumulator (channels on ``channel_axis``); int64 result."""
        acc = np.asarray(acc, dtype=np.int64)
        if self.out_bits == 0:
            shape = [1] * acc.ndim
            shape[channel_axis % acc.ndim] = -1
            return acc + self.bias.astype(np.int64).reshape(shape)
        y = reference.requant(acc, self.bias, self.mult, self.shift, self.relu, self.c_out_bits, channel_axis)
        y = y.astype(np.int64)
        if (self.clip_hi is not None or self.unsigned) and self.out_bits > 1:
            y = np.minimum(y, self.c_hi)
        return y
