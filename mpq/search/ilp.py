"""``ilp``: the bit-width assignment as an integer program (HAWQ-V3's formulation).

One binary x[i, p] per layer i and (qa, qw) pair p, one pair per layer,

    minimise   sum Omega_i(p) x[i, p]          (sensitivity.layer_sensitivity)
    subject to sum t_i(p) x[i, p] <= budget - t_0

with the latency model made additive around the all-8x8 scheme: ``t_0`` its
latency, ``t_i(p)`` the change when layer i alone moves to p.  The latency
model is not exactly additive (a layer's output width changes what the next op
reads), so every solution is checked with the real latency function and, if
over, solved again with the budget tightened by the excess.  Solved by
``scipy.optimize.milp`` (HiGHS) in milliseconds; sweeping the budget from the
fastest scheme to the budget gives the whole front, of which the evaluation
budget scores an evenly spread subset (the full-budget solution first).
"""

from __future__ import annotations

import logging

import numpy as np

from harness.errors import UserError

from ..models import Scheme
from .base import Searcher

log = logging.getLogger(__name__)


def solve_assignment(cost: np.ndarray, lat: np.ndarray, limit: float,
                     extra: list[tuple[np.ndarray, float]] = ()) -> np.ndarray | None:
    """Pair index per layer minimising ``sum cost[i, p]`` with ``sum lat[i, p] <= limit``
    and ``sum table[i, p] <= bound`` for every (table, bound) of ``extra`` (memory
    budgets); tables of shape (layers, pairs).  None when infeasible."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    n, P = cost.shape
    A_eq = np.zeros((n, n * P))
    for i in range(n):
        A_eq[i, i * P:(i + 1) * P] = 1
    cons = [LinearConstraint(A_eq, 1, 1), LinearConstraint(lat.reshape(1, -1), -np.inf, limit)]
    cons += [LinearConstraint(t.reshape(1, -1), -np.inf, b) for t, b in extra]
    res = milp(cost.reshape(-1), constraints=cons, integrality=np.ones(n * P), bounds=Bounds(0, 1))
    if res.x is None or not res.success:
        return None
    return np.round(res.x).reshape(n, P).argmax(axis=1)


class ILPSearcher(Searcher):
    """Integer program over per-layer sensitivities; the accuracy function must offer
    ``sensitivity(bits)`` (PTQEvaluator does)."""

    name = "ilp"

    def __init__(self, *args, sweep: int = 48, **kw):
        super().__init__(*args, **kw)
        self.sweep = max(2, int(sweep))

    def _tables(self) -> tuple[list[tuple[int, int]], np.ndarray, np.ndarray, float]:
        sens = getattr(self.accuracy_fn, "sensitivity", None)
        if sens is None:
            raise UserError("the ilp searcher needs per-layer sensitivities; its evaluator has none.")
        omega = sens(self.bits)
        pairs = sorted(omega)
        cost = np.stack([np.asarray(omega[p], dtype=np.float64) for p in pairs], axis=1)
        ref = ((8, 8),) * self.n_layers
        t0 = self.latency(ref)
        lat = np.zeros_like(cost)
        for i in range(self.n_layers):
            for k, p in enumerate(pairs):
                s = list(ref)
                s[i] = p
                lat[i, k] = self.latency(tuple(s)) - t0
        # memory budgets made additive the same way
        self._extra = []
        if self.memory_budget and self.memory_fn is not None:
            m0 = self.memory_fn(ref)
            for key, bound in self.memory_budget.items():
                tab = np.zeros_like(cost)
                for i in range(self.n_layers):
                    for k, p in enumerate(pairs):
                        s = list(ref)
                        s[i] = p
                        tab[i, k] = self.memory_fn(tuple(s))[key] - m0[key]
                self._extra.append((tab, bound - m0[key]))
        return pairs, cost, lat, t0

    def solve(self, limit: float, pairs, cost, lat, t0) -> Scheme | None:
        """The cheapest scheme whose REAL predicted latency is within ``limit``."""
        want = limit
        extra = getattr(self, "_extra", [])
        for _ in range(20):
            x = solve_assignment(cost, lat, want - t0, extra)
            if x is None:
                return None
            s = tuple(pairs[k] for k in x)
            real = self.latency(s)
            if real <= limit:
                if self.over_memory(s) > 0:            # the memory model is not exactly additive either
                    saved, self.budget = self.budget, limit
                    try:
                        s = self._repair_memory(s)
                    finally:
                        self.budget = saved
                return s
            want -= (real - limit) + 1e-9 * abs(limit)
        return None

    def front(self) -> list[Scheme]:
        """Distinct solutions for budgets from the fastest scheme's latency up to the budget,
        the full-budget one first."""
        pairs, cost, lat, t0 = self._tables()
        lo = t0 + lat.min(axis=1).sum()
        out: list[Scheme] = []
        for limit in np.linspace(self.budget, max(lo, 0.0), self.sweep):
            s = self.solve(float(limit), pairs, cost, lat, t0)
            if s is not None and s not in out:
                out.append(s)
        return out

    def _run(self) -> None:
        schemes = self.front()
        if not schemes:
            log.info("ilp: no scheme fits the budget")
            return
        n = min(self.remaining, len(schemes))
        # the full-budget solution, then an even spread over the rest of the front
        idx = [0] + [int(round(v)) for v in np.linspace(0, len(schemes) - 1, n)[1:]] if n > 1 else [0]
        batch = []                           # the front does not depend on accuracy: one batch
        for k in dict.fromkeys(idx):
            if self.remaining <= 0:
                break
            if not self.known(schemes[k]):
                batch.append(self.propose(schemes[k]))
        for s in schemes:                    # an evaluation budget larger than the distinct set
            if self.remaining <= 0:
                break
            if not self.known(s):
                batch.append(self.propose(s))
        self.evaluate_many(batch)
