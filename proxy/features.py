"""Feature sets for latency proxies.

A feature set turns kernels (a list of `KernelSpec`; tables are converted at
the CLI edge, proxy/cli.py) into a 2-D array.  All counts come from
`KernelSpec` so that a proxy and the store agree on what "CBOPs" means.

| name     | columns                                                              |
|----------|----------------------------------------------------------------------|
| `raw`    | the op's shape fields, qa, qw                                         |
| `bops`   | BOPs = MACs x qa x qw                                                 |
| `cbops`  | CBOPs = MACs x max(qa, qw)  (MiCo)                                    |
| `cbops+` | CBOPs, weight loads (MACs x qw), activation loads (MACs x qa), MACs,  |
|          | and the op's shape fields                                            |
| `analytic` | a cost model of a bit-packed kernel: MACs split by (qa, qw) pair  |
|          | (16 columns, one slope per pair), activations gathered/unpacked split |
|          | by qa (4 columns), weights streamed split by qw (4), outputs written |
|          | (ops without weights: `LAYER_COLUMNS`, elements read and written)    |
| `terms`  | the cost terms of the target's family (proxy/terms.py): word-level   |
|          | loop iterations, per-row/output overheads, cache re-streams (CPU);   |
|          | compute tiles, DRAM words per operand, fill (BitFusion)              |

With ``log=True`` (the default) every column is ``log1p``-transformed (log1p
rather than log because a conv2d padding P may be 0); the tree models use that.
The linear model uses ``log=False``: latency ~ a . features + b.

`raw` and `cbops+` contain the shape fields, so they need all kernels to be of
one op (a proxy is fit per (target, op) anyway); `bops` and `cbops` accept
mixed ops.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from harness.errors import UserError
from harness.spec import LAYER_OPS, KernelSpec
from kernels.numeric import BITS

from . import terms

FEATURE_SETS = ("raw", "bops", "cbops", "cbops+", "analytic", "terms")

_COUNTS = {
    "bops": ("bops",),
    "cbops": ("cbops",),
    "cbops+": ("cbops", "weight_loads", "act_loads", "macs"),
}


def spec_list(specs: Iterable[KernelSpec]) -> list[KernelSpec]:
    """`specs` as a list, each checked to be a KernelSpec (one sentence otherwise)."""
    if isinstance(specs, KernelSpec):
        return [specs]
    out = list(specs)
    for s in out:
        if not isinstance(s, KernelSpec):
            raise UserError(f"expected KernelSpec objects, got {type(s).__name__}; build specs from a table with "
                            "proxy.cli.frame_training_set.")
    return out


def feature_names(name: str, op: str | None, family: str = "cpu") -> list[str]:
    """Column names of feature set `name` for kernels of `op` (`family`: of the `terms` set)."""
    if name not in FEATURE_SETS:
        raise UserError(f"unknown feature set {name!r}; use one of {', '.join(FEATURE_SETS)}.")
    if name == "terms":
        return terms.names(family, op)
    if name in ("raw", "cbops+") and op not in KernelSpec.FIELDS:
        raise UserError(f"feature set {name!r} needs kernels of a single op (matmul or conv2d).")
    fields = list(KernelSpec.FIELDS[op]) if op in KernelSpec.FIELDS else []
    if name == "raw":
        return fields + ["qa", "qw"]
    if name == "analytic":
        if op in LAYER_OPS:
            return list(LAYER_COLUMNS)
        return ([f"macs_{a}x{w}" for a in BITS for w in BITS] + [f"act_{a}b" for a in BITS]
                + [f"wgt_{w}b" for w in BITS] + ["outputs"]
                + [f"macs_pad_{a}x{w}" for a in BITS for w in BITS] + ["gathers"]
                + [f"pack_{a}b" for a in BITS] + list(REQUANT_COLUMNS))
    if name == "cbops+":
        return list(_COUNTS[name]) + fields
    return list(_COUNTS[name])


def _single_op(specs: Sequence[KernelSpec], op: str | None) -> str | None:
    ops = {s.op for s in specs}
    if op is not None:
        if ops - {op}:
            raise UserError(f"expected only {op} kernels, got {', '.join(sorted(ops - {op}))} as well.")
        return op
    if len(ops) == 1:
        return next(iter(ops))
    return None


def features(specs: Iterable[KernelSpec], name: str = "cbops", log: bool = True,
             op: str | None = None, family: str = "cpu") -> tuple[np.ndarray, list[str]]:
    """(X, names): feature set `name` of kernels `specs`.

    X has one row per kernel, float64; with ``log=True`` every column is
    ``log1p(value)``.  `op` optionally asserts (and, for empty input, supplies)
    the op of the kernels.
    """
    specs = spec_list(specs)
    the_op = _single_op(specs, op)
    names = feature_names(name, the_op, family)
    if not specs:
        return np.zeros((0, len(names))), names
    rows: list[list[float]] = []
    if name == "raw":
        for s in specs:
            rows.append([*s.shape, s.qa, s.qw])
    elif name == "analytic":
        for s in specs:
            rows.append(_analytic_row(s))
    elif name == "terms":
        for s in specs:
            rows.append(terms.row(s, family))
    else:
        counts = _COUNTS[name]
        with_shape = name == "cbops+"
        for s in specs:
            r = [getattr(s, c) for c in counts]
            if with_shape:
                r.extend(s.shape)
            rows.append(r)
    X = np.asarray(rows, dtype=np.float64)
    if log:
        X = np.log1p(X)
    return X, names


def _interior(n_out: int, size: int, ks: int, stride: int, pad: int) -> int:
    """Output positions along one axis whose window lies wholly inside the input."""
    return sum(1 for o in range(n_out) if o * stride - pad >= 0 and o * stride - pad + ks <= size)


#: layer mode: the requantisation writes int32 logits, signs (1 bit) or clamped codes
REQUANT_COLUMNS = ("requant_int32", "requant_sign", "requant_codes")
#: ops without weights (pools, adds, rescales, copies): their time is linear in the elements they read
#: (all inputs; window_reads counts a pool's window per output) and write, the outputs split by path:
#: 1-bit codes take the sign path (add/rescale writing 1 bit: half the clamp's cost; an average of
#: 1-bit codes: a sign pass more), so one positive slope each fits both
LAYER_COLUMNS = ("window_reads", "inputs", "code_outputs", "sign_outputs")


def _layer_columns(s: KernelSpec) -> list[float]:
    """What a layer adds to its kernel (layer mode; zeros in kernel mode): every input
    value packed once at qa bits, every output requantised by one of three paths."""
    out = [0.0] * (len(BITS) + len(REQUANT_COLUMNS))
    if s.mode != "layer":
        return out
    out[BITS.index(s.qa)] = float(s.act_count)
    cls = 0 if s.out_bits == 0 else 1 if s.out_bits == 1 else 2
    out[len(BITS) + cls] = float(s.outputs)
    return out


def _analytic_row(s: KernelSpec) -> list[float]:
    """Counts a bit-packed kernel's time is linear in, with one slope per bit-width.

    Activations are unpacked once per output row (matmul: N*K values; conv2d:
    one patch gather per output pixel: N*OH*OW*reduction values), weights are
    streamed once per output row, outputs are written once, and every
    (pixel, group) patch gather / matmul row has a fixed cost.  Conv MACs of
    windows that touch the zero padding get their own 16 columns: the kernels
    take a different path there (e.g. no popcount for 1- and 2-bit inputs,
    since a padded 0 has no 1-bit code), so their cost per MAC differs.
    """
    if s.op in LAYER_OPS:
        sign = s.out_bits == 1 and s.op in ("add", "rescale", "avgpool", "avgpool1d", "gavgpool")
        return [float(s.outputs * s.reduction), float(s.act_count), float(s.outputs * (not sign)),
                float(s.outputs * sign)]
    if s.qa not in BITS or s.qw not in BITS:
        raise UserError(f"the analytic feature set covers the bit-packed widths {', '.join(map(str, BITS))}; "
                        f"kernel {s} is outside them.")
    nb = len(BITS)
    pair = BITS.index(s.qa) * nb + BITS.index(s.qw)
    act0, wgt0 = nb * nb, nb * nb + nb
    out0, pad0 = wgt0 + nb, wgt0 + nb + 1
    row = [0.0] * (pad0 + nb * nb + 1)
    macs, pad_macs = float(s.macs), 0.0
    if s.op == "matmul":
        d = s.dims
        acts = d["N"] * d["K"]
        gathers = d["N"]
    else:
        d = s.dims
        oh, ow = s.out_hw
        acts = d["N"] * oh * ow * s.reduction
        gathers = d["N"] * oh * ow * d["G"]
        inner = _interior(oh, d["H"], d["KS"], d["S"], d["P"]) * _interior(ow, d["W"], d["KS"], d["S"], d["P"])
        pad_macs = macs * (1.0 - inner / float(oh * ow))
        macs -= pad_macs
    row[pair] = macs
    row[act0 + BITS.index(s.qa)] = float(acts)
    row[wgt0 + BITS.index(s.qw)] = float(s.weight_count)
    row[out0] = float(s.outputs)
    row[pad0 + pair] = pad_macs
    row[-1] = float(gathers)
    return row + _layer_columns(s)


def shape_groups(specs: Iterable[KernelSpec]) -> np.ndarray:
    """One integer label per kernel; equal labels = same op and shape (all bit-widths)."""
    ids: dict[tuple[str, str], int] = {}
    return np.asarray([ids.setdefault((s.op, s.shape_str), len(ids)) for s in specs], dtype=np.int64)
