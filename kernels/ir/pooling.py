"""Integer semantics of the pooling the IR ops need beyond ``kernels.reference``:
rectangular windows with zero padding, and adaptive (global) average pooling.

NumPy twins of ``mico_maxpool_pad`` / ``mico_avgpool_pad`` /
``mico_adaptive_avgpool`` (kernels/src/pool_ext.c).  Averages round half up,
``floor((2*sum + cnt) / (2*cnt))``, as ``reference.avgpool``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Window:
    """A pooling window on a (C, H, W) plane stack (``mico_pool_shape``)."""

    C: int
    H: int
    W: int
    KH: int
    KW: int
    SH: int
    SW: int
    PH: int
    PW: int

    @property
    def out_h(self) -> int:
        return (self.H + 2 * self.PH - self.KH) // self.SH + 1

    @property
    def out_w(self) -> int:
        return (self.W + 2 * self.PW - self.KW) // self.SW + 1

    def c_init(self) -> str:
        vals = (self.C, self.H, self.W, self.KH, self.KW, self.SH, self.SW, self.PH, self.PW)
        return "{ " + ", ".join(f"{v}u" for v in vals) + " }"


def round_half_up_mean(total: np.ndarray, cnt) -> np.ndarray:
    """floor((2*sum + cnt) / (2*cnt)) on int64 sums: the mean every average pool keeps."""
    cnt = np.asarray(cnt, dtype=np.int64)
    return np.floor_divide(2 * total + cnt, 2 * cnt)


def pool(x: np.ndarray, mode: str, w: Window) -> np.ndarray:
    """Max / average pooling of int values (N, C, H, W) with zero padding.

    Max takes the largest real value of the window (padding never wins);
    average divides the window sum (padding = 0) by KH*KW."""
    x = np.asarray(x, dtype=np.int64)
    n = x.shape[0]
    fill = np.iinfo(np.int64).min if mode == "max" else 0
    xp = np.full((n, w.C, w.H + 2 * w.PH, w.W + 2 * w.PW), fill, dtype=np.int64)
    xp[:, :, w.PH:w.PH + w.H, w.PW:w.PW + w.W] = x
    v = np.lib.stride_tricks.sliding_window_view(xp, (w.KH, w.KW), axis=(2, 3))
    v = v[:, :, ::w.SH, ::w.SW][:, :, :w.out_h, :w.out_w]
    if mode == "max":
        return v.max(axis=(-2, -1))
    return round_half_up_mean(v.sum(axis=(-2, -1)), w.KH * w.KW)


def adaptive_bounds(n: int, out: int) -> list[tuple[int, int]]:
    """Window i spans [floor(i*n/out), ceil((i+1)*n/out)), as torch's adaptive pools."""
    return [(i * n // out, -(-(i + 1) * n // out)) for i in range(out)]


def adaptive_avgpool(x: np.ndarray, oh: int, ow: int) -> np.ndarray:
    """Adaptive average pooling of int values (N, C, H, W) to (N, C, oh, ow)."""
    x = np.asarray(x, dtype=np.int64)
    n, c, h, w = x.shape
    y = np.empty((n, c, oh, ow), dtype=np.int64)
    for i, (h0, h1) in enumerate(adaptive_bounds(h, oh)):
        for j, (w0, w1) in enumerate(adaptive_bounds(w, ow)):
            total = x[:, :, h0:h1, w0:w1].sum(axis=(-2, -1))
            y[:, :, i, j] = round_half_up_mean(total, (h1 - h0) * (w1 - w0))
    return y
