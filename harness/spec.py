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
#: ops measured only in layer mode (as a deployed model runs them); they have no weights (qw = 0)
LAYER_OPS = ("maxpool", "avgpool")
ALL_OPS = OPS + LAYER_OPS
MODES = ("kernel", "layer")

MATMUL_FIELDS = ("N", "M", "K")
CONV_FIELDS = ("N", "C", "H", "W", "K", "KS", "S", "P", "G")
POOL_FIELDS = ("N", "C", "H", "W", "KS", "S")
# the largest reduction length whose int32 accumulator cannot overflow at 8x8
MAX_REDUCTION = (2**31 - 1) // (128 * 128)


def check_bits(name: str, b: int, allowed=BITS) -> int:
    """kernels.numeric.check_bits raising the library error (a one-sentence ValueError)."""
    return numeric.check_bits(name, b, allowed, error=UserError)


@dataclass(frozen=True, order=True)
class KernelSpec:
    """op + shape + activation/weight bit-widths + measurement mode.

    matmul shape: (N, M, K): N activation rows, M outputs (weight rows), K reduction.
    conv2d shape: (N, C, H, W, K, KS, S, P, G): NCHW input, K output channels,
    square kernel KS, stride S, zero padding P, groups G.
    maxpool / avgpool shape: (N, C, H, W, KS, S) (layer mode only, qw = 0).

    ``mode`` "kernel": warm repeats of the kernel alone (profiling; int32 outputs,
    ``out_bits`` 0).  "layer": the layer exactly as a deployed model runs it,
    activation packing and requantisation included; ``out_bits`` is the width of
    the codes it writes (0: int32 logits of a last layer).  DESIGN.md s4.
    """

    op: str
    shape: tuple[int, ...]
    qa: int
    qw: int
    mode: str = "kernel"
    out_bits: int = 0

    FIELDS: ClassVar[dict[str, tuple[str, ...]]] = {"matmul": MATMUL_FIELDS, "conv2d": CONV_FIELDS,
                                                    "maxpool": POOL_FIELDS, "avgpool": POOL_FIELDS}

    def __post_init__(self):
        if self.op not in ALL_OPS:
            raise UserError(f"unknown op {self.op!r}; use one of {', '.join(ALL_OPS)}.")
        if self.mode not in MODES:
            raise UserError(f"unknown measurement mode {self.mode!r}; use one of {', '.join(MODES)}.")
        if self.op in LAYER_OPS:
            self._check_layer_op()
            return
        if self.mode == "kernel" and self.out_bits:
            raise UserError("a kernel-mode spec writes int32 outputs; out_bits must be 0.")
        if self.mode == "layer" and self.out_bits not in (0,) + BITS:
            raise UserError(f"out_bits={self.out_bits} is not 0 (int32 logits) or one of {', '.join(map(str, BITS))}.")
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

    def _check_layer_op(self) -> None:
        shape = tuple(int(x) for x in self.shape)
        object.__setattr__(self, "shape", shape)
        want = self.FIELDS[self.op]
        if len(shape) != len(want):
            raise UserError(f"{self.op} shape needs {len(want)} numbers ({','.join(want)}), got {len(shape)}.")
        if self.mode != "layer":
            raise UserError(f"{self.op} is measured in layer mode only (as a deployed model runs it).")
        check_bits("qa", self.qa, BITS)
        if self.qw != 0 or self.out_bits != self.qa:
            raise UserError(f"{self.op} has no weights and keeps its input's codes: qw must be 0 and out_bits = qa.")
        N, C, H, W, KS, S = shape
        if min(shape) < 1 or H < KS or W < KS:
            raise UserError(f"{self.op} shape {self.shape_str} is impossible: sizes >= 1 and the window must fit H x W.")
        if max(shape) > 1 << 20:
            raise UserError(f"{self.op} shape {self.shape_str} is too large.")

    @property
    def has_weights(self) -> bool:
        return self.op in OPS

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
        if self.op == "matmul":
            return (1, 1)
        p = d.get("P", 0)
        oh = (d["H"] + 2 * p - d["KS"]) // d["S"] + 1
        ow = (d["W"] + 2 * p - d["KS"]) // d["S"] + 1
        return oh, ow

    @property
    def reduction(self) -> int:
        """Inputs combined per output: the dot length (MAC ops) or the window (pools)."""
        d = self.dims
        if self.op == "matmul":
            return d["K"]
        if self.op in LAYER_OPS:
            return d["KS"] * d["KS"]
        return d["C"] // d["G"] * d["KS"] * d["KS"]

    @property
    def outputs(self) -> int:
        d = self.dims
        if self.op == "matmul":
            return d["N"] * d["M"]
        oh, ow = self.out_hw
        return d["N"] * (d["C"] if self.op in LAYER_OPS else d["K"]) * oh * ow

    @property
    def weight_count(self) -> int:
        d = self.dims
        if self.op == "matmul":
            return d["M"] * d["K"]
        if self.op in LAYER_OPS:
            return 0
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
        return (self.op, self.shape_str, self.qa, self.qw, self.mode, self.out_bits)

    def to_dict(self) -> dict:
        d = {"op": self.op, "shape": list(self.shape), "qa": self.qa, "qw": self.qw}
        if self.mode != "kernel":
            d.update(mode=self.mode, out_bits=self.out_bits)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "KernelSpec":
        return cls(d["op"], tuple(d["shape"]), int(d["qa"]), int(d["qw"]), str(d.get("mode", "kernel")),
                   int(d.get("out_bits", 0)))

    def as_layer(self, out_bits: int) -> "KernelSpec":
        """The same op measured as a deployed model runs it, writing ``out_bits`` codes."""
        return KernelSpec(self.op, self.shape, self.qa, self.qw, "layer", out_bits)

    def __str__(self) -> str:
        s = f"{self.op}[{self.shape_str}] {self.qa}x{self.qw}"
        return s if self.mode == "kernel" else f"{s} layer->{self.out_bits or 'int32'}"


def parse_shape(op: str, text: str) -> tuple[int, ...]:
    """Parse 'N,M,K' / 'N,C,H,W,K,KS,S,P[,G]' into ints with one-sentence errors."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        vals = tuple(int(p) for p in parts)
    except ValueError:
        raise UserError(f"shape {text!r} is not a comma-separated list of integers.") from None
    return vals
