"""Proxy parity plots: out-of-fold predicted vs measured latency per op.

The predictions are recomputed here with `proxy.cv.out_of_fold` on the training
data the proxy file holds (every bit-width of a shape held out together), so
the plot shows exactly the error a search would see on shapes the proxy never
measured.  The metrics saved in the file at fit time are shown next to the
recomputed ones; a difference is flagged (different library versions, or a file
written by something else).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.errors import UserError
from harness.spec import OPS

from .common import fmt_pct, fmt_rho, new_figure, plottable, save_figure, unique_name

_BIT_COLORS = {1: "#1b9e77", 2: "#d95f02", 4: "#7570b3", 8: "#e7298a"}


@dataclass
class Parity:
    op: str
    target: str | None
    fingerprint: str | None
    unit: str | None
    features: str
    model: str
    n: int
    n_shapes: int
    metrics: dict | None = None          # recomputed: mape, within5, within10, spearman, n, n_groups, n_splits
    saved: dict | None = None            # the cv block of the proxy file
    note: str | None = None              # why there is no plot, or a saved/recomputed mismatch
    measured: list[float] = field(default_factory=list)
    predicted: list[float] = field(default_factory=list)
    bits: list[tuple[int, int]] = field(default_factory=list)
    png: str | None = None

    @property
    def title(self) -> str:
        return f"{self.op} proxy ({self.model} on {self.features})" + (f" · {self.target}" if self.target else "")

    def fmt(self) -> dict:
        m = self.metrics or {}
        s = self.saved or {}
        return {"mape": fmt_pct(m.get("mape")), "within5": fmt_pct(m.get("within5"), 1),
                "within10": fmt_pct(m.get("within10"), 1), "spearman": fmt_rho(m.get("spearman")),
                "saved_mape": fmt_pct(s.get("mape")), "saved_spearman": fmt_rho(s.get("spearman"))}

    def to_dict(self) -> dict:
        return {"op": self.op, "target": self.target, "fingerprint": self.fingerprint, "unit": self.unit,
                "features": self.features, "model": self.model, "n": self.n, "n_shapes": self.n_shapes,
                "cv": self.metrics, "saved_cv": self.saved, "note": self.note, "png": self.png}


def compute(proxy_path: str | Path) -> list[Parity]:
    """Out-of-fold predictions and metrics of every proxy in a proxy file."""
    from proxy.cv import metrics, out_of_fold
    from proxy.model import load_proxies

    ml = load_proxies(proxy_path)   # validates the file (format, digest) -> UserError
    out = []
    for op in sorted(ml.proxies, key=lambda o: (OPS.index(o) if o in OPS else len(OPS), o)):
        p = ml.proxies[op]
        specs, y = list(p.train_specs_), np.asarray(p.train_values_, dtype=float)
        saved = p.cv_ if isinstance(p.cv_, dict) else None
        par = Parity(op=op, target=p.target, fingerprint=p.fingerprint, unit=p.unit, features=p.features,
                     model=p.model, n=len(specs), n_shapes=int(p.n_shapes), saved=saved,
                     bits=[(s.qa, s.qw) for s in specs])
        n_splits = saved.get("n_splits") if saved and saved.get("scheme", "grouped") == "grouped" else None
        if not isinstance(n_splits, int) or not 2 <= n_splits <= par.n_shapes:
            n_splits = None
        try:
            yy, pred, folds = out_of_fold(p, specs, y, scheme="grouped", n_splits=n_splits)
            m = metrics(yy, pred)
        except UserError as e:
            par.note = f"no cross-validation: {e}"
            out.append(par)
            continue
        m.update(n_groups=par.n_shapes, n_splits=len(folds), scheme="grouped")
        par.metrics = m
        par.measured, par.predicted = yy.tolist(), pred.tolist()
        if saved and is_close(saved.get("mape"), m["mape"]) is False:
            par.note = (f"the proxy file says MAPE {fmt_pct(saved.get('mape'))} "
                        f"({saved.get('scheme', '?')} CV at fit time); recomputed here: {fmt_pct(m['mape'])}")
        out.append(par)
    return out


def is_close(a, b, rel: float = 1e-6) -> bool | None:
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
        return None
    return math.isclose(float(a), float(b), rel_tol=rel, abs_tol=1e-9)


def plot(par: Parity, out_dir: Path, used: set[str]) -> str | None:
    """Log-log parity plot with y=x, the ±10 % band and dashed ±5 % lines."""
    if par.metrics is None or not par.measured:
        return None
    y = np.asarray(par.measured, dtype=float)
    p = np.asarray(par.predicted, dtype=float)
    if not plottable(y, p):
        par.note = (f"latencies from {y.min():.3g} to {y.max():.3g} (predicted up to {np.nanmax(p):.3g}) are too far "
                    "apart to plot; the store holds implausible values")
        return None
    floor = y.min() / 100.0
    p_plot = np.maximum(p, floor)   # a proxy may predict 0; log axes cannot show it
    lo = min(y.min(), p_plot.min()) / 1.3
    hi = max(y.max(), p_plot.max()) * 1.3
    fig = new_figure(6.0, 5.4)
    ax = fig.add_subplot()
    xs = np.geomspace(lo, hi, 200)
    ax.fill_between(xs, xs * 0.9, xs * 1.1, color="0.85", label="±10 %", zorder=0)
    ax.plot(xs, xs * 0.95, "--", color="0.55", lw=0.8, label="±5 %", zorder=1)
    ax.plot(xs, xs * 1.05, "--", color="0.55", lw=0.8, zorder=1)
    ax.plot(xs, xs, "-", color="black", lw=1.0, label="y = x", zorder=1)
    wide = np.asarray([max(a, w) for a, w in par.bits])
    for b in sorted(set(wide.tolist())):
        sel = wide == b
        ax.scatter(y[sel], p_plot[sel], s=14, alpha=0.8, color=_BIT_COLORS.get(b, "0.3"),
                   edgecolors="none", label=f"max(qa,qw) = {b}", zorder=2)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal")
    unit = f" ({par.unit})" if par.unit else ""
    ax.set_xlabel(f"measured latency{unit}")
    ax.set_ylabel(f"predicted latency, out of fold{unit}")
    f = par.fmt()
    m = par.metrics
    ax.set_title(f"{par.title}\nMAPE {f['mape']} · within ±5 % {f['within5']} · within ±10 % {f['within10']}"
                 f" · Spearman ρ {f['spearman']}\n{m['n']} kernels, {m['n_groups']} shapes,"
                 f" {m['n_splits']}-fold shape-grouped CV", fontsize=9)
    ax.grid(True, which="major", color="0.9", lw=0.6)
    ax.legend(loc="upper left", fontsize=8, framealpha=0.9)
    par.png = save_figure(fig, out_dir, unique_name(f"parity_{par.op}", used))
    return par.png


def render_all(proxy_path: str | Path, out_dir: Path, used: set[str]) -> list[Parity]:
    items = compute(proxy_path)
    for par in items:
        plot(par, out_dir, used)
    return items
