"""``surrogate``: a regressor predicts a scheme's accuracy, an evolutionary inner loop
proposes, and only the most promising proposal is evaluated for real (MiCo's
idea of surrogate-assisted search; the code is this project's).

Features of a scheme: log2 of every layer's qa and qw, its predicted latency
relative to the budget, and -- when the evaluator offers sensitivities -- the
log of the summed sensitivity (sensitivity.py), the prior that lets a few
evaluations go far.  The regressor (scikit-learn) is a ridge regression while
there are few evaluations, then a random forest whose spread over trees adds
a small exploration bonus.  Each round aims at a
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
    FOREST_MIN = 24

    def __init__(self, *args, initial: int | None = None, proposals: int = 150, explore: float = 0.5, **kw):
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
        """Ridge regression on standardised features while evaluations are few (it
        extrapolates along the sensitivity prior), a random forest once there are
        enough to learn interactions; both return (mean, spread) predictors."""
        from sklearn.ensemble import RandomForestRegressor
        from sklearn.linear_model import Ridge
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        X = self._features([c.bits for c in self.order])
        y = np.array([c.accuracy for c in self.order])
        if len(y) < self.FOREST_MIN:
            model = make_pipeline(StandardScaler(), Ridge(alpha=1.0)).fit(X, y)
            return lambda Z: (model.predict(Z), np.zeros(len(Z)))
        forest = RandomForestRegressor(n_estimators=60, random_state=int(self.rng.integers(1 << 30))).fit(X, y)

        def predict(Z):
            trees = np.stack([t.predict(Z) for t in forest.estimators_])
            return trees.mean(0), trees.std(0)
        return predict

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
        first: list[Scheme] = []                       # a few uniform schemes, then random ones: one batch
        for qa, qw in self.SEEDS:
            if len(self.order) + len(first) >= min(n0, 2) or self.remaining <= 0:
                break
            s = ((qa, qw),) * self.n_layers
            if not self.known(s) and self.feasible(s):
                first.append(self.propose(s))
        while len(self.order) + len(first) < n0 and self.remaining > 0:
            s = self.random_feasible()
            if s is None:
                break
            first.append(self.propose(s))
        self.evaluate_many(first)
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
            mean, spread = self._fit()(self._features(cands))
            # the round's most promising proposals (the first best first, as argmax picks it)
            top = np.argsort(-(mean + self.explore * spread), kind="stable")[:min(self.round_size, self.remaining)]
            self.evaluate_many([cands[int(i)] for i in top])
