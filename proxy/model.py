"""Latency proxies: regressors from kernel features to measured latency.

`LatencyProxy` follows scikit-learn's estimator conventions (the constructor
only stores its parameters, `fit` returns self, `get_params`/`clone` work), but
its inputs are kernels -- a list of `KernelSpec` or a `Store.frame()` DataFrame
-- rather than a feature matrix; the feature set is a parameter.

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
  than any trained one is predicted like the largest trained one.

Persistence never pickles: a proxy file is JSON holding, per op, the config,
the training data (spec dicts + values), a sha256 digest of that data, the CV
metrics, the unit and the target; loading checks the digest and refits with
the same random_state, which reproduces the predictions exactly (same library
versions; a mismatch is logged as a warning)::

    {"format": "mico-proxy", "version": 1,
     "proxies": {"matmul": {...}, "conv2d": {...}}}

`ModelLatency` combines one proxy per op into the latency of a whole network.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin

from harness.errors import UserError
from harness.spec import OPS, KernelSpec

from .features import FEATURE_SETS, as_specs, features as make_features

log = logging.getLogger(__name__)

MODELS = ("linear", "rf", "gbrt")
FORMAT = "mico-proxy"
VERSION = 1
_N_CHECK = 16  # training predictions stored to verify a refit reproduces the saved proxy
_PARAMS = ("op", "features", "model", "random_state")


def _column_value(df, col: str):
    """The single value of `col` in `df`, None if absent/empty; UserError if it varies."""
    if col not in df.columns:
        return None
    vals = [v for v in df[col].dropna().unique().tolist()]
    if not vals:
        return None
    if len(vals) > 1:
        if col == "fingerprint":
            raise UserError(
                f"the data mixes {len(vals)} target builds ({', '.join(str(v)[:12] for v in vals)}); "
                "fit one proxy per build by passing a fingerprint prefix as the target."
            )
        raise UserError(f"the data mixes {col}s {', '.join(map(str, vals))}; fit one proxy per {col}.")
    return vals[0]


def training_digest(specs: Sequence[KernelSpec], values: Sequence[float]) -> str:
    """sha256 over the canonical JSON of the training data (spec dicts + values)."""
    payload = json.dumps(
        {"specs": [s.to_dict() for s in specs], "values": [float(v) for v in values]},
        sort_keys=True, separators=(",", ":"),
    )
    return "sha256:" + hashlib.sha256(payload.encode()).hexdigest()


class LatencyProxy(RegressorMixin, BaseEstimator):
    """Predict a kernel's latency on one target from its spec.

    Parameters
    ----------
    op : "matmul" or "conv2d" -- a proxy is fit per (target, op).
    features : "raw" | "bops" | "cbops" | "cbops+" | "analytic" (see proxy.features).
    model : "linear" | "rf" | "gbrt".
    random_state : seed of the tree models (and of nothing else).

    Attributes after `fit`: ``unit`` (of the training values, e.g. "cycles"),
    ``n_train``, ``n_shapes``, ``cv_`` (grouped-CV metrics dict or None),
    ``target`` (name or None), ``fingerprint`` (or None), ``feature_names_``.
    """

    def __init__(self, op: str, features: str = "cbops", model: str = "linear", random_state: int = 0):
        self.op = op
        self.features = features
        self.model = model
        self.random_state = random_state

    # ---- configuration ------------------------------------------------------
    def _check_params(self) -> None:
        if self.op not in OPS:
            raise UserError(f"unknown op {self.op!r}; use one of {', '.join(OPS)}.")
        if self.features not in FEATURE_SETS:
            raise UserError(f"unknown feature set {self.features!r}; use one of {', '.join(FEATURE_SETS)}.")
        if self.model not in MODELS:
            raise UserError(f"unknown model {self.model!r}; use one of {', '.join(MODELS)}.")
        if isinstance(self.random_state, bool) or not isinstance(self.random_state, (int, np.integer)):
            raise UserError(f"random_state must be an integer, got {self.random_state!r}.")

    @property
    def _log(self) -> bool:
        return self.model != "linear"

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
        from sklearn.ensemble import GradientBoostingRegressor

        return GradientBoostingRegressor(n_estimators=200, learning_rate=0.1, max_depth=3, random_state=rs)

    def _X(self, specs: Sequence[KernelSpec]) -> np.ndarray:
        X, names = make_features(specs, self.features, log=self._log, op=self.op)
        self.feature_names_ = names
        return X

    # ---- estimator API ------------------------------------------------------
    def fit(self, X, y=None, *, cv: bool = True, unit: str | None = None, target: str | None = None,
            fingerprint: str | None = None) -> "LatencyProxy":
        """Fit on kernels `X` (list[KernelSpec] or store DataFrame) and latencies `y`.

        With a DataFrame, `y` defaults to its ``value`` column and unit /
        target / fingerprint to its ``unit`` / ``target`` / ``fingerprint``
        columns (which must each hold one value).  With ``cv=True`` the
        shape-grouped cross-validation metrics are computed first (``cv_``;
        needs >= 2 shapes); with ``cv=False`` ``cv_`` is None.
        """
        self._check_params()
        specs = as_specs(X, self.op)
        is_frame = hasattr(X, "columns")
        if y is None:
            if not (is_frame and "value" in X.columns):
                raise UserError("fit needs latencies: pass y or a DataFrame with a 'value' column.")
            y = X["value"].to_numpy()
        if is_frame:
            unit = unit if unit is not None else _column_value(X, "unit")
            target = target if target is not None else _column_value(X, "target")
            fingerprint = fingerprint if fingerprint is not None else _column_value(X, "fingerprint")
        try:
            y = np.asarray(y, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise UserError("latencies must be numbers.") from None
        if len(y) != len(specs):
            raise UserError(f"got {len(specs)} kernels but {len(y)} latencies.")
        if len(specs) < 2:
            raise UserError(f"a {self.op} proxy needs at least 2 measured kernels, got {len(specs)}.")
        if not np.all(np.isfinite(y)) or np.any(y <= 0):
            raise UserError("latencies must be finite and positive; drop failed measurements before fitting.")
        self.cv_ = None
        if cv:
            from .cv import cross_validate

            self.cv_ = cross_validate(self, specs, y)
        Xf = self._X(specs)
        reg = self._make_regressor()
        if self._log:
            reg.fit(Xf, np.log(y))
        else:
            # least squares on *relative* error: kernels span orders of magnitude and
            # the proxy is judged (and the search misled) by relative error
            reg.fit(Xf, y, linearregression__sample_weight=1.0 / y**2)
        self.regressor_ = reg
        self.train_specs_ = list(specs)
        self.train_values_ = [float(v) for v in y]
        self.n_train = len(specs)
        self.n_shapes = len({(s.op, s.shape_str) for s in specs})
        self.unit = None if unit is None else str(unit)
        self.target = None if target is None else str(target)
        self.fingerprint = None if fingerprint is None else str(fingerprint)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "regressor_"):
            raise UserError(f"this {self.op} proxy is not fitted yet; call fit() or load one with LatencyProxy.load().")

    def predict(self, X) -> np.ndarray:
        """Predicted latencies (unit of the training data, never negative) of kernels `X`."""
        self._check_fitted()
        specs = as_specs(X, self.op)
        if not specs:
            return np.zeros(0)
        p = self.regressor_.predict(self._X(specs))
        if self._log:
            p = np.exp(p)
        return np.maximum(p, 0.0)

    def predict_specs(self, specs: Iterable[KernelSpec]) -> np.ndarray:
        """`predict` for a list of KernelSpec (convenience, same result)."""
        return self.predict(list(specs))

    # ---- persistence ------------------------------------------------------------
    def to_entry(self) -> dict:
        """The JSON-ready dict stored for this proxy under its op."""
        self._check_fitted()
        check = [float(v) for v in self.predict(self.train_specs_[:_N_CHECK])]
        return {
            "config": {k: (int(v) if k == "random_state" else v) for k, v in self.get_params().items()},
            "unit": self.unit,
            "target": {"name": self.target, "fingerprint": self.fingerprint},
            "n_train": self.n_train,
            "n_shapes": self.n_shapes,
            "cv": self.cv_,
            "training": {"specs": [s.to_dict() for s in self.train_specs_], "values": self.train_values_},
            "digest": training_digest(self.train_specs_, self.train_values_),
            "check": check,
            "versions": _versions(),
        }

    def to_json(self, path: str | Path) -> Path:
        """Write a proxy file holding this proxy alone; returns the path."""
        return save_proxies({self.op: self}, path)

    @classmethod
    def load(cls, path: str | Path, op: str | None = None) -> "LatencyProxy":
        """Load the `op` proxy of a proxy file (op may be omitted when it holds one)."""
        entries = _read_doc(path)
        if op is None:
            if len(entries) != 1:
                raise UserError(f"{path} holds proxies for {', '.join(sorted(entries))}; choose one with op=.")
            op = next(iter(entries))
        if op not in entries:
            raise UserError(f"{path} has no {op} proxy (it has {', '.join(sorted(entries))}); fit one with `mico fit --op {op}`.")
        return cls._from_entry(entries[op], op, path)

    @classmethod
    def _from_entry(cls, entry, op: str, path) -> "LatencyProxy":
        where = f"{path}: the {op} proxy"
        try:
            if not isinstance(entry, dict):
                raise TypeError("not an object")
            config = entry["config"]
            if not isinstance(config, dict) or set(config) - set(_PARAMS):
                raise TypeError("bad config")
            if config.get("op", op) != op:
                raise ValueError("op mismatch")
            training = entry["training"]
            spec_dicts, values = training["specs"], training["values"]
            if not isinstance(spec_dicts, list) or not isinstance(values, list) or len(spec_dicts) != len(values):
                raise TypeError("bad training data")
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                raise TypeError("non-numeric values")
            tgt = entry.get("target") or {}
            if not isinstance(tgt, dict):
                raise TypeError("bad target")
            digest = entry["digest"]
            cv = entry.get("cv")
            if cv is not None and not isinstance(cv, dict):
                raise TypeError("bad cv")
            unit = entry.get("unit")
        except (KeyError, TypeError, ValueError, AttributeError):
            raise UserError(f"{where} is malformed; refit it with `mico fit`.") from None
        try:
            specs = [KernelSpec.from_dict(d) for d in spec_dicts]
        except UserError as e:
            raise UserError(f"{where} has an invalid kernel: {e}") from None
        except (KeyError, TypeError, ValueError, AttributeError):
            raise UserError(f"{where} has a malformed kernel in its training data; refit it with `mico fit`.") from None
        if any(s.op != op for s in specs):
            raise UserError(f"{where} has training kernels of another op; refit it with `mico fit`.")
        if digest != training_digest(specs, values):
            raise UserError(
                f"{where} does not match its sha256 digest, so the file was modified or corrupted; refit it with `mico fit`."
            )
        proxy = cls(**{**config, "op": op})
        proxy.fit(specs, values, cv=False, unit=unit, target=tgt.get("name"), fingerprint=tgt.get("fingerprint"))
        proxy.cv_ = cv
        check = entry.get("check")
        if isinstance(check, list) and check:
            again = proxy.predict(specs[: len(check)])
            if len(check) != len(again) or not np.array_equal(np.asarray(check, dtype=np.float64), again):
                log.warning("%s: refitting did not reproduce the saved predictions exactly (saved with %s, now %s)",
                            where, entry.get("versions"), _versions())
        return proxy


def _versions() -> dict:
    import sklearn

    return {"scikit-learn": sklearn.__version__, "numpy": np.__version__}


# ---- files ------------------------------------------------------------------------
def save_proxies(proxies: Mapping[str, LatencyProxy] | "ModelLatency", path: str | Path) -> Path:
    """Write one proxy file with a proxy per op (atomically); returns the path."""
    if isinstance(proxies, ModelLatency):
        proxies = proxies.proxies
    if not proxies:
        raise UserError("there is no proxy to save.")
    doc = {"format": FORMAT, "version": VERSION, "proxies": {}}
    for op, p in proxies.items():
        if p.op != op:
            raise UserError(f"the proxy stored under {op!r} is a {p.op} proxy.")
        doc["proxies"][op] = p.to_entry()
    path = Path(path)
    text = json.dumps(doc, indent=1, sort_keys=True, allow_nan=False)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text + "\n")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as e:
        raise UserError(f"cannot write proxy file {path}: {e.strerror or e}.") from None
    return path


def _read_doc(path: str | Path) -> dict:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"proxy file {path} does not exist; create it with `mico fit ... -o {path}`.") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read proxy file {path} ({getattr(e, 'strerror', None) or e}).") from None
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise UserError(f"{path} is not a mico proxy file (it is not valid JSON).") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise UserError(f"{path} is not a mico proxy file (its 'format' is not {FORMAT!r}).")
    if doc.get("version") != VERSION:
        raise UserError(f"{path} is a mico proxy file of version {doc.get('version')!r}; this mico-hil reads version {VERSION}.")
    entries = doc.get("proxies")
    if not isinstance(entries, dict) or not entries:
        raise UserError(f"{path} holds no proxies; refit it with `mico fit`.")
    unknown = [k for k in entries if k not in OPS]
    if unknown:
        raise UserError(f"{path} holds a proxy for unknown op {unknown[0]!r}; use one of {', '.join(OPS)}.")
    return entries


def load_proxies(path: str | Path, other: float = 0.0) -> "ModelLatency":
    """Every proxy of a proxy file, as a ModelLatency (see there for `other`)."""
    entries = _read_doc(path)
    return ModelLatency({op: LatencyProxy._from_entry(e, op, path) for op, e in entries.items()}, other=other)


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
            raise UserError("ModelLatency needs at least one fitted proxy.")
        for op, p in self.proxies.items():
            if not isinstance(p, LatencyProxy) or p.op != op:
                raise UserError(f"the proxy given for {op!r} is not a {op} LatencyProxy.")
            p._check_fitted()
        units = {p.unit for p in self.proxies.values()}
        if len(units) > 1:
            raise UserError(f"the proxies predict in different units ({', '.join(map(str, units))}); fit them on one target.")
        try:
            self.other = float(other)
        except (TypeError, ValueError):
            raise UserError(f"other={other!r} must be a number (the latency of the ops without a proxy).") from None
        if not math.isfinite(self.other) or self.other < 0:
            raise UserError(f"other={other!r} must be a finite, non-negative latency.")
        self._cache: dict[KernelSpec, float] = {}

    @property
    def unit(self) -> str | None:
        return next(iter(self.proxies.values())).unit

    @property
    def ops(self) -> list[str]:
        return sorted(self.proxies)

    def predict(self, specs: Iterable[KernelSpec]) -> tuple[np.ndarray, float]:
        """(per-kernel latencies in input order, total = their sum + other)."""
        specs = as_specs(specs)
        out = np.empty(len(specs))
        todo: dict[str, list[int]] = {}
        for i, s in enumerate(specs):
            v = self._cache.get(s)
            if v is None:
                if s.op not in self.proxies:
                    raise UserError(f"there is no {s.op} proxy for kernel {s}; fit one with `mico fit --op {s.op}`.")
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
