"""Uniform random feasible schemes: the baseline every searcher is measured against."""

from __future__ import annotations

import logging

from .base import Searcher

log = logging.getLogger(__name__)


class RandomSearcher(Searcher):
    """Uniform random schemes that satisfy the budget (resample / repair)."""

    name = "random"

    def _run(self) -> None:
        # no scheme depends on another's accuracy: the whole budget is one batch
        batch = []
        while self.remaining > 0:
            s = self.random_feasible()
            if s is None:
                log.info("random search: no new feasible scheme found; stopping after %d", len(batch))
                break
            batch.append(self.propose(s))
        self.evaluate_many(batch)
