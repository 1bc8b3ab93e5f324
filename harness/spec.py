"""Kernel specifications: what is measured, independent of where.

A `KernelSpec` is the unit of the store's key and of every proxy's features,
so its derived counts (MACs, BOPs, CBOPs, loads) are defined once, here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from math import prod
from pathlib import Path
from typing import ClassVar

from kernels import numeric
from kernels.numeric import BITS, SPEC_BITS
from kernels.toolchain import INCLUDE_DIR

from .errors import UserError

OPS = ("matmul", "conv2d")
#: ops measured only in layer mode (as a deployed model runs them); they have no weights (qw = 0).
#: They are not kernels of the bench firmware: each is one step of a generated model (kernels/ir).
POOL_OPS = ("maxpool", "avgpool", "maxpool1d", "avgpool1d", "gavgpool")
#: element-wise sums requantised onto the output code (residual add, one-input rescale): out_bits is free
SUM_OPS = ("add", "rescale")
#: data movement: codes move, the width stays (out_bits = qa)
MOVE_OPS = ("concat", "shuffle", "unfold")
#: transformer steps (kernels/ir/attention.py, norm.py): softmax writes 8-bit probabilities, the
#: others write any width; the attention matmuls read two activation tensors (qw = 0: no weights)
TRANSFORMER_OPS = ("softmax", "layernorm", "gelu", "transpose", "attn_qk", "attn_av")
CODE_OPS = SUM_OPS + ("layernorm", "gelu", "attn_qk", "attn_av")      # out_bits is free
LAYER_OPS = POOL_OPS + SUM_OPS + MOVE_OPS + TRANSFORMER_OPS
ALL_OPS = OPS + LAYER_OPS
MODES = ("kernel", "layer")
WINDOW1D_OPS = ("maxpool1d", "avgpool1d", "unfold")

MATMUL_FIELDS = ("N", "M", "K")
CONV_FIELDS = ("N", "C", "H", "W", "K", "KS", "S", "P", "G")
POOL_FIELDS = ("N", "C", "H", "W", "KS", "S", "P")
WINDOW1D_FIELDS = ("N", "C", "L", "KS", "S", "P")       # 1-D pools and the conv1d unfold
#: adaptive average pooling of (C, H, W) to (OH, OW); global: OH = OW = 1; 1-D: H = OH = 1
GAP_FIELDS = ("N", "C", "H", "W", "OH", "OW")
SUM_FIELDS = ("N", "E")                    # E elements per image (any tensor shape)
CONCAT_FIELDS = ("N", "C1", "C2", "S")     # two inputs of C1 and C2 channels, S elements per channel
SHUFFLE_FIELDS = ("N", "C", "S", "G")      # C channels of S elements in G groups
ROWS_FIELDS = ("N", "R", "L")              # softmax: R rows of L codes
TOKENS_FIELDS = ("N", "T", "D")            # layer norm: T tokens of D features
TRANSPOSE_FIELDS = ("N", "A", "B")         # (A, B) -> (B, A)
ATTN_FIELDS = ("N", "H", "T", "S", "DH")   # heads, query tokens, key tokens, features per head
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
    """kernels.numeric.check_bits raising the library error (a one-sentence ValueError)."""
    return numeric.check_bits(name, b, allowed, error=UserError)


def check_target_bits(spec: "KernelSpec", target: str, bits) -> None:
    """Refuse, with one sentence, a spec whose widths the target does not run (a CPU target runs
    1, 2, 4, 8; BitFusion may run any width 1..8): specs carry any width some family runs."""
    bits = tuple(bits)
    for name, b in (("qa", spec.qa), ("qw", spec.qw if spec.has_weights else None)):
        if b is not None and b not in bits:
            raise UserError(f"{name}={b} is not a supported bit-width of target {target}; "
                            f"use one of {', '.join(map(str, bits))}.")


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
    """op + shape + activation/weight bit-widths + measurement mode.

    matmul shape: (N, M, K): N activation rows, M outputs (weight rows), K reduction.
    conv2d shape: (N, C, H, W, K, KS, S, P, G): NCHW input, K output channels,
    square kernel KS, stride S, zero padding P, groups G.
    Layer mode only, no weights (qw = 0): maxpool / avgpool (N, C, H, W, KS, S, P)
    (6 numbers: P = 0); maxpool1d / avgpool1d and unfold (N, C, L, KS, S, P);
    gavgpool (N, C, H, W, OH, OW); add / rescale (N, E); concat (N, C1, C2, S);
    shuffle (N, C, S, G).  Pools and data movement keep the code width (out_bits
    = qa); add / rescale write any width.

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
                                                    "maxpool": POOL_FIELDS, "avgpool": POOL_FIELDS,
                                                    "maxpool1d": WINDOW1D_FIELDS, "avgpool1d": WINDOW1D_FIELDS,
                                                    "unfold": WINDOW1D_FIELDS, "gavgpool": GAP_FIELDS,
                                                    "add": SUM_FIELDS, "rescale": SUM_FIELDS,
                                                    "concat": CONCAT_FIELDS, "shuffle": SHUFFLE_FIELDS,
                                                    "softmax": ROWS_FIELDS, "layernorm": TOKENS_FIELDS,
                                                    "gelu": SUM_FIELDS, "transpose": TRANSPOSE_FIELDS,
                                                    "attn_qk": ATTN_FIELDS, "attn_av": ATTN_FIELDS}

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
        check_bits("qa", self.qa, SPEC_BITS)
        check_bits("qw", self.qw, SPEC_BITS)
        check_shape(self.op, shape)

    def _check_layer_op(self) -> None:
        try:
            shape = tuple(int(x) for x in self.shape)
        except (TypeError, ValueError):
            raise UserError(f"{self.op} shape {self.shape!r} is not a list of integers.") from None
        if self.op in ("maxpool", "avgpool") and len(shape) == 6:
            shape = shape + (0,)
        object.__setattr__(self, "shape", shape)
        want = self.FIELDS[self.op]
        if len(shape) != len(want):
            raise UserError(f"{self.op} shape needs {len(want)} numbers ({','.join(want)}), got {len(shape)}.")
        if self.mode != "layer":
            raise UserError(f"{self.op} is measured in layer mode only (a step of a generated model, not a "
                            "kernel of the bench firmware).")
        check_bits("qa", self.qa, BITS)
        if self.op == "softmax":
            if self.qw != 0 or self.out_bits != 8:
                raise UserError("softmax has no weights and writes 8-bit probabilities: qw must be 0 and out_bits 8.")
        elif self.op in CODE_OPS:
            if self.qw != 0 or self.out_bits not in BITS:
                raise UserError(f"{self.op} has no weights and writes codes: qw must be 0 and out_bits one of "
                                f"{', '.join(map(str, BITS))}.")
        elif self.qw != 0 or self.out_bits != self.qa:
            raise UserError(f"{self.op} has no weights and keeps its input's codes: qw must be 0 and out_bits = qa.")
        if max(shape) > 1 << 20:
            raise UserError(f"{self.op} shape {self.shape_str} is too large.")
        why = self._impossible()
        if why:
            raise UserError(f"{self.op} shape {self.shape_str} is impossible: {why}.")

    def _impossible(self) -> str:
        """Why no model could hold this layer-only shape ('' if one can), by the IR ops' rules."""
        d = self.dims
        if min(d[k] for k in d if k != "P") < 1 or d.get("P", 0) < 0:
            return "sizes must be >= 1 and padding >= 0"
        if self.op in ("maxpool", "avgpool", "maxpool1d", "avgpool1d"):
            if d["P"] > d["KS"] // 2:
                return f"padding {d['P']} exceeds half the window ({d['KS'] // 2})"
            if min(self._window_out("H"), self._window_out("W")) < 1:
                return "the window does not fit the padded input"
        elif self.op == "unfold" and self._window_out() < 1:
            return "the window does not fit the padded input"
        elif self.op == "gavgpool" and (d["OH"] > d["H"] or d["OW"] > d["W"]):
            return "the output is larger than the input"
        elif self.op == "shuffle" and d["C"] % d["G"]:
            return f"groups G={d['G']} must divide C={d['C']}"
        elif self.op == "layernorm" and d["D"] > 256:
            return f"layer norm rows are at most 256 wide, not D={d['D']}"
        return ""

    def _window_out(self, axis: str = "W") -> int:
        """Output positions of a sliding-window op along ``axis`` (W, H, or L of the 1-D ops)."""
        d = self.dims
        n = d.get("L", d.get(axis))
        return (n + 2 * d["P"] - d["KS"]) // d["S"] + 1

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
        if self.op == "matmul" or self.op in SUM_OPS + ("concat", "shuffle") + TRANSFORMER_OPS:
            return (1, 1)
        if self.op == "gavgpool":
            return d["OH"], d["OW"]
        if self.op in WINDOW1D_OPS:
            return 1, self._window_out()
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
        if self.op in ("maxpool", "avgpool"):
            return d["KS"] * d["KS"]
        if self.op in ("maxpool1d", "avgpool1d"):
            return d["KS"]
        if self.op == "gavgpool":     # the largest window (-(-a // b): ceil)
            return -(-d["H"] // d["OH"]) * -(-d["W"] // d["OW"])
        if self.op == "add":
            return 2
        if self.op == "softmax":
            return d["L"]
        if self.op == "layernorm":
            return d["D"]
        if self.op == "attn_qk":
            return d["DH"]
        if self.op == "attn_av":
            return d["S"]
        if self.op in LAYER_OPS:
            return 1
        return d["C"] // d["G"] * d["KS"] * d["KS"]

    @property
    def outputs(self) -> int:
        d = self.dims
        if self.op == "matmul":
            return d["N"] * d["M"]
        if self.op in SUM_OPS + ("concat", "shuffle"):
            return self.act_count // (2 if self.op == "add" else 1)
        if self.op in ("softmax", "layernorm", "gelu", "transpose"):
            return self.act_count
        if self.op == "attn_qk":
            return d["N"] * d["H"] * d["T"] * d["S"]
        if self.op == "attn_av":
            return d["N"] * d["T"] * d["H"] * d["DH"]
        oh, ow = self.out_hw
        if self.op == "unfold":
            return d["N"] * d["C"] * d["KS"] * ow
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
        """Input elements read (all inputs together)."""
        d = self.dims
        if self.op == "matmul":
            return d["N"] * d["K"]
        if self.op in SUM_OPS:
            return d["N"] * d["E"] * (2 if self.op == "add" else 1)
        if self.op == "concat":
            return d["N"] * (d["C1"] + d["C2"]) * d["S"]
        if self.op == "shuffle":
            return d["N"] * d["C"] * d["S"]
        if self.op in ("softmax", "layernorm", "gelu", "transpose"):
            return prod(self.shape)
        if self.op == "attn_qk":
            return d["N"] * (d["T"] + d["S"]) * d["H"] * d["DH"]
        if self.op == "attn_av":
            return d["N"] * d["H"] * d["S"] * (d["T"] + d["DH"])
        if self.op in WINDOW1D_OPS:
            return d["N"] * d["C"] * d["L"]
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
