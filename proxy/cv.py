"""Shape-grouped cross-validation for latency proxies.

A proxy is used to predict kernels of shapes it has never seen (the layers of a
new network), so its error must be measured that way: every bit-width row of a
shape (same op and shape string) is held out *together* (`GroupKFold`).  Plain
shuffled K-fold lets a model see 15 of a shape's 16 bit-width pairs while it is
tested on the 16th, which overstates accuracy; `cross_validate(...,
scheme="shuffled")` exists only to show that gap (benchmarks/bench_proxy_fit.py).

Metrics are computed on the concatenated out-of-fold predictions:

- ``mape``: mean absolute percentage error, in %;
- ``within5`` / ``within10``: share of kernels predicted within +-5 % / +-10 %, in %;
- ``spearman``: Spearman rank correlation (the search only needs the ranking
  right), ``None`` when undefined (constant predictions);
- ``n``: kernels, ``n_groups``: distinct shapes, ``n_splits``, ``scheme``.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from harness.errors import UserError
from harness.spec import KernelSpec

from .features import shape_groups, spec_list

SCHEMES = ("grouped", "shuffled")


def metrics(y_true, y_pred) -> dict:
    """MAPE (%), within +-5 % / +-10 % (%), Spearman rho and n of predictions."""
    from scipy.stats import spearmanr

    y = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if y.shape != p.shape or y.ndim != 1 or len(y) == 0:
        raise UserError("metrics need two equally long, non-empty 1-D arrays of latencies.")
    if np.any(y <= 0):
        raise UserError("metrics need positive measured latencies.")
    rel = np.abs(p - y) / y
    rho = math.nan
    if len(y) >= 2 and np.ptp(y) > 0 and np.ptp(p) > 0:
        rho = float(spearmanr(y, p).statistic)
    return {
        "mape": float(100.0 * rel.mean()),
        "within5": float(100.0 * np.mean(rel <= 0.05)),
        "within10": float(100.0 * np.mean(rel <= 0.10)),
        "spearman": None if math.isnan(rho) else rho,
        "n": int(len(y)),
    }


def grouped_splits(specs: Sequence[KernelSpec], n_splits: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train_idx, test_idx) folds with every shape entirely on one side.

    ``n_splits`` defaults to min(5, number of shapes); fewer than 2 shapes is a
    UserError (nothing could be held out).
    """
    from sklearn.model_selection import GroupKFold

    groups = shape_groups(specs)
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise UserError(
            f"shape-grouped cross-validation needs kernels of at least 2 different shapes, got {n_groups}; measure more shapes."
        )
    k = min(5, n_groups) if n_splits is None else int(n_splits)
    if not 2 <= k <= n_groups:
        raise UserError(f"n_splits={k} must be between 2 and the number of shapes ({n_groups}).")
    idx = np.arange(len(groups))
    return [(tr, te) for tr, te in GroupKFold(n_splits=k).split(idx, groups=groups)]


def shuffled_splits(n: int, n_splits: int | None = None, random_state: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Plain shuffled K-fold over rows (for comparison only: it leaks shapes)."""
    from sklearn.model_selection import KFold

    if n < 2:
        raise UserError(f"cross-validation needs at least 2 kernels, got {n}.")
    k = min(5, n) if n_splits is None else int(n_splits)
    if not 2 <= k <= n:
        raise UserError(f"n_splits={k} must be between 2 and the number of kernels ({n}).")
    idx = np.arange(n)
    return list(KFold(n_splits=k, shuffle=True, random_state=random_state).split(idx))


def out_of_fold(estimator, specs: Sequence[KernelSpec], y, scheme: str = "grouped", n_splits: int | None = None,
                random_state: int = 0) -> tuple[np.ndarray, np.ndarray, list]:
    """(y, out-of-fold predictions, folds) of a fresh clone of `estimator` per fold."""
    from sklearn.base import clone

    if scheme not in SCHEMES:
        raise UserError(f"unknown cross-validation scheme {scheme!r}; use one of {', '.join(SCHEMES)}.")
    specs = spec_list(specs)
    try:
        y = np.asarray(y, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise UserError("latencies must be numbers.") from None
    if len(y) != len(specs):
        raise UserError(f"got {len(specs)} kernels but {len(y)} latencies.")
    if scheme == "grouped":
        folds = grouped_splits(specs, n_splits)
    else:
        folds = shuffled_splits(len(specs), n_splits, random_state)
    pred = np.full(len(y), np.nan)
    for tr, te in folds:
        est = clone(estimator)
        est.fit([specs[i] for i in tr], y[tr], cv=False)
        pred[te] = est.predict([specs[i] for i in te])
    return y, pred, folds


def cross_validate(estimator, specs: Sequence[KernelSpec], y, scheme: str = "grouped", n_splits: int | None = None,
                   random_state: int = 0) -> dict:
    """Cross-validated metrics of `estimator` (a LatencyProxy) on kernels `specs` with latencies `y`."""
    specs = spec_list(specs)
    y_arr, pred, folds = out_of_fold(estimator, specs, y, scheme, n_splits, random_state)
    m = metrics(y_arr, pred)
    m.update(n_groups=int(len(np.unique(shape_groups(specs)))), n_splits=len(folds), scheme=scheme)
    return m
