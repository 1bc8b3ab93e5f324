"""Sweep plans: which kernel shapes to measure.

Each plan yields shapes per op; `expand` crosses them with every (qa, qw) pair
the target supports.  `zoo` shapes come from the built-in models, which live in
mpq/ -- harness finds them through the ``mico.plans`` entry-point group.
"""

from __future__ import annotations

import math
import random
from importlib.metadata import entry_points
from typing import Iterable

from .errors import UserError
from .spec import BITS, KernelSpec

ALL_PAIRS = tuple((a, w) for a in BITS for w in BITS)

SMOKE = {
    "matmul": [(1, 8, 40), (3, 5, 64)],
    "conv2d": [(1, 3, 6, 6, 4, 3, 1, 1, 1), (1, 4, 5, 5, 4, 3, 2, 0, 4)],
}


def _grid() -> dict[str, list[tuple]]:
    mm = [(n, m, k) for n in (1, 16) for m in (16, 64, 256) for k in (32, 96, 288, 1024)]
    conv = []
    for c, hw, k in ((3, 16, 16), (16, 16, 32), (32, 8, 64), (64, 4, 64)):
        for ks, s, p in ((3, 1, 1), (1, 1, 0), (3, 2, 1)):
            conv.append((1, c, hw, hw, k, ks, s, p, 1))
        conv.append((1, c, hw, hw, c, 3, 1, 1, c))   # depthwise
    return {"matmul": mm, "conv2d": conv}


def _loguniform(rng: random.Random, lo: int, hi: int) -> int:
    return int(round(math.exp(rng.uniform(math.log(lo), math.log(hi)))))


def _random(n: int, seed: int = 0) -> dict[str, list[tuple]]:
    """n shapes: half matmul, half conv2d, log-uniform sizes, seeded."""
    rng = random.Random(seed)
    mm, conv = set(), set()
    n_mm = (n + 1) // 2
    while len(mm) < n_mm:
        mm.add((_loguniform(rng, 1, 64), _loguniform(rng, 8, 512), _loguniform(rng, 8, 2048)))
    while len(conv) < n - n_mm:
        c = _loguniform(rng, 1, 64)
        hw = _loguniform(rng, 4, 32)
        ks = rng.choice((1, 3, 3, 5))
        s = rng.choice((1, 1, 2))
        p = rng.choice((0, ks // 2))
        if rng.random() < 0.2:
            k = g = c
        else:
            k, g = _loguniform(rng, 4, 64), 1
        if (hw + 2 * p - ks) // s + 1 < 1:
            continue
        conv.add((1, c, hw, hw, k, ks, s, p, g))
    return {"matmul": sorted(mm), "conv2d": sorted(conv)}


def _zoo() -> dict[str, list[tuple]]:
    shapes: dict[str, set] = {"matmul": set(), "conv2d": set()}
    eps = list(entry_points(group="mico.plans"))
    for ep in eps:
        if ep.name != "zoo":
            continue
        for op, shape in ep.load()():
            shapes[op].add(tuple(shape))
    if not any(shapes.values()):
        raise UserError("the zoo plan needs the built-in models (package mpq); reinstall mico-hil.")
    return {op: sorted(s) for op, s in shapes.items()}


def plan_shapes(name: str) -> dict[str, list[tuple]]:
    if name == "smoke":
        return SMOKE
    if name == "grid":
        return _grid()
    if name == "zoo":
        return _zoo()
    if name.startswith("random:"):
        parts = name.split(":")
        try:
            n = int(parts[1])
            seed = int(parts[2]) if len(parts) > 2 else 0
        except ValueError:
            n = -1
        if n < 2 or len(parts) > 3:
            raise UserError(f"plan {name!r} is malformed; use random:N[:SEED] with N >= 2.")
        return _random(n, seed)
    raise UserError(f"unknown plan {name!r}; use smoke, grid, zoo or random:N.")


def expand(name: str, pairs: Iterable[tuple[int, int]] = ALL_PAIRS, ops: Iterable[str] | None = None) -> list[KernelSpec]:
    pairs = list(pairs)
    out = []
    for op, shapes in plan_shapes(name).items():
        if ops is not None and op not in ops:
            continue
        for shape in shapes:
            for qa, qw in pairs:
                out.append(KernelSpec(op, tuple(shape), qa, qw))
    return out
