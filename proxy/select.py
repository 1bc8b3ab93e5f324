"""`--features auto --model auto`: choose a proxy by shape-grouped cross-validation.

Every candidate (feature set x model; "auto" on one side only varies that
side) is cross-validated with whole shapes held out, the one with the lowest
MAPE is refit on all kernels, and the choice is recorded in its CV metrics
(``cv["selection"]``: the chosen pair, the criterion and every candidate's
MAPE / within-10% / Spearman rho), which the proxy file keeps.

The chosen candidate's CV error is the minimum of several estimates, so it is
optimistic by the selection (no nested CV: measured shapes are few).  A
candidate that cannot describe the kernels (`analytic` or cpu `terms` on
BitFusion's odd widths) is skipped and listed with its reason.
"""

from __future__ import annotations

from harness.errors import MicoError

from .cv import cross_validate
from .document import TrainingSet
from .features import FEATURE_SETS
from .model import MODELS, LatencyProxy
from .terms import family_of

AUTO = "auto"


def candidates(features: str, model: str) -> list[tuple[str, str]]:
    fs = list(FEATURE_SETS) if features == AUTO else [features]
    ms = list(MODELS) if model == AUTO else [model]
    return [(f, m) for f in fs for m in ms]


def select(data: TrainingSet, features: str = AUTO, model: str = AUTO, random_state: int = 0,
           family: str | None = None) -> LatencyProxy:
    """The candidate with the lowest shape-grouped CV MAPE, fit on all of `data`."""
    fam = family or family_of(data.target, data.specs)
    rows = []
    for f, m in candidates(features, model):
        est = LatencyProxy(data.op, f, m, random_state, family=fam)
        try:
            cv = cross_validate(est, data.specs, data.values)
        except MicoError as e:
            rows.append({"features": f, "model": m, "skipped": str(e)})
            continue
        rows.append({"features": f, "model": m, "mape": cv["mape"], "within10": cv["within10"],
                     "spearman": cv["spearman"], "_cv": cv})
    scored = [r for r in rows if "mape" in r]
    if not scored:
        raise MicoError(f"no candidate proxy could be fitted on the {data.op} kernels: {rows[0]['skipped']}")
    best = min(scored, key=lambda r: r["mape"])
    proxy = LatencyProxy(data.op, best["features"], best["model"], random_state, family=fam)
    proxy.fit(data.specs, data.values, cv=False, unit=data.unit, target=data.target, fingerprint=data.fingerprint)
    cv = dict(best["_cv"])
    cv["selection"] = {"criterion": "shape-grouped CV MAPE (lowest; optimistic by the selection)",
                       "chosen": {"features": best["features"], "model": best["model"]},
                       "family": fam,
                       "candidates": [{k: v for k, v in r.items() if k != "_cv"} for r in rows]}
    proxy.cv_ = cv
    return proxy
