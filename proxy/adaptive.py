"""The acquisition step of ``mico sweep --plan adaptive:N``: which shapes to measure next.

The sweep (harness/adaptive.py) owns the store and the measuring; harness/
never imports this package, so it finds `Sampler` through the
``mico.samplers`` entry point.  Per op, a sampler is refitted on every
measured kernel of the plan after each batch, then ranks the unmeasured
candidate shapes by how much a committee of proxies disagrees about them:

- the committee: the proxy the plan judges itself by (``terms`` features,
  non-negative linear -- the one `mico fit --features auto` picks on every
  measured target), refitted on `bootstrap` resamples of the measured *shapes*
  (a shape's bit-widths stay together, as in grouped CV), plus one
  ``analytic`` linear proxy fitted on everything (another view of the cost:
  where the two feature sets extrapolate differently, a measurement decides);
- the disagreement of a shape: the standard deviation of the members'
  log-predictions, averaged over its bit-width pairs (relative error, as the
  proxy is judged).

The plan's stopping criterion is the shape-grouped CV MAPE of that same
``terms`` proxy (`cv_mape`), the error `mico fit` reports.
"""

from __future__ import annotations

import numpy as np

from harness.errors import MicoError
from harness.spec import KernelSpec

from .cv import cross_validate
from .model import LatencyProxy
from .terms import family_of

MAIN = ("terms", "linear")
OTHERS = (("analytic", "linear"),)
#: measured shapes below which the CV error is too noisy to stop on (5 folds need 5 shapes)
MIN_CV_SHAPES = 5


class Sampler:
    """Committee of proxies of one op on one target; `fit`, then `cv_mape` and `choose`."""

    def __init__(self, op: str, target: str | None = None, seed: int = 0, bootstrap: int = 6):
        self.op, self.target, self.seed, self.bootstrap = op, target, seed, bootstrap
        self.specs: list[KernelSpec] = []
        self.values = np.zeros(0)
        self.members: list[LatencyProxy] = []
        self.family: str | None = None

    def _proxy(self, features: str, model: str) -> LatencyProxy:
        return LatencyProxy(self.op, features, model, lookup=False, family=self.family)

    def fit(self, specs: list[KernelSpec], values) -> None:
        """Refit the committee on every measured kernel of the op so far."""
        self.specs = list(specs)
        self.values = np.asarray(values, dtype=np.float64)
        self.family = family_of(self.target, self.specs)
        shapes = sorted({s.shape for s in self.specs})
        self.members = []
        if len(self.specs) < 2:
            return
        self.members.append(self._proxy(*MAIN).fit(self.specs, self.values, cv=False))
        for f, m in OTHERS:
            try:
                self.members.append(self._proxy(f, m).fit(self.specs, self.values, cv=False))
            except MicoError:
                pass              # a feature set that cannot describe these kernels (BitFusion's odd widths)
        if len(shapes) < 2:
            return
        rng = np.random.default_rng(self.seed + len(shapes))
        by_shape = {sh: [i for i, s in enumerate(self.specs) if s.shape == sh] for sh in shapes}
        for _ in range(self.bootstrap):
            pick = rng.choice(len(shapes), size=len(shapes), replace=True)
            idx = [i for j in pick for i in by_shape[shapes[j]]]
            if len({self.specs[i].shape for i in idx}) < 2:
                continue
            self.members.append(self._proxy(*MAIN).fit([self.specs[i] for i in idx], self.values[idx], cv=False))

    def cv_mape(self) -> float | None:
        """Shape-grouped CV MAPE (%) of the plan's proxy; None below MIN_CV_SHAPES shapes."""
        if len({s.shape for s in self.specs}) < MIN_CV_SHAPES:
            return None
        return float(cross_validate(self._proxy(*MAIN), self.specs, self.values)["mape"])

    def disagreement(self, shapes: list[tuple], pairs: list[tuple[int, int]]) -> np.ndarray:
        """Per shape: std of the members' log-predictions, averaged over its pairs."""
        specs = [KernelSpec(self.op, sh, a, w) for sh in shapes for a, w in pairs]
        X: dict[str, np.ndarray] = {}         # the features once per feature set, not per member
        preds = []
        for m in self.members:
            if m.features not in X:
                X[m.features] = m._X(specs)
            preds.append(np.maximum(m.regressor_.predict(X[m.features]), 0.0))   # linear members: no log
        preds = np.stack(preds)
        logp = np.log(np.maximum(preds, 1e-9 * max(1.0, float(np.max(preds)))))
        return logp.std(axis=0).reshape(len(shapes), len(pairs)).mean(axis=1)

    def choose(self, shapes: list[tuple], pairs: list[tuple[int, int]], k: int) -> list[tuple]:
        """The k candidate shapes the committee disagrees most about (ties: candidate order)."""
        if not shapes or k <= 0:
            return []
        if len(self.members) < 2:
            return list(shapes[:k])
        score = self.disagreement(shapes, pairs)
        order = np.argsort(-score, kind="stable")
        return [shapes[i] for i in order[:k]]
