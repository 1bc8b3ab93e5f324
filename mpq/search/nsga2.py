"""``nsga2``: pymoo's NSGA-II on (accuracy, latency), for the accuracy/latency front.

Genes are indices into the bit-widths, two per layer.  Proposals over the
budget are repaired (Searcher.repair) before they are scored, so NSGA-II only
ever sees feasible schemes; the accuracy evaluations come out of the shared
budget and cache (a scheme already scored costs nothing).  pymoo is imported
when the searcher runs.
"""

from __future__ import annotations

import logging

import numpy as np

from harness.errors import UserError

from .base import Searcher

log = logging.getLogger(__name__)


class NSGA2Searcher(Searcher):
    name = "nsga2"

    def __init__(self, *args, pop_size: int = 8, **kw):
        super().__init__(*args, **kw)
        self.pop_size = max(4, int(pop_size))

    def _run(self) -> None:
        try:
            from pymoo.algorithms.moo.nsga2 import NSGA2
            from pymoo.core.problem import Problem
            from pymoo.operators.crossover.sbx import SBX
            from pymoo.operators.mutation.pm import PM
            from pymoo.operators.repair.rounding import RoundingRepair
            from pymoo.operators.sampling.rnd import IntegerRandomSampling
        except ImportError:
            raise UserError("the nsga2 searcher needs pymoo (pip install pymoo==0.6.2).") from None
        nb = len(self.bits)
        problem = Problem(n_var=2 * self.n_layers, n_obj=2, xl=0, xu=nb - 1, vtype=int)
        algo = NSGA2(pop_size=min(self.pop_size, self.n_evals), sampling=IntegerRandomSampling(),
                     crossover=SBX(prob=0.9, eta=3.0, vtype=float, repair=RoundingRepair()),
                     mutation=PM(eta=3.0, vtype=float, repair=RoundingRepair()), eliminate_duplicates=True)
        algo.setup(problem, termination=("n_gen", 10 ** 6), seed=int(self.rng.integers(1 << 30)), verbose=False)
        stale = 0
        while self.remaining > 0 and stale < 50:
            pop = algo.ask()
            X = np.asarray(pop.get("X"), dtype=int)
            F = np.zeros((len(X), 2))
            before = len(self.order)
            chosen: list = []                               # a generation is scored as one batch
            for k, x in enumerate(X):
                s = tuple((self.bits[x[2 * i]], self.bits[x[2 * i + 1]]) for i in range(self.n_layers))
                if not self.feasible(s):
                    s = self.repair(s)
                if s is None or (not self.known(s) and self.remaining <= 0):
                    chosen.append(None)
                    continue
                if not self.known(s):
                    self.propose(s)
                chosen.append(s)
            self.evaluate_many([s for s in chosen if s is not None])
            for k, s in enumerate(chosen):
                if s is None:
                    F[k] = (1.0, 2 * self.budget)          # never evaluated: dominated by everything
                    continue
                c = self.evaluated[s]
                X[k] = [self.bits.index(b) for p in s for b in p]
                F[k] = (-c.accuracy, c.latency)
            pop.set("X", X)
            pop.set("F", F)
            algo.tell(infills=pop)
            stale = stale + 1 if len(self.order) == before else 0
