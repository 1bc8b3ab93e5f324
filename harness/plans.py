"""Sweep plans: which kernel shapes to measure.

A plan names shapes per op; crossed with every (qa, qw) pair the target
supports they become kernel specs.  Plans are lazy: `parse_plan` checks the
text and nothing else, `Plan.specs` is an iterator and `Plan.size` is
arithmetic, so ``random:100000000`` starts streaming at once and in bounded
memory.  `zoo` shapes come from the built-in models, which live in mpq/ --
harness finds them through the ``mico.plans`` entry-point group.

``random:N[:SEED]``: N seeded shapes, half matmul then half conv2d, log-uniform
sizes, drawn from one seeded stream in the same order as always (a plan names
the same shapes it did before, so stores resume).  A shape that is among the
last `DEDUP_WINDOW` shapes of its op is drawn again, so plans up to that size
hold distinct shapes; beyond it (where the shape space itself runs out) a
repeat can occur and the sweep skips it as already stored.

``adaptive:N[:SEED]``: N shapes (half matmul, half conv2d, as ``random:N``)
chosen one batch at a time by the sweep itself (harness/adaptive.py) among
candidates within the model zoo's layer-shape ranges (harness/zoo_ranges.py);
it has no fixed spec list, so `Plan.specs` refuses it.  ``zoo-random:N[:SEED]``
is its candidates without the choosing: the first shapes of the same seeded
pool (the adaptive plan's first shapes, and its baseline).
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass
from importlib.metadata import entry_points
from itertools import islice
from typing import Iterable, Iterator

from .errors import UserError
from .spec import ALL_OPS, BITS, OPS, KernelSpec

ALL_PAIRS = tuple((a, w) for a in BITS for w in BITS)

SMOKE = {
    "matmul": [(1, 8, 40), (3, 5, 64)],
    "conv2d": [(1, 3, 6, 6, 4, 3, 1, 1, 1), (1, 4, 5, 5, 4, 3, 2, 0, 4)],
}

DEDUP_WINDOW = 1 << 16      # recent shapes per op remembered for de-duplication
MAX_REDRAWS = 1000          # a shape space nearly exhausted by the window: accept a repeat


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


def _draw_matmul(rng: random.Random) -> tuple:
    return (_loguniform(rng, 1, 64), _loguniform(rng, 8, 512), _loguniform(rng, 8, 2048))


def _draw_conv(rng: random.Random) -> tuple | None:
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
        return None
    return (1, c, hw, hw, k, ks, s, p, g)


def _distinct(rng: random.Random, draw, n: int) -> Iterator[tuple]:
    """n shapes from `draw`, none repeating one of the last DEDUP_WINDOW (memory: the window)."""
    recent: set[tuple] = set()
    order: deque[tuple] = deque()
    for _ in range(n):
        shape = None
        for _ in range(MAX_REDRAWS):
            shape = draw(rng)
            if shape is not None and shape not in recent:
                break
        while shape is None:
            shape = draw(rng)
        if shape not in recent:
            recent.add(shape)
            order.append(shape)
            if len(order) > DEDUP_WINDOW:
                recent.discard(order.popleft())
        yield shape


def random_shapes(n: int, seed: int = 0) -> Iterator[tuple[str, tuple]]:
    """(op, shape) for ``random:n:seed``: the matmuls, then the conv2ds, from one seeded stream."""
    rng = random.Random(seed)
    n_mm = (n + 1) // 2
    for shape in _distinct(rng, _draw_matmul, n_mm):
        yield "matmul", shape
    for shape in _distinct(rng, _draw_conv, n - n_mm):
        yield "conv2d", shape


#: out widths a layer-mode spec of a plan without models is measured at: int32 logits, the
#: sign path, and the requantisation (2, 4 and 8 bits run the same code)
LAYER_OUT_BITS = (0, 1, 8)


def _model_plan(kind: str, arg: str | None = None) -> list[KernelSpec]:
    """Layer-mode specs of the built-in models (mpq/) through the ``mico.plans`` entry points."""
    for ep in entry_points(group="mico.plans"):
        if ep.name == kind:
            return list(ep.load()(arg) if arg is not None else ep.load()())
    raise UserError("layer plans of models need the built-in models (package mpq); reinstall mico-hil.")


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


@dataclass(frozen=True)
class Plan:
    """A parsed plan: its shapes per op, produced on demand."""

    name: str
    n_random: int = 0
    seed: int = 0

    @property
    def is_random(self) -> bool:
        return self.name.startswith("random:")

    @property
    def is_adaptive(self) -> bool:
        return self.name.startswith("adaptive:")

    @property
    def is_zoo_random(self) -> bool:
        return self.name.startswith("zoo-random:")

    def _listed(self) -> dict[str, list[tuple]]:
        if self.name == "smoke":
            return SMOKE
        if self.name == "grid":
            return _grid()
        return _zoo()

    def count(self, op: str) -> int:
        """How many shapes of `op` the plan has (no shape is drawn)."""
        if self.is_random or self.is_adaptive or self.is_zoo_random:
            n_mm = (self.n_random + 1) // 2
            return n_mm if op == "matmul" else self.n_random - n_mm
        return len(self._listed().get(op, ()))

    def shapes(self, op: str) -> Iterator[tuple]:
        if self.is_random:
            # the conv2d shapes continue the matmul draws' stream: those are drawn (not kept) first
            return (shape for o, shape in random_shapes(self.n_random, self.seed) if o == op)
        if self.is_zoo_random:
            from .zoo_ranges import candidates

            return iter(candidates(op, self.count(op), self.seed) if op in ("matmul", "conv2d") else ())
        return iter(self._listed().get(op, ()))

    @property
    def is_model(self) -> bool:
        return self.name.startswith("model:")

    def _layer_specs(self, pairs, ops) -> list[KernelSpec]:
        """Layer-mode specs that come from models: every layer of every zoo model (or of one
        model) at every bit-width it can have in a scheme, as the model runs it."""
        specs = _model_plan("zoo-layers") if self.name == "zoo" else _model_plan("model", self.name[6:])
        pairs, ops = set(pairs), set(_ops(ops, ALL_OPS))
        return [s for s in specs if s.op in ops and (not s.has_weights or (s.qa, s.qw) in pairs)]

    def size(self, pairs: Iterable[tuple[int, int]] = ALL_PAIRS, ops: Iterable[str] | None = None,
             mode: str = "kernel") -> int:
        """Number of specs `specs` yields (by arithmetic, but for model-derived layer plans)."""
        pairs = list(pairs)
        if mode == "layer" and (self.name == "zoo" or self.is_model):
            return len(self._layer_specs(pairs, ops))
        if self.is_model:
            return 0
        n = len(pairs) * sum(self.count(op) for op in _ops(ops))
        return n * len(LAYER_OUT_BITS) if mode == "layer" else n

    def specs(self, pairs: Iterable[tuple[int, int]] = ALL_PAIRS, ops: Iterable[str] | None = None,
              mode: str = "kernel") -> Iterator[KernelSpec]:
        """Every shape crossed with every pair, op by op; in layer mode also with every
        output width (LAYER_OUT_BITS, or the widths a model's layers really have)."""
        pairs = list(pairs)
        if mode == "layer" and (self.name == "zoo" or self.is_model):
            yield from self._layer_specs(pairs, ops)
            return
        if self.is_model:
            raise UserError(f"plan {self.name!r} lists a model's layers: measure it with the layer mode.")
        if self.is_adaptive:
            raise UserError(f"plan {self.name!r} chooses its shapes while it measures; run it with `mico sweep`.")
        for op in _ops(ops):
            for shape in self.shapes(op):
                for qa, qw in pairs:
                    if mode == "layer":       # a model runs one image at a time: N = 1
                        for ob in LAYER_OUT_BITS:
                            yield KernelSpec(op, (1, *shape[1:]), qa, qw, "layer", ob)
                    else:
                        yield KernelSpec(op, tuple(shape), qa, qw)


def _ops(ops: Iterable[str] | None, known: Iterable[str] = OPS) -> list[str]:
    return [op for op in known if ops is None or op in set(ops)]


def parse_plan(name: str) -> Plan:
    """Check a plan's text (nothing is drawn or loaded); one sentence if it is malformed."""
    if name in ("smoke", "grid", "zoo"):
        return Plan(name)
    if name.startswith("model:") and len(name) > 6:
        return Plan(name)
    for kind, least in (("random", 2), ("adaptive", 1), ("zoo-random", 1)):
        if not name.startswith(kind + ":"):
            continue
        parts = name.split(":")
        try:
            n = int(parts[1])
            seed = int(parts[2]) if len(parts) > 2 else 0
        except ValueError:
            n = -1
        if n < least or len(parts) > 3:
            raise UserError(f"plan {name!r} is malformed; use {kind}:N[:SEED] with N >= {least} shapes.")
        return Plan(name, n, seed)
    raise UserError(f"unknown plan {name!r}; use smoke, grid, zoo, random:N, zoo-random:N, adaptive:N or model:NAME.")


def iter_specs(name: str, pairs: Iterable[tuple[int, int]] = ALL_PAIRS, ops: Iterable[str] | None = None
               ) -> Iterator[KernelSpec]:
    return parse_plan(name).specs(pairs, ops)


def expand(name: str, pairs: Iterable[tuple[int, int]] = ALL_PAIRS, ops: Iterable[str] | None = None) -> list[KernelSpec]:
    """The whole plan as a list (small plans, tests); sweeps use `Plan.specs`."""
    return list(iter_specs(name, pairs, ops))


def batched(it: Iterable, n: int) -> Iterator[list]:
    it = iter(it)
    while batch := list(islice(it, n)):
        yield batch
