"""Kernel specifications: what is measured, independent of where.

A `KernelSpec` is the unit of the store's key and of every proxy's features,
so its derived counts (MACs, BOPs, CBOPs, loads) are defined once, here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from kernels.toolchain import INCLUDE_DIR

from .errors import UserError

BITS = (1, 2, 4, 8)
OPS = ("matmul", "conv2d")

MATMUL_FIELDS = ("N", "M", "K")
CONV_FIELDS = ("N", "C", "H", "W", "K", "KS", "S", "P", "G")
LIMITS_HEADER = INCLUDE_DIR / "mico_limits.h"
LIMIT_NAMES = ("MICO_MAX_DIM", "MICO_MAX_REDUCTION", "MICO_MAX_ELEMENTS")


def read_limits(path: Path = LIMITS_HEADER) -> dict[str, int]:
    """The #defines of mico_limits.h, which the firmware compiles in: the host
    refuses exactly the shapes the device would, from one source."""
    text = path.read_text()
    found = {m[1]: int(m[2]) for m in re.finditer(r"^#define\s+(MICO_\w+)\s+(\d+)u?\s*$", text, re.M)}
    missing = [n for n in LIMIT_NAMES if n not in found]
    if missing:
        raise ImportError(f"{path} does not define {', '.join(missing)} as plain integers.")
    return found


_LIMITS = read_limits()
# every shape field and a conv2d's padded extent H+2P / W+2P (int32 on the device)
MAX_DIM = _LIMITS["MICO_MAX_DIM"]
# the largest reduction length whose int32 accumulator cannot overflow at 8x8
MAX_REDUCTION = _LIMITS["MICO_MAX_REDUCTION"]
# elements of any one tensor (activations, weights, outputs)
MAX_ELEMENTS = _LIMITS["MICO_MAX_ELEMENTS"]


def check_bits(name: str, b: int, allowed=BITS) -> int:
    if b not in allowed:
        raise UserError(f"{name}={b} is not a supported bit-width; use one of {', '.join(map(str, allowed))}.")
    return b


def _too_large(op: str, text: str, counts: dict[str, int]) -> None:
    for name, n in counts.items():
        if n > MAX_ELEMENTS:
            raise UserError(f"{op} shape {text} is too large: its {name} tensor has {n} elements, "
                            f"more than the {MAX_ELEMENTS} any device accepts.")


def check_shape(op: str, shape: tuple[int, ...]) -> None:
    """The one shape validator: refuses, with one sentence, every shape that no
    device can run, by the rules and in the order of the firmware's check_matmul
    and check_conv (kernels/firmware/bench.c) and the limits of mico_limits.h.
    Pure integer arithmetic, before anything is sent, allocated or computed."""
    text = ",".join(map(str, shape))
    if op == "matmul":
        N, M, K = shape
        if min(shape) < 1 or max(shape) > MAX_DIM:
            raise UserError(f"matmul shape {text} is impossible: N, M and K must be between 1 and {MAX_DIM}.")
        if K > MAX_REDUCTION:
            raise UserError(f"reduction length {K} exceeds {MAX_REDUCTION}, where an int32 accumulator could overflow.")
        _too_large(op, text, {"activation": N * K, "weight": M * K, "output": N * M})
        return
    N, C, H, W, K, KS, S, P, G = shape
    if min(N, C, H, W, K, KS, S, G) < 1 or max(N, C, H, W, K, KS, S, G) > MAX_DIM or not 0 <= P <= MAX_DIM:
        raise UserError(f"conv2d shape {text} is impossible: sizes, kernel, stride and groups must be between 1 "
                        f"and {MAX_DIM}, padding between 0 and {MAX_DIM}.")
    if C % G or K % G:
        raise UserError(f"conv2d shape {text} is impossible: groups G={G} must divide C={C} and K={K}.")
    hp, wp = H + 2 * P, W + 2 * P
    if max(hp, wp) > MAX_DIM:
        raise UserError(f"conv2d shape {text} is impossible: the padded input {hp}x{wp} exceeds {MAX_DIM}.")
    if min(hp, wp) < KS:
        raise UserError(f"conv2d shape {text} is impossible: the kernel does not fit the padded input.")
    red = C // G * KS * KS
    if red > MAX_REDUCTION:
        raise UserError(f"reduction length {red} exceeds {MAX_REDUCTION}, where an int32 accumulator could overflow.")
    oh, ow = (hp - KS) // S + 1, (wp - KS) // S + 1
    _too_large(op, text, {"activation": N * C * H * W, "weight": K * red, "output": N * K * oh * ow})


@dataclass(frozen=True, order=True)
class KernelSpec:
    """op + shape + activation/weight bit-widths.

    matmul shape: (N, M, K): N activation rows, M outputs (weight rows), K reduction.
    conv2d shape: (N, C, H, W, K, KS, S, P, G): NCHW input, K output channels,
    square kernel KS, stride S, zero padding P, groups G.
    """

    op: str
    shape: tuple[int, ...]
    qa: int
    qw: int

    FIELDS: ClassVar[dict[str, tuple[str, ...]]] = {"matmul": MATMUL_FIELDS, "conv2d": CONV_FIELDS}

    def __post_init__(self):
        if self.op not in OPS:
            raise UserError(f"unknown op {self.op!r}; use one of {', '.join(OPS)}.")
        try:
            shape = tuple(int(x) for x in self.shape)
        except (TypeError, ValueError):
            raise UserError(f"{self.op} shape {self.shape!r} is not a list of integers.") from None
        if self.op == "conv2d" and len(shape) == 8:
            shape = shape + (1,)
        object.__setattr__(self, "shape", shape)
        want = self.FIELDS[self.op]
        if len(shape) != len(want):
            raise UserError(f"{self.op} shape needs {len(want)} numbers ({','.join(want)}), got {len(shape)}.")
        check_bits("qa", self.qa)
        check_bits("qw", self.qw)
        check_shape(self.op, shape)

    # ---- shape helpers -----------------------------------------------------
    @property
    def dims(self) -> dict[str, int]:
        return dict(zip(self.FIELDS[self.op], self.shape))

    @property
    def shape_str(self) -> str:
        return ",".join(map(str, self.shape))

    @property
    def out_hw(self) -> tuple[int, int]:
        d = self.dims
        if self.op != "conv2d":
            return (1, 1)
        oh = (d["H"] + 2 * d["P"] - d["KS"]) // d["S"] + 1
        ow = (d["W"] + 2 * d["P"] - d["KS"]) // d["S"] + 1
        return oh, ow

    @property
    def reduction(self) -> int:
        d = self.dims
        if self.op == "matmul":
            return d["K"]
        return d["C"] // d["G"] * d["KS"] * d["KS"]

    @property
    def outputs(self) -> int:
        d = self.dims
        if self.op == "matmul":
            return d["N"] * d["M"]
        oh, ow = self.out_hw
        return d["N"] * d["K"] * oh * ow

    @property
    def weight_count(self) -> int:
        d = self.dims
        if self.op == "matmul":
            return d["M"] * d["K"]
        return d["K"] * self.reduction

    @property
    def act_count(self) -> int:
        d = self.dims
        if self.op == "matmul":
            return d["N"] * d["K"]
        return d["N"] * d["C"] * d["H"] * d["W"]

    # ---- cost counts -------------------------------------------------------
    @property
    def macs(self) -> int:
        return self.outputs * self.reduction

    @property
    def bops(self) -> int:
        return self.macs * self.qa * self.qw

    @property
    def cbops(self) -> int:
        """MiCo's CBOPs: MACs x max(qa, qw) -- the wider operand sets the cost."""
        return self.macs * max(self.qa, self.qw)

    @property
    def weight_loads(self) -> int:
        """bits of weights streamed by the kernel: MACs x qw"""
        return self.macs * self.qw

    @property
    def act_loads(self) -> int:
        """bits of activations streamed by the kernel: MACs x qa"""
        return self.macs * self.qa

    # ---- (de)serialisation -------------------------------------------------
    def key(self) -> tuple:
        return (self.op, self.shape_str, self.qa, self.qw)

    def to_dict(self) -> dict:
        return {"op": self.op, "shape": list(self.shape), "qa": self.qa, "qw": self.qw}

    @classmethod
    def from_dict(cls, d: dict) -> "KernelSpec":
        return cls(d["op"], tuple(d["shape"]), int(d["qa"]), int(d["qw"]))

    def __str__(self) -> str:
        return f"{self.op}[{self.shape_str}] {self.qa}x{self.qw}"


def parse_shape(op: str, text: str) -> tuple[int, ...]:
    """Parse 'N,M,K' / 'N,C,H,W,K,KS,S,P[,G]' into ints with one-sentence errors."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        vals = tuple(int(p) for p in parts)
    except ValueError:
        raise UserError(f"shape {text!r} is not a comma-separated list of integers.") from None
    return vals
