"""Steady-state evolutionary search with tournament selection and repair."""

from __future__ import annotations

import logging

from ..models import Scheme
from .base import Candidate, Searcher, _rank_key

log = logging.getLogger(__name__)


class EvolutionSearcher(Searcher):
    """Steady-state evolution: a population of the best ``population``
    candidates (elitism), parents by tournament, uniform per-layer crossover,
    mutation of one layer's bits, repair to the budget, no re-evaluations.
    The initial population holds the feasible uniform schemes 8x8, 4x8, 4x4,
    2x4, 2x2 (highest precision first) topped up with random feasible ones,
    scored as one batch.  Each round breeds ``round_size`` children from the
    same population (1: classic steady state), scored as one batch, and the
    best ``population`` of parents and children survive."""

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
                if self.known(child):
                    child = self._mutate(child)
            else:
                child = self._mutate(p1.bits)
            if not self.feasible(child):
                child = self.repair(child)
            if child is not None and not self.known(child):
                return child
        return self.random_feasible()

    def _run(self) -> None:
        first: list[Scheme] = []
        for qa, qw in self.SEEDS:
            if len(first) >= self.population or self.remaining <= 0:
                break
            s = ((qa, qw),) * self.n_layers
            if not self.known(s) and self.feasible(s):
                first.append(self.propose(s))
        while len(first) < self.population and self.remaining > 0:
            s = self.random_feasible()
            if s is None:
                break
            first.append(self.propose(s))
        pop: list[Candidate] = self.evaluate_many(first)
        while self.remaining > 0 and pop:
            kids: list[Scheme] = []
            while len(kids) < self.round_size and self.remaining > 0:
                s = self._child(pop)
                if s is None:
                    break
                kids.append(self.propose(s))
            if not kids:
                log.info("evolution: no new feasible scheme found; stopping after %d", len(self.order))
                break
            pop = sorted(pop + self.evaluate_many(kids), key=_rank_key)[:self.population]
