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

    def model_key(self, scheme: Sequence[Sequence[int]]) -> Scheme:
        return normalize_scheme(scheme, self.n_layers)

    def layer_costs(self, scheme: Sequence[Sequence[int]]) -> np.ndarray:
        """Predicted latency per scheme layer: each MAC layer's term plus the terms of the
        ops after it that read what it wrote (pools, adds), which cost by its output width."""
        key = normalize_scheme(scheme, self.n_layers)
        per = self(key)[0]
        specs = [s for s in self.specs(key) if s is not None]
        out = np.zeros(self.n_layers)
        if len(specs) != len(per):
            return per[:self.n_layers] if len(per) >= self.n_layers else out
        li = -1
        for s, v in zip(specs, per):
            if s.has_weights:
                li = min(li + 1, self.n_layers - 1)
            out[max(li, 0)] += v
        return out

    def uniform(self, qa: int, qw: int) -> float:
        return self(((qa, qw),) * self.n_layers)[1]

    def fastest(self) -> tuple[Scheme, float]:
        """The scheme with the lowest predicted latency (see `fastest_scheme`)."""
        return fastest_scheme(self, self.n_layers)


def chain_costs(latency_fn, n_layers: int, bits=BITS) -> list[dict]:
    """``cost[i][((qa, qw), next_qa)]``: layer i's predicted latency at (qa, qw) when the
    layer after it reads ``next_qa``-bit codes (it writes them).

    A layer's latency depends on its own (qa, qw) and, in layer mode, on the
    width of the codes it writes -- the next layer's qa -- so a table per
    (qa, qw) alone is wrong.  64 probe schemes fill it for any depth: even
    layers at ``p``, odd layers at ``(na, p.qw)``, so every layer sees every
    (qa, qw, next qa) once.  Cached on the latency function."""
    bits = tuple(bits)
    cached = getattr(latency_fn, "_chain_costs", None)
    if cached is not None and cached[0] == (n_layers, bits):
        return cached[1]
    costs = getattr(latency_fn, "layer_costs", None) or (lambda sch: latency_fn(sch)[0])
    cost: list[dict] = [dict() for _ in range(n_layers)]
    for a in bits:
        for w in bits:
            for na in bits:
                probe = tuple((a, w) if i % 2 == 0 else (na, w) for i in range(n_layers))
                per = costs(probe)
                for i in range(n_layers):
                    here = probe[i]
                    nxt = probe[i + 1][0] if i + 1 < n_layers else bits[0]
                    cost[i].setdefault((here, nxt), float(per[i]))
    if n_layers:                      # the last layer writes logits: its next qa does not matter
        for (p, _), v in list(cost[-1].items()):
            for na in bits:
                cost[-1].setdefault((p, na), v)
    try:
        latency_fn._chain_costs = ((n_layers, bits), cost)
    except AttributeError:
        pass
    return cost


def chain_estimate(cost: list[dict], scheme) -> float:
    """The table's estimate of a scheme's total (exact for a chain of layers)."""
    n = len(cost)
    last_na = min(k[1] for k in cost[-1]) if n else 0
    return sum(cost[i][(tuple(scheme[i]), scheme[i + 1][0] if i + 1 < n else last_na)] for i in range(n))


def fastest_scheme(latency_fn, n_layers: int, bits=BITS) -> tuple[Scheme, float]:
    """The scheme with the lowest predicted latency.

    A layer's latency depends on its own (qa, qw) and, in layer mode, on the
    width of the codes it writes -- the next layer's qa -- so layers cannot be
    chosen one by one (picking each layer's fastest pair alone gave LeNet on
    vexriscv-mico 362 k cycles where 262 k exist).  For a chain of layers a
    dynamic programme over "the next layer's qa" is exact; layer i's cost for
    (pair, next qa) is read from probe schemes.  Graphs that are not chains
    (residual adds) make it a heuristic, so the best of it and the uniform
    schemes is returned, priced as a whole."""
    bits = tuple(bits)
    pairs = [(a, w) for a in bits for w in bits]
    n = n_layers
    cost = chain_costs(latency_fn, n, bits)
    # best[i][qa_i] = (cost of layers i.. with layer i at activation width qa_i, choices)
    best: dict[int, tuple[float, list]] = {}
    last = n - 1
    for a in bits:       # the last layer writes logits: its next qa does not matter
        c, w = min((cost[last][((a, w), bits[0])], w) for w in bits)
        best[a] = (c, [(a, w)])
    for i in range(n - 2, -1, -1):
        nxt = best
        best = {}
        for a in bits:
            best[a] = min(((cost[i][((a, w), na)] + nxt[na][0], [(a, w)] + nxt[na][1])
                           for w in bits for na in bits), key=lambda t: t[0])
    cands = [tuple(min(best.values(), key=lambda t: t[0])[1])]
    cands += [(p,) * n for p in pairs]
    scored = [(latency_fn(c)[1], c) for c in cands]
    total, scheme = min(scored, key=lambda t: t[0])
    return scheme, float(total)
