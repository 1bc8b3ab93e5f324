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

from harness.errors import UserError
from kernels.reference import BITS

from ..evaluate import LatencyFn
from ..models import QuantModel
from .base import (AccuracyFn, Budget, Candidate, SchemeLatencyFn, SearchResult, Searcher, best_candidate,
                   hypervolume, parse_budget, pareto_front)
from .evaluator import PTQEvaluator
from .evolution import EvolutionSearcher
from .ilp import ILPSearcher
from .nsga2 import NSGA2Searcher
from .latency import SchemeLatency
from .random_search import RandomSearcher
from .surrogate import SurrogateSearcher

#: searcher name -> class; a new searcher registers here
SEARCHER_CLASSES: dict[str, type[Searcher]] = {"random": RandomSearcher, "evolution": EvolutionSearcher,
                                                "ilp": ILPSearcher, "surrogate": SurrogateSearcher,
                                                "nsga2": NSGA2Searcher}
SEARCHERS = tuple(SEARCHER_CLASSES)

__all__ = ["AccuracyFn", "Budget", "Candidate", "EvolutionSearcher", "ILPSearcher", "NSGA2Searcher", "PTQEvaluator", "RandomSearcher",
           "SEARCHERS", "SchemeLatency", "SchemeMemory", "SurrogateSearcher", "SchemeLatencyFn", "SearchResult", "Searcher", "best_candidate", "hypervolume",
           "make_searcher", "model_budget", "parse_budget", "pareto_front", "run_search"]


def make_searcher(kind: str, *args, **kw) -> Searcher:
    cls = SEARCHER_CLASSES.get(kind)
    if cls is None:
        raise UserError(f"unknown searcher {kind!r}; use one of {', '.join(SEARCHERS)}.")
    if cls is not EvolutionSearcher:
        kw.pop("population", None)
    return cls(*args, **kw)


def model_budget(model: QuantModel, latency_fn: LatencyFn, budget_text: str | float, batch: int = 1,
                 unit: str = "") -> Budget:
    """Parse a budget against the model's all-8x8 and fastest predicted latencies
    (only the layer shapes matter: an untrained model will do)."""
    lat = SchemeLatency(model, latency_fn, batch)
    return parse_budget(budget_text, lat.uniform(8, 8), lat.fastest()[1], unit)


class SchemeMemory:
    """Weight bytes and RAM of a scheme's generated C, from the structural graph (cached)."""

    def __init__(self, model: QuantModel):
        self.model = model
        self._cache: dict = {}

    def __call__(self, scheme) -> dict:
        from ..memory import graph_memory

        key = tuple(tuple(p) for p in scheme)
        if key not in self._cache:
            self._cache[key] = graph_memory(self.model.lower(key))
        return self._cache[key]


def run_search(model: QuantModel, accuracy_fn: AccuracyFn, latency_fn: LatencyFn, budget_text: str | float | Budget,
               searcher: str = "evolution", n_evals: int = 40, seed: int = 0, batch: int = 1,
               unit: str = "", progress: bool = False, size_budget: int | None = None,
               ram_budget: int | None = None, **kw) -> tuple[SearchResult, Budget]:
    """Parse the budget (unless already a :class:`Budget`) against the model's
    all-8x8 and fastest latencies and run a searcher.  ``size_budget`` (weight bytes)
    and ``ram_budget`` (RUN_MODEL's arena bytes) bound the generated C as well."""
    lat = SchemeLatency(model, latency_fn, batch)
    budget = budget_text if isinstance(budget_text, Budget) else \
        parse_budget(budget_text, lat.uniform(8, 8), lat.fastest()[1], unit)
    if searcher not in SEARCHERS:
        raise UserError(f"unknown searcher {searcher!r}; use one of {', '.join(SEARCHERS)}.")
    mem_budget = {k: v for k, v in (("weight_bytes", size_budget), ("ram_bytes", ram_budget)) if v is not None}
    memory = SchemeMemory(model)
    if mem_budget:
        fastest = lat.fastest()[0]
        smallest = min((((a, w),) * lat.n_layers for a in BITS for w in BITS),
                       key=lambda s: sum(memory(s)[k] / v for k, v in mem_budget.items()))
        for k, v in mem_budget.items():
            least = min(memory(fastest)[k], memory(smallest)[k])
            if least > v:
                what = "--size-budget" if k == "weight_bytes" else "--ram-budget"
                raise UserError(f"{what} {int(v)} bytes is below what the smallest scheme needs ({least} bytes).")
    s = make_searcher(searcher, lat.n_layers, accuracy_fn, lat, budget.value, n_evals=n_evals, seed=seed,
                      progress=progress, memory_fn=memory, memory_budget=mem_budget, **kw)
    return s.search(), budget
