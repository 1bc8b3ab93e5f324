"""Kernel specifications: what is measured, independent of where.

A `KernelSpec` is the unit of the store's key and of every proxy's features,
so its derived counts (MACs, BOPs, CBOPs, loads) are defined once, here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from kernels import numeric
from kernels.numeric import BITS, SPEC_BITS

from .errors import UserError

OPS = ("matmul", "conv2d")

MATMUL_FIELDS = ("N", "M", "K")
CONV_FIELDS = ("N", "C", "H", "W", "K", "KS", "S", "P", "G")
# the largest reduction length whose int32 accumulator cannot overflow at 8x8
MAX_REDUCTION = (2**31 - 1) // (128 * 128)


def check_bits(name: str, b: int, allowed=BITS) -> int:
    """kernels.numeric.check_bits raising the library error (a one-sentence ValueError)."""
    return numeric.check_bits(name, b, allowed, error=UserError)


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
        shape = tuple(int(x) for x in self.shape)
        if self.op == "conv2d" and len(shape) == 8:
            shape = shape + (1,)
        object.__setattr__(self, "shape", shape)
        want = self.FIELDS[self.op]
        if len(shape) != len(want):
            raise UserError(f"{self.op} shape needs {len(want)} numbers ({','.join(want)}), got {len(shape)}.")
        check_bits("qa", self.qa, SPEC_BITS)
        check_bits("qw", self.qw, SPEC_BITS)
        d = self.dims
        if self.op == "matmul":
            if min(shape) < 1:
                raise UserError(f"matmul shape {self.shape_str} is impossible: N, M and K must all be >= 1.")
        else:
            if min(d[k] for k in ("N", "C", "H", "W", "K", "KS", "S", "G")) < 1 or d["P"] < 0:
                raise UserError(f"conv2d shape {self.shape_str} is impossible: sizes, kernel, stride and groups must be >= 1 and padding >= 0.")
            if d["C"] % d["G"] or d["K"] % d["G"]:
                raise UserError(f"conv2d shape {self.shape_str} is impossible: groups G={d['G']} must divide C={d['C']} and K={d['K']}.")
            if self.out_hw[0] < 1 or self.out_hw[1] < 1:
                raise UserError(f"conv2d shape {self.shape_str} is impossible: the kernel does not fit the padded input.")
        if self.reduction > MAX_REDUCTION:
            raise UserError(f"reduction length {self.reduction} exceeds {MAX_REDUCTION}, where an int32 accumulator could overflow.")

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
