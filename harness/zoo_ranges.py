"""The layer-shape ranges of the built-in model zoo, as data, for the adaptive plan.

The adaptive plan draws its candidate shapes from the shapes the zoo's layers
span, but harness/ must not import mpq/ (where the models live) and loading
every model at sweep start costs seconds.  So the ranges are written here and
tests/test_adaptive.py checks them against ``mpq.zoo.zoo_shapes()``: a zoo that
grows beyond them fails that test (update the numbers, not the check).

Every zoo layer runs one image at a time: N = 1, except the transformers'
token-wise linears, a matmul whose N is the sequence length.  Sizes are drawn
log-uniformly within the ranges, the conv kinds (dense, grouped, depthwise)
and (kernel, stride, padding) triples in the zoo's proportions, and a draw
larger than the zoo's largest layer (in MACs) is drawn again.
"""

from __future__ import annotations

import math
import random

#: matmul (N, M, K): M outputs, K reduction; N = 1 (one image) or a transformer's tokens in `tokens`;
#: `rows`: zoo layer counts of each kind; `max_macs` bounds M x K (the largest layers are N = 1)
MATMUL = {"M": (6, 256), "K": (32, 3072), "tokens": (11, 69), "rows": {"one": 51, "tokens": 27},
          "max_macs": 786_432}

#: conv2d (1, C, H, W, K, KS, S, P, G); H x W up to `hw` (conv1d layers are H = 1, W long)
CONV2D = {
    "C": (1, 336), "K": (8, 448), "H": (1, 49), "W": (1, 1024), "hw": 1024,
    "max_macs": 10_485_760,
    # (ks, stride, pad): zoo layer counts
    "window": {(1, 1, 0): 197, (3, 1, 1): 97, (3, 2, 1): 41, (5, 1, 2): 12, (1, 2, 0): 12, (4, 4, 0): 3},
    # kind: zoo layer counts (grouped layers have 3 groups)
    "kind": {"dense": 259, "depthwise": 62, "grouped3": 41},
}


def _logu(rng: random.Random, lo: int, hi: int) -> int:
    return int(round(math.exp(rng.uniform(math.log(lo), math.log(hi)))))


def _weighted(rng: random.Random, table: dict):
    keys = list(table)
    return rng.choices(keys, weights=[table[k] for k in keys])[0]


def conv_macs(shape: tuple) -> int:
    _, c, h, w, k, ks, s, p, g = shape
    oh, ow = (h + 2 * p - ks) // s + 1, (w + 2 * p - ks) // s + 1
    return k * oh * ow * (c // g) * ks * ks


def draw_matmul(rng: random.Random) -> tuple | None:
    m, k = _logu(rng, *MATMUL["M"]), _logu(rng, *MATMUL["K"])
    n = 1 if _weighted(rng, MATMUL["rows"]) == "one" else _logu(rng, *MATMUL["tokens"])
    return (n, m, k) if m * k <= MATMUL["max_macs"] else None


def draw_conv2d(rng: random.Random) -> tuple | None:
    ks, s, p = _weighted(rng, CONV2D["window"])
    kind = _weighted(rng, CONV2D["kind"])
    h = _logu(rng, *CONV2D["H"])
    w = _logu(rng, CONV2D["W"][0], max(1, min(CONV2D["W"][1], CONV2D["hw"] // h)))
    c = _logu(rng, *CONV2D["C"])
    if kind == "depthwise":
        k = g = c
        if c < 2:
            return None
    elif kind == "grouped3":
        g = 3
        c = max(1, round(c / 3)) * 3
        k = max(1, round(_logu(rng, *CONV2D["K"]) / 3)) * 3
    else:
        k, g = _logu(rng, *CONV2D["K"]), 1
    if (h + 2 * p - ks) // s + 1 < 1 or (w + 2 * p - ks) // s + 1 < 1:
        return None
    shape = (1, c, h, w, k, ks, s, p, g)
    return shape if conv_macs(shape) <= CONV2D["max_macs"] else None


DRAW = {"matmul": draw_matmul, "conv2d": draw_conv2d}


def candidates(op: str, n: int, seed: int) -> list[tuple]:
    """n distinct seeded shapes of `op` within the zoo's ranges (fewer if the space runs out)."""
    rng = random.Random(f"adaptive-{op}-{seed}")
    out: dict[tuple, None] = {}
    for _ in range(50 * n):
        if len(out) >= n:
            break
        shape = DRAW[op](rng)
        if shape is not None:
            out.setdefault(shape)
    return list(out)
