"""Value-level model of the BitFusion output unit (``bf_out_unit`` in rtl/bf_datapath.v).

The output unit sits at the bottom of every array column.  It takes the
column's finished int32 accumulator and turns it into the next layer's
activation code, with the numeric spec's integer requantisation
(``kernels/include/mico_kernels.h`` ``mico_requant``)::

    t = (acc + bias[c]) * mult[c]                  (int64; mult in 1 .. 2^31-1)
    y = (t >> s) + ((t >> (s-1)) & 1)              (== (t + 2^(s-1)) >> s, s in 1..62)
    relu: y = max(y, 0)
    clamp to the out_bits range: signed [-2^(b-1), 2^(b-1)-1], unsigned [0, 2^b-1]
    out_bits == 1 (signed only): y = +1 if acc + bias >= 0 else -1 (ReLU ignored)
    out_bits == 0: y = acc + bias (int32 logits; no mult / shift / clamp / ReLU)

then pooling over ``pool_n`` consecutive rows (the compiler orders the GEMM rows
window by window): max, or avg rounding half up ``floor((2*sum + n) / (2*n))``,
computed without a divider as ``((2*sum + n*(1 + 2^e)) * m >> k) - 2^(e-1)``
with a reciprocal (m, k) the compiler proves exact (:func:`avg_recip`).

Values are stored in *containers* of e = 2, 4 or 8 bits (the BitBrick slice
widths the next layer's Fusion Units read): a b-bit value sits in the
container of the next supported width, sign-extended when signed.  1-bit
values (+-1) use 2-bit containers (``01`` = +1, ``11`` = -1), like 1-bit
operands everywhere on this accelerator.  out_bits == 0 uses 32-bit containers.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

POOLS = ("none", "max", "avg")


def container_bits(b: int) -> int:
    """Bits of the container a b-bit value occupies on the accelerator (b = 0: int32)."""
    if b == 0:
        return 32
    if not 1 <= b <= 8:
        raise ValueError(f"bit-width {b} is not in 1..8")
    return 2 if b <= 2 else 4 if b <= 4 else 8


def value_range(b: int, signed: bool = True) -> tuple[int, int]:
    """(lowest, highest) value of b bits: 1 bit signed is {-1, +1}; b = 0 is int32."""
    if b == 0:
        return -(1 << 31), (1 << 31) - 1
    if b == 1 and signed:
        return -1, 1
    if not signed:
        return 0, (1 << b) - 1
    return -(1 << (b - 1)), (1 << (b - 1)) - 1


def requant_values(acc, bias, mult, shift, relu: bool, out_bits: int, out_signed: bool = True) -> np.ndarray:
    """The output unit's requantisation, per-column parameters broadcast on the last axis (int64)."""
    v = np.asarray(acc, dtype=np.int64) + np.asarray(bias, dtype=np.int64)
    if out_bits == 0:
        return ((v + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
    if out_bits == 1:
        return np.where(v >= 0, 1, -1).astype(np.int64)
    t = v * np.asarray(mult, dtype=np.int64)
    s = np.asarray(shift, dtype=np.int64)
    y = (t >> s) + ((t >> (s - 1)) & 1)
    if relu:
        y = np.maximum(y, 0)
    lo, hi = value_range(out_bits, out_signed)
    return np.clip(y, lo, hi)


@lru_cache(maxsize=None)
def avg_recip(n: int, e: int) -> tuple[int, int]:
    """(m, k): floor(x * m / 2^k) == floor(x / (2n)) for every x the avg pool of n
    e-bit container values can produce (x = 2*sum + n*(1 + 2^e) >= 0); smallest k."""
    if not 1 <= n < 256 or e not in (2, 4, 8):
        raise ValueError(f"no average pooling of {n} values of {e} bits")
    d = 2 * n
    x = np.arange(0, 2 * n * ((1 << e) - 1) + n * (1 + (1 << e)) + 1, dtype=np.int64)
    want = x // d
    for k in range(0, 64):
        m = -(-(1 << k) // d)
        if m >= 1 << 20:
            break
        if np.array_equal((x * m) >> k, want):
            return m, k
    raise ValueError(f"no exact reciprocal of {d} fits the output unit")


def pool_values(y: np.ndarray, pool: str, pool_n: int, e: int) -> np.ndarray:
    """Pool every ``pool_n`` consecutive rows (axis -2) of y, as the output unit does."""
    y = np.asarray(y, dtype=np.int64)
    if pool == "none" or pool_n == 1 and pool == "max":
        return y
    g = y.reshape(*y.shape[:-2], y.shape[-2] // pool_n, pool_n, y.shape[-1])
    if pool == "max":
        return g.max(axis=-2)
    m, k = avg_recip(pool_n, e)
    x = 2 * g.sum(axis=-2) + pool_n * (1 + (1 << e))
    return ((x * m) >> k) - (1 << (e - 1))


def codes(y: np.ndarray, e: int) -> np.ndarray:
    """Values -> e-bit container codes (two's complement, low e bits), as uint32."""
    return (np.asarray(y, dtype=np.int64) & ((1 << e) - 1)).astype(np.uint32)


def from_codes(c: np.ndarray, e: int, signed: bool) -> np.ndarray:
    """e-bit container codes -> values (int64)."""
    c = np.asarray(c, dtype=np.int64) & ((1 << e) - 1)
    if signed:
        c = np.where(c >> (e - 1), c - (1 << e), c)
    return c
