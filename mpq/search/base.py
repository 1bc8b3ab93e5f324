"""Search records, the latency budget and the Searcher base class.

Infeasible schemes (predicted latency above the budget) are never evaluated
and never enter a result: samplers resample and, failing that, *repair* a
scheme by lowering the bit-width of the layer that costs most until it fits.
Evaluated schemes are cached; every searcher is deterministic for a seed.

Searchers hand schemes whose choice does not depend on each other's accuracy
to `Searcher.evaluate_many` as one batch (random search's schemes, the
initial population, a round of children, an NSGA-II generation): an
accuracy function with a ``many`` method (mpq.search.parallel) scores the
batch in parallel, and the candidates are recorded in proposal order, so the
result is the serial run's.
"""

from __future__ import annotations

import logging
import math
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from harness.errors import UserError
from kernels.reference import BITS

from ..models import Scheme

log = logging.getLogger(__name__)

# ---- records -------------------------------------------------------------------

@dataclass
class Candidate:
    bits: Scheme
    accuracy: float
    latency: float
    per_layer: list[float] = field(default_factory=list)
    index: int = 0          # evaluation order (0-based)

    def to_dict(self) -> dict:
        return {"bits": [list(p) for p in self.bits], "accuracy": float(self.accuracy),
                "latency": float(self.latency)}


def _rank_key(c: Candidate):
    """Better first: higher accuracy, then lower latency, then earlier."""
    return (-c.accuracy, c.latency, c.index)


def pareto_front(cands: Sequence[Candidate]) -> list[Candidate]:
    """Non-dominated candidates (max accuracy, min latency), by rising latency.
    Of candidates with identical (latency, accuracy) the first evaluated is kept."""
    out: list[Candidate] = []
    best_acc = -math.inf
    for c in sorted(cands, key=lambda c: (c.latency, -c.accuracy, c.index)):
        if c.accuracy > best_acc:
            out.append(c)
            best_acc = c.accuracy
    return out


def hypervolume(points: Sequence[tuple[float, float]], ref_accuracy: float, budget: float) -> float:
    """Area dominated by (latency, accuracy) points in the box latency in [0, budget],
    accuracy above ``ref_accuracy``, with latency normalised by the budget (so the
    number is comparable across targets and units)."""
    pts = sorted((lat / budget, acc) for lat, acc in points if lat <= budget and acc > ref_accuracy)
    front, best = [], ref_accuracy
    for lat, acc in pts:
        if acc > best:
            front.append((lat, acc))
            best = acc
    area = 0.0
    for k, (lat, acc) in enumerate(front):
        nxt = front[k + 1][0] if k + 1 < len(front) else 1.0
        area += (nxt - lat) * (acc - ref_accuracy)
    return area


def best_candidate(cands: Sequence[Candidate]) -> Candidate | None:
    """Highest accuracy; ties -> lower latency (then earlier)."""
    return min(cands, key=_rank_key) if cands else None


@dataclass
class SearchResult:
    candidates: list[Candidate]
    pareto: list[Candidate]
    best: Candidate | None
    budget: float
    evaluations: int
    searcher: str
    rejected: int = 0       # infeasible proposals that were never evaluated

    def to_dict(self) -> dict:
        return {"searcher": self.searcher, "budget": self.budget, "evaluations": self.evaluations,
                "rejected": self.rejected, "best": self.best.to_dict() if self.best else None,
                "pareto": [c.to_dict() for c in self.pareto],
                "candidates": [c.to_dict() for c in self.candidates]}


# ---- budget ----------------------------------------------------------------------

@dataclass(frozen=True)
class Budget:
    text: str
    value: float
    unit: str

    def to_dict(self) -> dict:
        return {"text": self.text, "value": self.value, "unit": self.unit}


_PCT = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*%\s*$")


def parse_budget(text: str | float, ref_latency: float, min_latency: float, unit: str = "") -> Budget:
    """``"60%"`` -> 60 % of ``ref_latency`` (the all-8x8 scheme's predicted
    latency); a plain number -> an absolute budget in the proxy's unit.
    A budget below ``min_latency`` (the fastest scheme) is a UserError."""
    raw = str(text).strip()
    m = _PCT.match(raw)
    if m:
        value = float(m.group(1)) / 100.0 * float(ref_latency)
    else:
        try:
            value = float(raw)
        except ValueError:
            raise UserError(f"latency budget {raw!r} is neither a number (in {unit or 'the proxy unit'}) "
                            f"nor a percentage like 60%.") from None
    if not math.isfinite(value) or value <= 0:
        raise UserError(f"latency budget {raw!r} must be a positive, finite latency.")
    if value < min_latency:
        raise UserError(f"latency budget {raw} ({value:.6g} {unit}) is below the smallest predicted latency "
                        f"{min_latency:.6g} {unit} (every layer at its fastest pair); raise --latency-budget.".replace("  ", " "))
    return Budget(raw, float(value), unit)


