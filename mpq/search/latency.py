"""Predicted latency of a scheme: the model lowered to the layer IR, priced by a latency function."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from kernels.reference import BITS

from ..evaluate import LatencyFn
from ..models import QuantModel, Scheme, normalize_scheme


class SchemeLatency:
    """Predicted latency of a scheme for a model (cached): ``(per_layer, total)``.
    Each scheme is lowered to the layer IR, so every op the model's graph has is
    priced exactly as the deployed model will run it."""

    def __init__(self, model: QuantModel, latency_fn: LatencyFn, batch: int = 1):
        self.model = model
        self.batch = batch
        self.latency_fn = latency_fn
        self.n_layers = len(model.layer_names)
        self._cache: dict[Scheme, tuple[np.ndarray, float]] = {}

    def specs(self, scheme: Scheme):
        from ..evaluate import latency_mode

        return self.model.lower(scheme).specs(self.batch, latency_mode(self.latency_fn))

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
        pairs = [(a, w) for a in BITS for w in BITS]
        per = {p: self(((p),) * self.n_layers)[0] for p in pairs}
        best = tuple(min(pairs, key=lambda p: (per[p][i], p)) for i in range(self.n_layers))
        return best, self(best)[1]
