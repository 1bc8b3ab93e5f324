"""Transfer: fit a new target's proxy from a few of its measurements on top of a
source target's proxy (``mico fit --from SOURCE.json --transfer METHOD``).

The source proxy's prediction ``b(x)`` carries the shape of the cost (which
kernels are expensive, how widths scale); the target's few measurements fix
what differs.  Methods (as MiCo offers them; the code is ours):

- ``ratio``: ``y = c b(x)`` -- one scale (a faster clock, a wider bus);
- ``residual``: ``y = b(x) exp(r(x))`` -- a ridge regression ``r`` on the
  log1p features of the proxy's feature set corrects the log ratio per kernel;
- ``cascade``: ``y = a0 b(x) + a . features`` (a >= 0, non-negative least
  squares on relative error) -- the source prediction is one more cost term.

`transfer_curve` reports the error on held-out shapes against the number of
target shapes measured: per count, seeded draws of that many shapes train,
every other shape tests (whole shapes, as in shape-grouped CV).
"""

from __future__ import annotations

import numpy as np

from harness.errors import MicoError

METHODS = ("ratio", "residual", "cascade")


def source_proxy(transfer: dict, op: str):
    """The source LatencyProxy embedded in a `transfer` parameter (refit from its entry)."""
    from .document import ProxyEntry
    from .model import LatencyProxy

    if not isinstance(transfer, dict) or transfer.get("method") not in METHODS or "source" not in transfer:
        raise MicoError(f"transfer must name a method ({', '.join(METHODS)}) and hold the source proxy entry.")
    entry = ProxyEntry.from_dict(transfer["source"], op, f"the source {op} proxy")
    return LatencyProxy.from_entry(entry, f"the source {op} proxy")


def fit_transfer(proxy, specs, y: np.ndarray, X: np.ndarray):
    """Fit the correction of `proxy` (its ``transfer`` method) to target latencies y; returns
    the fitted correction (an object with predict(base, X))."""
    base = proxy.source_.predict(specs)
    method = proxy.transfer["method"]
    if np.any(base <= 0):
        raise MicoError("the source proxy predicts a non-positive latency for a target kernel; refit the source.")
    if method == "ratio":
        w = 1.0 / y**2
        return _Ratio(float(np.sum(w * base * y) / np.sum(w * base * base)))
    if method == "residual":
        from sklearn.linear_model import Ridge

        return _Residual(Ridge(alpha=1.0).fit(np.log1p(X), np.log(y / base)))
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MaxAbsScaler

    reg = make_pipeline(MaxAbsScaler(), LinearRegression(positive=True))
    reg.fit(np.column_stack([base, X]), y, linearregression__sample_weight=1.0 / y**2)
    return _Cascade(reg)


class _Ratio:
    def __init__(self, c: float):
        self.c = c

    def predict(self, base, X):
        return self.c * base


class _Residual:
    def __init__(self, reg):
        self.reg = reg

    def predict(self, base, X):
        return base * np.exp(np.clip(self.reg.predict(np.log1p(X)), -5.0, 5.0))


class _Cascade:
    def __init__(self, reg):
        self.reg = reg

    def predict(self, base, X):
        return self.reg.predict(np.column_stack([base, X]))


def transfer_curve(source_entry: dict, data, method: str, counts, features: str = "terms", draws: int = 5,
                   seed: int = 0, family: str | None = None) -> list[dict]:
    """[{n_shapes, n_kernels, mape, within10, spearman, draws}] of `method` trained on n target shapes
    (seeded draws), tested on all other shapes of `data` (a TrainingSet)."""
    from .cv import metrics
    from .model import LatencyProxy

    shapes = sorted({s.shape for s in data.specs})
    rng = np.random.default_rng(seed)
    y_all = np.asarray(data.values, dtype=np.float64)
    out = []
    for n in counts:
        if not 1 <= n < len(shapes):
            continue
        ms = []
        for _ in range(draws):
            pick = {shapes[i] for i in rng.choice(len(shapes), size=n, replace=False)}
            tr = [i for i, s in enumerate(data.specs) if s.shape in pick]
            te = [i for i, s in enumerate(data.specs) if s.shape not in pick]
            p = LatencyProxy(data.op, features, "linear", family=family, lookup=False,
                             transfer={"method": method, "source": source_entry})
            p.fit([data.specs[i] for i in tr], y_all[tr], cv=False)
            ms.append(metrics(y_all[te], p.predict([data.specs[i] for i in te])))
        out.append({"n_shapes": n, "share": n / len(shapes), "n_kernels": int(np.mean([len(tr)])),
                    "mape": float(np.mean([m["mape"] for m in ms])),
                    "mape_sd": float(np.std([m["mape"] for m in ms])),
                    "within10": float(np.mean([m["within10"] for m in ms])),
                    "spearman": float(np.mean([m["spearman"] or 0.0 for m in ms])), "draws": draws})
    return out