# ---- searchers ----------------------------------------------------------------------

AccuracyFn = Callable[[Scheme], float]
SchemeLatencyFn = Callable[[Scheme], tuple[np.ndarray, float]]


class Searcher(ABC):
    """Base: owns the budget check, the evaluation cache and the bookkeeping.
    Subclasses implement :meth:`_run`."""

    name = "base"

    def __init__(self, n_layers: int, accuracy_fn: AccuracyFn, latency_fn: SchemeLatencyFn, budget: float,
                 n_evals: int = 40, seed: int = 0, bits: Sequence[int] = BITS, progress: bool = False,
                 memory_fn: Callable[[Scheme], dict] | None = None, memory_budget: dict | None = None,
                 round_size: int = 1):
        if n_evals < 1:
            raise UserError(f"--budget-evals must be at least 1, got {n_evals}.")
        self.n_layers = int(n_layers)
        self.accuracy_fn = accuracy_fn
        self.latency_fn = latency_fn
        self.budget = float(budget)
        self.n_evals = int(n_evals)
        self.bits = tuple(sorted(int(b) for b in bits))
        self.rng = np.random.default_rng(seed)
        self.progress = progress
        self.evaluated: dict[Scheme, Candidate] = {}
        # proposed for the batch being assembled, not yet scored: never proposed twice
        self.pending: set[Scheme] = set()
        if round_size < 1:
            raise UserError(f"--round-size must be at least 1, got {round_size}.")
        # schemes proposed per round by the steady-state loops (evolution, surrogate): 1 is
        # one at a time; more lets a cluster score a round side by side (the result depends
        # on the round size, never on where the rounds run)
        self.round_size = int(round_size)
        self.order: list[Candidate] = []
        self.rejected = 0
        self._bar = None
        # budgets beyond latency: {"weight_bytes": n, "ram_bytes": n} checked by memory_fn(scheme)
        self.memory_fn = memory_fn
        self.memory_budget = {k: float(v) for k, v in (memory_budget or {}).items() if v is not None}

    # -- helpers --
    def latency(self, scheme: Scheme) -> float:
        return float(self.latency_fn(scheme)[1])

    def over_memory(self, scheme: Scheme) -> float:
        """How far a scheme is over the memory budgets (sum of relative excesses; 0: within)."""
        if not self.memory_budget or self.memory_fn is None:
            return 0.0
        mem = self.memory_fn(scheme)
        return float(sum(max(0.0, mem[k] / v - 1.0) for k, v in self.memory_budget.items()))

    def feasible(self, scheme: Scheme) -> bool:
        ok = self.latency(scheme) <= self.budget and self.over_memory(scheme) == 0.0
        if not ok:
            self.rejected += 1
        return ok

    @property
    def remaining(self) -> int:
        return self.n_evals - len(self.order) - len(self.pending)

    def known(self, scheme: Scheme) -> bool:
        """Evaluated already, or proposed in the batch being assembled."""
        return scheme in self.evaluated or scheme in self.pending

    def propose(self, scheme: Scheme) -> Scheme:
        """Put a scheme into the batch being assembled (it counts against the budget)."""
        self.pending.add(scheme)
        return scheme

    def random_scheme(self) -> Scheme:
        b = self.bits
        return tuple((b[self.rng.integers(len(b))], b[self.rng.integers(len(b))]) for _ in range(self.n_layers))

    def repair(self, scheme: Scheme) -> Scheme | None:
        """Make a scheme fit the budget with the smallest steps: the layer that costs
        most moves to its next faster (qa, qw) pair -- the move that saves least while
        still saving -- until the budget holds, so a repaired scheme keeps as many
        bits as it can.

        Steps are priced by the per-layer table of `chain_costs` (a layer's cost
        depends on its pair and on the width it writes, the next layer's qa --
        a table per pair alone is wrong in layer mode), and measured latency is
        not monotone in the bit-widths on every target (a host's 1x1 kernel with
        padding can be slower than 8x8), so "faster" is what the latency model
        says, not "fewer bits".  The result is priced as a whole; if the table
        was optimistic (graphs that are not chains) the steps go on towards a
        tighter target.  None if even the fastest scheme misses the budget."""
        from .latency import chain_costs, chain_estimate, fastest_scheme

        cost = chain_costs(self.latency_fn, self.n_layers, self.bits)
        pairs = [(a, w) for a in self.bits for w in self.bits]
        n = self.n_layers
        last_na = min(k[1] for k in cost[-1]) if n else 0
        s = [tuple(p) for p in scheme]
        target = self.budget
        for _ in range(4):
            est = chain_estimate(cost, s)
            while est > target:
                per = [cost[i][(s[i], s[i + 1][0] if i + 1 < n else last_na)] for i in range(n)]
                moved = False
                for li in sorted(range(n), key=lambda i: -per[i]):
                    keep = s[li]
                    steps = []
                    for p in pairs:
                        if p != keep:
                            s[li] = p
                            e = chain_estimate(cost, s)
                            if e < est:
                                steps.append((est - e, p, e))
                    s[li] = keep
                    if steps:
                        # ties (equal BOPs: 2x4, 4x2, 1x8, 8x1): the pair with more activation bits
                        _, p, est = min(steps, key=lambda t: (t[0], (-t[1][0], -t[1][1])))
                        s[li] = p
                        moved = True
                        break
                if not moved:
                    break
            total = self.latency_fn(tuple(s))[1]
            if total <= self.budget:
                return self._repair_memory(tuple(s))
            target *= self.budget / total
        fast, t = fastest_scheme(self.latency_fn, self.n_layers, self.bits)
        return self._repair_memory(fast) if t <= self.budget else None

    def _repair_memory(self, scheme: Scheme) -> Scheme | None:
        """Lower bits until the memory budgets hold too: each step takes the single-layer
        move to a narrower pair that cuts the excess most (ties: the faster scheme)."""
        s = list(scheme)
        for _ in range(2 * len(self.bits) * self.n_layers + 1):
            over = self.over_memory(tuple(s))
            if over == 0.0:
                return tuple(s) if self.latency(tuple(s)) <= self.budget else None
            moves = []
            for i, (a, w) in enumerate(s):
                for a2 in self.bits:
                    for w2 in self.bits:
                        if (a2, w2) != (a, w) and a2 <= a and w2 <= w:
                            t = tuple(s[:i] + [(a2, w2)] + s[i + 1:])
                            moves.append((self.over_memory(t), self.latency(t), t))
            if not moves:
                return None
            best = min(moves, key=lambda m: (m[0], m[1]))
            if best[0] >= over:
                return None
            s = list(best[2])
        return None

    def random_feasible(self, tries: int = 200) -> Scheme | None:
        """A feasible, not yet evaluated scheme: resample, then repair."""
        for _ in range(tries):
            s = self.random_scheme()
            if not self.known(s) and self.feasible(s):
                return s
        for _ in range(tries):
            s = self.repair(self.random_scheme())
            if s is not None and not self.known(s):
                return s
        return None

    def evaluate(self, scheme: Scheme) -> Candidate:
        return self.evaluate_many([scheme])[0]

    def evaluate_many(self, schemes: Sequence[Scheme]) -> list[Candidate]:
        """The candidates of `schemes`, in order: the new ones scored as one batch (in
        parallel where the accuracy function has ``many``), recorded in proposal order."""
        new: list[Scheme] = []
        for s in schemes:
            if s not in self.evaluated and s not in new:
                per, total = self.latency_fn(s)
                if total > self.budget or self.over_memory(s) > 0:   # never let an infeasible scheme in
                    raise AssertionError(f"infeasible scheme {s} reached evaluation")
                new.append(s)
        self.pending.difference_update(schemes)
        if len(new) > self.remaining:
            raise AssertionError(f"a batch of {len(new)} schemes overruns the evaluation budget")
        many = getattr(self.accuracy_fn, "many", None)
        if many is not None and len(new) > 1:
            for s, acc in zip(new, many(new)):
                self._record(s, float(acc))
        else:
            for s in new:       # one by one: a stopped search keeps what it scored
                self._record(s, float(self.accuracy_fn(s)))
        return [self.evaluated[s] for s in schemes]

    def _record(self, scheme: Scheme, acc: float) -> Candidate:
        per, total = self.latency_fn(scheme)
        c = Candidate(scheme, acc, float(total), [float(v) for v in per], len(self.order))
        self.evaluated[scheme] = c
        self.order.append(c)
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(best=f"{best_candidate(self.order).accuracy:.3f}")
        log.debug("eval %d %s acc=%.4f lat=%.6g", c.index, scheme, acc, total)
        return c

    def search(self) -> SearchResult:
        try:
            from tqdm import tqdm

            self._bar = tqdm(total=self.n_evals, desc=f"{self.name} search", leave=False,
                             disable=None if self.progress else True)
        except ImportError:  # pragma: no cover
            self._bar = None
        try:
            self._run()
        finally:
            if self._bar is not None:
                self._bar.close()
                self._bar = None
        cands = list(self.order)
        return SearchResult(cands, pareto_front(cands), best_candidate(cands), self.budget, len(cands),
                            self.name, self.rejected)

    @abstractmethod
    def _run(self) -> None:
        """Evaluate candidates until the evaluation budget is spent."""
