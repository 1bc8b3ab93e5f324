"""``surrogate``: a regressor predicts a scheme's accuracy, an evolutionary inner loop
proposes, and only the most promising proposal is evaluated for real (MiCo's
idea of surrogate-assisted search; the code is this project's).

Features of a scheme: log2 of every layer's qa and qw, its predicted latency
relative to the budget, and -- when the evaluator offers sensitivities -- the
log of the summed sensitivity (sensitivity.py), the prior that lets a few
evaluations go far.  The regressor is a random forest (scikit-learn); its
spread over trees adds a small exploration bonus.  Each round aims at a
latency target drawn between the fastest scheme and the budget (every other
round the budget itself), so the evaluations spread along the front instead
of piling up at the budget.
"""

from __future__ import annotations

import logging

import numpy as np

from ..models import Scheme
from .base import _rank_key
from .evolution import EvolutionSearcher

log = logging.getLogger(__name__)


class SurrogateSearcher(EvolutionSearcher):
    name = "surrogate"

    def __init__(self, *args, initial: int | None = None, proposals: int = 300, explore: float = 0.5, **kw):
        kw.pop("population", None)
        super().__init__(*args, population=8, **kw)
        self.initial = initial
        self.proposals = int(proposals)
        self.explore = float(explore)
        self._omega = None

    def _features(self, schemes: list[Scheme]) -> np.ndarray:
        rows = []
        for s in schemes:
            f = [np.log2(b) for p in s for b in p]
            f.append(self.latency(s) / self.budget)
            if self._omega is not None:
                f.append(np.log(sum(self._omega[p][i] for i, p in enumerate(s)) + 1e-12))
            rows.append(f)
        return np.asarray(rows, dtype=np.float64)

    def _fit(self):
        from sklearn.ensemble import RandomForestRegressor

        X = self._features([c.bits for c in self.order])
        y = np.array([c.accuracy for c in self.order])
        return RandomForestRegressor(n_estimators=100, min_samples_leaf=1, random_state=int(self.rng.integers(1 << 30))
                                     ).fit(X, y)

    def _proposals(self, limit: float) -> list[Scheme]:
        pop = sorted(self.order, key=_rank_key)[:self.population]
        saved, self.budget = self.budget, limit       # the inner loop repairs to the round's target
        out: set[Scheme] = set()
        try:
            for _ in range(self.proposals):
                s = self._child(pop)
                if s is not None:
                    out.add(s)
        finally:
            self.budget = saved
        return [s for s in out if s not in self.evaluated and self.latency(s) <= limit]

    def _run(self) -> None:
        sens = getattr(self.accuracy_fn, "sensitivity", None)
        if sens is not None:
            self._omega = sens(self.bits)
        n0 = self.initial if self.initial is not None else max(3, self.n_evals // 3)
        for qa, qw in self.SEEDS:                      # a few uniform schemes, then random ones
            if len(self.order) >= min(n0, 2) or self.remaining <= 0:
                break
            s = ((qa, qw),) * self.n_layers
            if s not in self.evaluated and self.feasible(s):
                self.evaluate(s)
        while len(self.order) < n0 and self.remaining > 0:
            s = self.random_feasible()
            if s is None:
                break
            self.evaluate(s)
        lo = min(self.latency(((a, w),) * self.n_layers) for a in self.bits for w in self.bits)
        k = 0
        while self.remaining > 0 and self.order:
            limit = self.budget if k % 2 == 0 else float(self.rng.uniform(lo, self.budget))
            k += 1
            cands = self._proposals(limit)
            if not cands:
                s = self.random_feasible()
                if s is None:
                    break
                self.evaluate(s)
                continue
            model = self._fit()
            X = self._features(cands)
            trees = np.stack([t.predict(X) for t in model.estimators_])
            score = trees.mean(0) + self.explore * trees.std(0)
            self.evaluate(cands[int(np.argmax(score))])
