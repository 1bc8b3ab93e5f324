"""Latency proxies: regressors from kernel features to measured latency.

`LatencyProxy` follows scikit-learn's estimator conventions (the constructor
only stores its parameters, `fit` returns self, `get_params`/`clone` work), but
its inputs are kernels -- a list of `KernelSpec` -- rather than a feature
matrix; the feature set is a parameter.  Tables (a `Store.frame()` DataFrame)
are converted at the CLI edge (`proxy.cli.frame_training_set`); `TrainingSet`
gathers the rows of one target build and op from `Store.rows`.

Models:

- ``linear``: ``LinearRegression(positive=True)`` on the *untransformed*
  features (latency ~ a . features + b with a >= 0; for ``cbops`` that is MiCo's
  latency ~ a x CBOPs + b).  Columns are max-abs scaled first, which keeps the
  coefficients' signs and makes NNLS well conditioned.  The fit minimises the
  squared *relative* error (sample weights 1/y^2): kernels span several orders
  of magnitude, and plain least squares would fit the largest ones and leave
  small kernels tens of percent off.
- ``rf`` / ``gbrt``: random forest / gradient-boosted trees on the log1p
  features predicting log latency.  Trees do not extrapolate: a kernel larger
  than any trained one is predicted like the largest trained one.  ``rf`` is
  MiCo's default recipe (a random forest with a log target), the baseline.
- ``mgbrt``: histogram gradient boosting on the log1p features predicting log
  latency with monotone constraints (`monotone_constraints`): latency may only
  grow with a count (MACs, words, bits, sizes) and only shrink with a stride or
  the number of groups, so the trees cannot invent a dip between measured
  shapes; they still do not extrapolate beyond them.

``features="terms"`` uses the cost terms of the target's family (proxy/terms.py);
``family`` None picks it from the target's name and widths (`terms.family_of`).

Persistence never pickles: a proxy file (`proxy.document.ProxyFile`) is JSON
holding, per op, the config, the training data (spec dicts + values), a sha256
digest of that data, the CV metrics, the unit and the target; loading checks
the digest and refits with the same random_state, which reproduces the
predictions exactly (same library versions; a mismatch is logged as a warning).

`ModelLatency` combines one proxy per op into the latency of a whole network.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin

from harness.errors import MicoError
from harness.spec import ALL_OPS, KernelSpec

from .document import ProxyEntry, ProxyFile, TrainingSet, training_digest  # noqa: F401  (re-exported)
from .features import FEATURE_SETS, spec_list
from .terms import check_family, family_of
from .features import features as make_features

log = logging.getLogger(__name__)

MODELS = ("linear", "rf", "gbrt", "mgbrt")
_N_CHECK = 16  # training predictions stored to verify a refit reproduces the saved proxy
#: latencies a fit accepts (any unit): beyond them a value is a typo, and relative weights 1/y^2 overflow
PLAUSIBLE = (1e-12, 1e24)


class LatencyProxy(RegressorMixin, BaseEstimator):
    """Predict a kernel's latency on one target from its spec.

    Parameters
    ----------
    op : "matmul" or "conv2d" -- a proxy is fit per (target, op).
    features : "raw" | "bops" | "cbops" | "cbops+" | "analytic" (see proxy.features).
    model : "linear" | "rf" | "gbrt".
    random_state : seed of the tree models (and of nothing else).
    family : "cpu" | "bitfusion" | None -- whose cost terms ``features="terms"`` uses
        (None: from the target name and widths at fit time, see proxy.terms).
    transfer : None, or {"method": "ratio" | "residual" | "cascade", "source": a source
        proxy's entry dict} -- fit on top of another target's proxy (proxy.transfer);
        ``model`` is then unused.

    Attributes after `fit`: ``unit`` (of the training values, e.g. "cycles"),
    ``n_train``, ``n_shapes``, ``cv_`` (grouped-CV metrics dict or None),
    ``target`` (name or None), ``fingerprint`` (or None), ``feature_names_``.
    """

    def __init__(self, op: str, features: str = "cbops", model: str = "linear", random_state: int = 0,
                 lookup: bool = True, family: str | None = None, transfer: dict | None = None):
        self.op = op
        self.features = features
        self.model = model
        self.random_state = random_state
        self.lookup = lookup
        self.family = family
        self.transfer = transfer

    # ---- configuration ------------------------------------------------------
    def _check_params(self) -> None:
        if self.op not in ALL_OPS:
            raise MicoError(f"unknown op {self.op!r}; use one of {', '.join(ALL_OPS)}.")
        if self.features not in FEATURE_SETS:
            raise MicoError(f"unknown feature set {self.features!r}; use one of {', '.join(FEATURE_SETS)}.")
        if self.model not in MODELS:
            raise MicoError(f"unknown model {self.model!r}; use one of {', '.join(MODELS)}.")
        if isinstance(self.random_state, bool) or not isinstance(self.random_state, (int, np.integer)):
            raise MicoError(f"random_state must be an integer, got {self.random_state!r}.")
        if self.family is not None:
            check_family(self.family)

    @property
    def _log(self) -> bool:
        return self.model != "linear" and not self.transfer

    def _make_regressor(self):
        rs = int(self.random_state)
        if self.model == "linear":
            from sklearn.linear_model import LinearRegression
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import MaxAbsScaler

            return make_pipeline(MaxAbsScaler(), LinearRegression(positive=True))
        if self.model == "rf":
            from sklearn.ensemble import RandomForestRegressor

            return RandomForestRegressor(n_estimators=100, random_state=rs)
        if self.model == "mgbrt":
            from sklearn.ensemble import HistGradientBoostingRegressor

            return HistGradientBoostingRegressor(max_iter=200, learning_rate=0.1, max_leaf_nodes=15,
                                                 min_samples_leaf=5, random_state=rs,
                                                 monotonic_cst=monotone_constraints(self.feature_names_))
        from sklearn.ensemble import GradientBoostingRegressor

        return GradientBoostingRegressor(n_estimators=200, learning_rate=0.1, max_depth=3, random_state=rs)

    def _X(self, specs: Sequence[KernelSpec]) -> np.ndarray:
        X, names = make_features(specs, self.features, log=self._log, op=self.op,
                                 family=getattr(self, "family_", None) or self.family or "cpu")
        self.feature_names_ = names
        return X

    # ---- estimator API ------------------------------------------------------
    def fit(self, specs: Sequence[KernelSpec], values, *, cv: bool = True, unit: str | None = None,
            target: str | None = None, fingerprint: str | None = None) -> "LatencyProxy":
        """Fit on kernels `specs` and their measured latencies `values`.

        `unit`, `target` and `fingerprint` describe where the values come from
        (kept in the proxy file).  With ``cv=True`` the shape-grouped
        cross-validation metrics are computed first (``cv_``; needs >= 2
        shapes); with ``cv=False`` ``cv_`` is None.
        """
        self._check_params()
        specs = spec_list(specs)
        try:
            y = np.asarray(values, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise MicoError("latencies must be numbers.") from None
        if len(y) != len(specs):
            raise MicoError(f"got {len(specs)} kernels but {len(y)} latencies.")
        if len(specs) < 2:
            raise MicoError(f"a {self.op} proxy needs at least 2 measured kernels, got {len(specs)}.")
        if not np.all(np.isfinite(y)) or np.any(y <= 0):
            raise MicoError("latencies must be finite and positive; drop failed measurements before fitting.")
        if np.any(y < PLAUSIBLE[0]) or np.any(y > PLAUSIBLE[1]):
            raise MicoError(f"latencies must lie between {PLAUSIBLE[0]:g} and {PLAUSIBLE[1]:g}, but range from "
                            f"{y.min():.3g} to {y.max():.3g}; drop the implausible measurements before fitting.")
        self.family_ = self.family or (family_of(target, specs) if self.features == "terms" else "cpu")
        self.cv_ = None
        if cv:
            from sklearn.base import clone

            from .cv import cross_validate

            # the folds' clones fit without the target's name: they get the family resolved here
            self.cv_ = cross_validate(clone(self).set_params(family=self.family_), specs, y)
        Xf = self._X(specs)
        if self.transfer:
            from .transfer import fit_transfer, source_proxy

            self.source_ = source_proxy(self.transfer, self.op)
            reg = fit_transfer(self, specs, y, Xf)
        else:
            reg = self._make_regressor()
        if self.transfer:
            pass
        elif self._log:
            with _one_thread():
                reg.fit(Xf, np.log(y))
        else:
            # least squares on *relative* error: kernels span orders of magnitude and
            # the proxy is judged (and the search misled) by relative error
            reg.fit(Xf, y, linearregression__sample_weight=1.0 / y**2)
        self.regressor_ = reg
        self.train_specs_ = list(specs)
        self.train_values_ = [float(v) for v in y]
        self.measured_ = dict(zip(self.train_specs_, self.train_values_))
        modes = {s.mode for s in specs}
        if len(modes) > 1:
            raise MicoError(f"the {self.op} kernels mix measurement modes ({', '.join(sorted(modes))}); "
                            "fit kernel and layer measurements separately.")
        self.mode = modes.pop()
        self.n_train = len(specs)
        self.n_shapes = len({(s.op, s.shape_str) for s in specs})
        self.unit = None if unit is None else str(unit)
        self.target = None if target is None else str(target)
        self.fingerprint = None if fingerprint is None else str(fingerprint)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "regressor_"):
            raise MicoError(f"this {self.op} proxy is not fitted yet; call fit() or load one with LatencyProxy.load().")

    def predict(self, specs: Sequence[KernelSpec]) -> np.ndarray:
        """Predicted latencies (unit of the training data, never negative) of kernels `specs`.

        With ``lookup`` a spec that was measured is predicted by its measurement: the
        regression is for the specs nobody measured (its error is the CV's)."""
        self._check_fitted()
        specs = spec_list(specs)
        if not specs:
            return np.zeros(0)
        if self.transfer:
            p = self.regressor_.predict(self.source_.predict(specs), self._X(specs))
        else:
            with _one_thread():
                p = self.regressor_.predict(self._X(specs))
        if self._log:
            p = np.exp(p)
        p = np.maximum(p, 0.0)
        if self.lookup:
            for i, s in enumerate(specs):
                v = self.measured_.get(s)
                if v is not None:
                    p[i] = v
        return p

    def predict_specs(self, specs: Iterable[KernelSpec]) -> np.ndarray:
        """`predict` for a list of KernelSpec (convenience, same result)."""
        return self.predict(list(specs))

    # ---- persistence ------------------------------------------------------------
    def to_entry(self) -> ProxyEntry:
        """This proxy as the entry stored under its op in a proxy file."""
        self._check_fitted()
        check = [float(v) for v in self.predict(self.train_specs_[:_N_CHECK])]
        return ProxyEntry(
            config={k: (int(v) if k == "random_state" else v) for k, v in self.get_params().items()},
            training=TrainingSet(self.op, list(self.train_specs_), list(self.train_values_), self.unit, self.target,
                                 self.fingerprint),
            cv=self.cv_, check=check, versions=_versions(),
        )

    def to_json(self, path: str | Path) -> Path:
        """Write a proxy file holding this proxy alone; returns the path."""
        return save_proxies({self.op: self}, path)

    @classmethod
    def load(cls, path: str | Path, op: str | None = None) -> "LatencyProxy":
        """Load the `op` proxy of a proxy file (op may be omitted when it holds one)."""
        entries = ProxyFile.read(path).proxies
        if op is None:
            if len(entries) != 1:
                raise MicoError(f"{path} holds proxies for {', '.join(sorted(entries))}; choose one with op=.")
            op = next(iter(entries))
        if op not in entries:
            raise MicoError(f"{path} has no {op} proxy (it has {', '.join(sorted(entries))}).")
        return cls.from_entry(entries[op], f"{path}: the {op} proxy")

    @classmethod
    def from_entry(cls, entry: ProxyEntry, where: str = "the proxy") -> "LatencyProxy":
        """Refit the proxy an entry describes; warns if it does not reproduce the saved predictions."""
        proxy = cls(**entry.config)
        t = entry.training
        proxy.fit(t.specs, t.values, cv=False, unit=t.unit, target=t.target, fingerprint=t.fingerprint)
        proxy.cv_ = entry.cv
        if entry.check:
            again = proxy.predict(t.specs[: len(entry.check)])
            if len(entry.check) != len(again) or not np.array_equal(np.asarray(entry.check, dtype=np.float64), again):
                log.warning("%s: refitting did not reproduce the saved predictions exactly (saved with %s, now %s)",
                            where, entry.versions, _versions())
        return proxy


def _one_thread():
    """OpenMP limited to one thread: the proxies' data sets are small, and on a shared
    machine HistGradientBoosting's spinning threads made one fit ~70x slower (measured)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="openmp")


#: feature columns along which latency may fall: a larger stride or more groups do less work
_DECREASING = ("S", "G")


def monotone_constraints(names: Sequence[str]) -> list[int]:
    """+1 (latency grows with the column) for every count, -1 for stride and groups."""
    return [-1 if n in _DECREASING else 1 for n in names]


def _versions() -> dict:
    import sklearn

    return {"scikit-learn": sklearn.__version__, "numpy": np.__version__}


# ---- files ------------------------------------------------------------------------
def save_proxies(proxies: Mapping[str, LatencyProxy] | "ModelLatency", path: str | Path) -> Path:
    """Write one proxy file with a proxy per op (atomically); returns the path."""
    if isinstance(proxies, ModelLatency):
        proxies = proxies.proxies
    if not proxies:
        raise MicoError("there is no proxy to save.")
    for op, p in proxies.items():
        if p.op != op:
            raise MicoError(f"the proxy stored under {op!r} is a {p.op} proxy.")
    return ProxyFile({op: p.to_entry() for op, p in proxies.items()}).write(path)


def load_proxies(path: str | Path, other: float = 0.0) -> "ModelLatency":
    """Every proxy of a proxy file, as a ModelLatency (see there for `other`)."""
    entries = ProxyFile.read(path).proxies
    return ModelLatency({op: LatencyProxy.from_entry(e, f"{path}: the {op} proxy") for op, e in entries.items()},
                        other=other)


# ---- whole-network latency ----------------------------------------------------------
class ModelLatency:
    """Latency of a network = sum of its kernels' predicted latencies + `other`.

    ``proxies`` maps op -> fitted LatencyProxy (one per op, same unit).
    ``other`` is a pass-through constant in the same unit for everything the
    kernel proxies do not cover (pooling, requantisation, activation functions,
    framework overhead); it is added once per `predict`/`total`, default 0.
    Per-kernel predictions are cached (a search asks for the same layer at the
    same bit-widths many times); do not refit a proxy after handing it in.
    """

    def __init__(self, proxies: Mapping[str, LatencyProxy], other: float = 0.0):
        if isinstance(proxies, LatencyProxy):
            proxies = {proxies.op: proxies}
        self.proxies = dict(proxies)
        if not self.proxies:
            raise MicoError("ModelLatency needs at least one fitted proxy.")
        for op, p in self.proxies.items():
            if not isinstance(p, LatencyProxy) or p.op != op:
                raise MicoError(f"the proxy given for {op!r} is not a {op} LatencyProxy.")
            p._check_fitted()
        units = {p.unit for p in self.proxies.values()}
        if len(units) > 1:
            raise MicoError(f"the proxies predict in different units ({', '.join(map(str, units))}); fit them on one target.")
        try:
            self.other = float(other)
        except (TypeError, ValueError):
            raise MicoError(f"other={other!r} must be a number (the latency of the ops without a proxy).") from None
        if not math.isfinite(self.other) or self.other < 0:
            raise MicoError(f"other={other!r} must be a finite, non-negative latency.")
        self._cache: dict[KernelSpec, float] = {}

    @property
    def unit(self) -> str | None:
        return next(iter(self.proxies.values())).unit

    @property
    def ops(self) -> list[str]:
        return sorted(self.proxies)

    @property
    def mode(self) -> str:
        """The measurement mode the proxies were fitted on (kernel or layer)."""
        modes = {p.mode for p in self.proxies.values()}
        if len(modes) > 1:
            raise MicoError(f"the proxies were fitted on different measurement modes ({', '.join(sorted(modes))}).")
        return modes.pop()

    def predict(self, specs: Iterable[KernelSpec]) -> tuple[np.ndarray, float]:
        """(per-kernel latencies in input order, total = their sum + other)."""
        specs = spec_list(specs)
        out = np.empty(len(specs))
        todo: dict[str, list[int]] = {}
        for i, s in enumerate(specs):
            v = self._cache.get(s)
            if v is None:
                if s.op not in self.proxies:
                    raise MicoError(f"there is no {s.op} proxy for kernel {s}; fit one and add it.")
                todo.setdefault(s.op, []).append(i)
            else:
                out[i] = v
        for op, idx in todo.items():
            uniq = list(dict.fromkeys(specs[i] for i in idx))
            for s, v in zip(uniq, self.proxies[op].predict(uniq)):
                self._cache[s] = float(v)
            for i in idx:
                out[i] = self._cache[specs[i]]
        return out, float(out.sum() + self.other)

    def predict_specs(self, specs: Iterable[KernelSpec]) -> np.ndarray:
        """Per-kernel latencies only (same as LatencyProxy.predict_specs, for mixed ops)."""
        return self.predict(specs)[0]

    def total(self, specs: Iterable[KernelSpec]) -> float:
        """Predicted latency of the whole network (kernels + other)."""
        return self.predict(specs)[1]

    def to_json(self, path: str | Path) -> Path:
        """Write all proxies to one proxy file (`other` is not stored: it belongs to a network)."""
        return save_proxies(self.proxies, path)
