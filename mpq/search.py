"""Mixed-precision search under a HARD latency budget.

A *scheme* is one ``(qa, qw)`` pair per quant layer, bits from {1, 2, 4, 8}.
Its latency comes from a latency function over the model's KernelSpecs (a
fitted proxy); its accuracy from a quick PTQ (activation calibration on a few
training batches, optionally a very short QAT) measured on a validation split
held out from the TRAINING data -- never the test set.

Infeasible schemes (predicted latency above the budget) are never evaluated
and never enter a result: samplers resample and, failing that, *repair* a
scheme by lowering the bit-width of the layer that costs most until it fits.
Evaluated schemes are cached; every searcher is deterministic for a seed.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
import logging
import math
import re
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from harness.errors import UserError

from .evaluate import LatencyFn
from .models import QuantModel, Scheme, normalize_scheme
from .train import accuracy, qat, quantize

log = logging.getLogger(__name__)

BITS = (1, 2, 4, 8)
SEARCHERS = ("random", "evolution")


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


# ---- latency and accuracy of a scheme ------------------------------------------------

class SchemeLatency:
    """Predicted latency of a scheme for a model (cached): ``(per_layer, total)``."""

    def __init__(self, model: QuantModel, latency_fn: LatencyFn, batch: int = 1):
        self.shapes = model.layer_shapes(batch)
        self.latency_fn = latency_fn
        self.n_layers = len(self.shapes)
        self._cache: dict[Scheme, tuple[np.ndarray, float]] = {}

    def specs(self, scheme: Scheme):
        from harness.spec import KernelSpec

        return [KernelSpec(op, shape, qa, qw) for (op, shape), (qa, qw) in zip(self.shapes, scheme)]

    def __call__(self, scheme: Sequence[Sequence[int]]) -> tuple[np.ndarray, float]:
        key = normalize_scheme(scheme, self.n_layers)
        hit = self._cache.get(key)
        if hit is None:
            per, total = self.latency_fn(self.specs(key))
            hit = (np.asarray(per, dtype=np.float64), float(total))
            self._cache[key] = hit
        return hit

    def uniform(self, qa: int, qw: int) -> float:
        return self(((qa, qw),) * self.n_layers)[1]

    def fastest(self) -> tuple[Scheme, float]:
        """The scheme with the lowest predicted latency: each layer at its
        fastest pair (the model is a sum over layers).  Not always all-1x1."""
        pairs = [(a, w) for a in (1, 2, 4, 8) for w in (1, 2, 4, 8)]
        per = {p: self(((p),) * self.n_layers)[0] for p in pairs}
        best = tuple(min(pairs, key=lambda p: (per[p][i], p)) for i in range(self.n_layers))
        return best, self(best)[1]


class PTQEvaluator:
    """Accuracy of a scheme: a BN-folded copy of the float model is quantised,
    calibrated on ``calib_batches`` training batches, optionally fine-tuned for
    ``qat_steps`` steps, and scored on the validation split.  Cached."""

    def __init__(self, float_model: QuantModel, x_train: torch.Tensor, y_train: torch.Tensor,
                 x_val: torch.Tensor, y_val: torch.Tensor, calib_batches: int = 4, calib_batch_size: int = 128,
                 qat_steps: int = 0, qat_lr: float = 1e-3, qat_batch_size: int = 64, seed: int = 0):
        from .fold import fold_model

        self.base = copy.deepcopy(float_model).eval()
        fold_model(self.base)
        self.x_train, self.y_train = x_train, y_train
        self.x_val, self.y_val = x_val, y_val
        self.calib_batches, self.calib_batch_size = calib_batches, calib_batch_size
        self.qat_steps, self.qat_lr, self.qat_batch_size = qat_steps, qat_lr, qat_batch_size
        self.seed = seed
        self.cache: dict[Scheme, float] = {}

    def model_for(self, scheme: Sequence[Sequence[int]]) -> QuantModel:
        torch.manual_seed(self.seed)
        m = quantize(self.base, scheme, self.x_train, self.calib_batches, self.calib_batch_size, self.seed)
        if self.qat_steps > 0:
            qat(m, self.x_train, self.y_train, epochs=None, steps=self.qat_steps, lr=self.qat_lr,
                batch_size=self.qat_batch_size, seed=self.seed)
        return m

    def __call__(self, scheme: Sequence[Sequence[int]]) -> float:
        key = tuple((int(a), int(w)) for a, w in scheme)
        if key not in self.cache:
            self.cache[key] = accuracy(self.model_for(key), self.x_val, self.y_val)
        return self.cache[key]


# ---- searchers ----------------------------------------------------------------------

AccuracyFn = Callable[[Scheme], float]
SchemeLatencyFn = Callable[[Scheme], tuple[np.ndarray, float]]


class Searcher(ABC):
    """Base: owns the budget check, the evaluation cache and the bookkeeping.
    Subclasses implement :meth:`_run`."""

    name = "base"

    def __init__(self, n_layers: int, accuracy_fn: AccuracyFn, latency_fn: SchemeLatencyFn, budget: float,
                 n_evals: int = 40, seed: int = 0, bits: Sequence[int] = BITS, progress: bool = False):
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
        self.order: list[Candidate] = []
        self.rejected = 0
        self._bar = None

    # -- helpers --
    def latency(self, scheme: Scheme) -> float:
        return float(self.latency_fn(scheme)[1])

    def feasible(self, scheme: Scheme) -> bool:
        ok = self.latency(scheme) <= self.budget
        if not ok:
            self.rejected += 1
        return ok

    @property
    def remaining(self) -> int:
        return self.n_evals - len(self.order)

    def random_scheme(self) -> Scheme:
        b = self.bits
        return tuple((b[self.rng.integers(len(b))], b[self.rng.integers(len(b))]) for _ in range(self.n_layers))

    def _layer_table(self) -> dict[tuple[int, int], np.ndarray]:
        """Predicted latency of every layer at every (qa, qw) pair.  The latency
        model is a sum over layers, so 16 uniform schemes give the whole table."""
        if getattr(self, "_table", None) is None:
            self._table = {(a, w): np.asarray(self.latency_fn(((a, w),) * self.n_layers)[0], dtype=np.float64)
                           for a in self.bits for w in self.bits}
        return self._table

    def repair(self, scheme: Scheme) -> Scheme | None:
        """Make a scheme fit the budget: each step moves the layer with the
        largest predicted latency that can still get faster to its next faster
        (qa, qw) pair.  Measured latency is not monotone in the bit-widths on
        every target (a host's 1x1 kernel with padding can be slower than 8x8),
        so "faster" is what the latency model says, not "fewer bits".
        None if even the fastest pairs cannot reach the budget."""
        table = self._layer_table()
        s = [tuple(p) for p in scheme]
        for _ in range(len(table) * self.n_layers + 1):
            key = tuple(s)
            per, total = self.latency_fn(key)
            if total <= self.budget:
                return key
            order = np.argsort(-np.asarray(per), kind="stable")
            for li in order:
                cur = table[s[li]][li]
                faster = [(table[p][li], p) for p in table if table[p][li] < cur]
                if not faster:
                    continue
                s[li] = max(faster)[1]
                break
            else:
                return None
        return None

    def random_feasible(self, tries: int = 200) -> Scheme | None:
        """A feasible, not yet evaluated scheme: resample, then repair."""
        for _ in range(tries):
            s = self.random_scheme()
            if s not in self.evaluated and self.feasible(s):
                return s
        for _ in range(tries):
            s = self.repair(self.random_scheme())
            if s is not None and s not in self.evaluated:
                return s
        return None

    def evaluate(self, scheme: Scheme) -> Candidate:
        hit = self.evaluated.get(scheme)
        if hit is not None:
            return hit
        per, total = self.latency_fn(scheme)
        if total > self.budget:   # never let an infeasible scheme in
            raise AssertionError(f"infeasible scheme {scheme} reached evaluation")
        acc = float(self.accuracy_fn(scheme))
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


class RandomSearcher(Searcher):
    """Uniform random schemes that satisfy the budget (resample / repair)."""

    name = "random"

    def _run(self) -> None:
        while self.remaining > 0:
            s = self.random_feasible()
            if s is None:
                log.info("random search: no new feasible scheme found; stopping after %d", len(self.order))
                break
            self.evaluate(s)


class EvolutionSearcher(Searcher):
    """Steady-state evolution: a population of the best ``population``
    candidates (elitism), parents by tournament, uniform per-layer crossover,
    mutation of one layer's bits, repair to the budget, no re-evaluations.
    The initial population holds the feasible uniform schemes 8x8, 4x8, 4x4,
    2x4, 2x2 (highest precision first) topped up with random feasible ones."""

    name = "evolution"
    SEEDS = ((8, 8), (4, 8), (4, 4), (2, 4), (2, 2))

    def __init__(self, *args, population: int = 10, tournament: int = 3, p_crossover: float = 0.6, **kw):
        super().__init__(*args, **kw)
        self.population = max(2, int(population))
        self.tournament = max(1, int(tournament))
        self.p_crossover = float(p_crossover)

    def _tournament(self, pop: list[Candidate]) -> Candidate:
        idx = self.rng.choice(len(pop), size=min(self.tournament, len(pop)), replace=False)
        return min((pop[i] for i in idx), key=_rank_key)

    def _mutate(self, s: Scheme) -> Scheme:
        out = [list(p) for p in s]
        li = int(self.rng.integers(self.n_layers))
        which = int(self.rng.integers(3))     # 0: qa, 1: qw, 2: both
        for j in ((0,), (1,), (0, 1))[which]:
            choices = [b for b in self.bits if b != out[li][j]]
            out[li][j] = choices[int(self.rng.integers(len(choices)))]
        return tuple(tuple(p) for p in out)

    def _crossover(self, a: Scheme, b: Scheme) -> Scheme:
        mask = self.rng.random(self.n_layers) < 0.5
        return tuple(a[i] if mask[i] else b[i] for i in range(self.n_layers))

    def _child(self, pop: list[Candidate]) -> Scheme | None:
        for _ in range(50):
            p1 = self._tournament(pop)
            if len(pop) > 1 and self.rng.random() < self.p_crossover:
                child = self._crossover(p1.bits, self._tournament(pop).bits)
                if child in self.evaluated:
                    child = self._mutate(child)
            else:
                child = self._mutate(p1.bits)
            if not self.feasible(child):
                child = self.repair(child)
            if child is not None and child not in self.evaluated:
                return child
        return self.random_feasible()

    def _run(self) -> None:
        pop: list[Candidate] = []
        for qa, qw in self.SEEDS:
            if len(pop) >= self.population or self.remaining <= 0:
                break
            s = ((qa, qw),) * self.n_layers
            if s not in self.evaluated and self.feasible(s):
                pop.append(self.evaluate(s))
        while len(pop) < self.population and self.remaining > 0:
            s = self.random_feasible()
            if s is None:
                break
            pop.append(self.evaluate(s))
        while self.remaining > 0 and pop:
            s = self._child(pop)
            if s is None:
                log.info("evolution: no new feasible scheme found; stopping after %d", len(self.order))
                break
            pop.append(self.evaluate(s))
            pop = sorted(pop, key=_rank_key)[:self.population]


def make_searcher(kind: str, *args, **kw) -> Searcher:
    if kind == "random":
        kw.pop("population", None)
        return RandomSearcher(*args, **kw)
    if kind == "evolution":
        return EvolutionSearcher(*args, **kw)
    raise UserError(f"unknown searcher {kind!r}; use one of {', '.join(SEARCHERS)}.")


def model_budget(model: QuantModel, latency_fn: LatencyFn, budget_text: str | float, batch: int = 1,
                 unit: str = "") -> Budget:
    """Parse a budget against the model's all-8x8 and fastest predicted latencies
    (only the layer shapes matter: an untrained model will do)."""
    lat = SchemeLatency(model, latency_fn, batch)
    return parse_budget(budget_text, lat.uniform(8, 8), lat.fastest()[1], unit)


def run_search(model: QuantModel, accuracy_fn: AccuracyFn, latency_fn: LatencyFn, budget_text: str | float | Budget,
               searcher: str = "evolution", n_evals: int = 40, seed: int = 0, batch: int = 1,
               unit: str = "", progress: bool = False, **kw) -> tuple[SearchResult, Budget]:
    """Parse the budget (unless already a :class:`Budget`) against the model's
    all-8x8 and fastest latencies and run a searcher."""
    lat = SchemeLatency(model, latency_fn, batch)
    budget = budget_text if isinstance(budget_text, Budget) else \
        parse_budget(budget_text, lat.uniform(8, 8), lat.fastest()[1], unit)
    if searcher not in SEARCHERS:
        raise UserError(f"unknown searcher {searcher!r}; use one of {', '.join(SEARCHERS)}.")
    s = make_searcher(searcher, lat.n_layers, accuracy_fn, lat, budget.value, n_evals=n_evals, seed=seed,
                      progress=progress, **kw)
    return s.search(), budget
