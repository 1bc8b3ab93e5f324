"""Deploy validation: bit-exactness, accuracy and measured vs predicted latency.

Reads the deploy.json written by `mico deploy` through `mpq.deploy_report.DeployReport`
and turns it into an HTML summary, a per-layer table and a bar chart of the
measured (median, IQR error bar) and predicted latency of every layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mpq.deploy_report import DeployLayer, DeployReport

from .common import fmt_acc, fmt_num, fmt_pct, is_number, new_figure, plottable, save_figure, unique_name


@dataclass
class Deploy:
    path: str
    report: DeployReport
    png: str | None = None

    @property
    def layers(self) -> list[DeployLayer]:
        return self.report.latency.layers

    @property
    def unit(self) -> str | None:
        return self.report.latency.unit

    @property
    def n_mismatch(self) -> int | None:
        return self.report.mismatches

    @property
    def mismatch_ids(self) -> list[int]:
        return self.report.mismatch_ids

    @property
    def bit_exact(self) -> bool | None:
        return self.report.bit_exact

    @property
    def verdict(self) -> str:
        n = self.report.n_images
        n_txt = f"{n} images" if n is not None else "every image"
        if self.bit_exact:
            return f"bit-exact: the target's logits equal the integer reference on {n_txt}"
        if self.bit_exact is False:
            diff = self.report.max_abs_diff
            return (f"NOT bit-exact: {fmt_num(self.n_mismatch)} of {n_txt} differ"
                    + (f" (max |diff| {fmt_num(diff)})" if diff is not None else ""))
        return "bit-exactness not recorded"

    def summary_rows(self) -> list[tuple[str, str]]:
        r = self.report
        rows: list[tuple[str, Any]] = [
            ("target", r.target), ("fingerprint", r.fingerprint), ("scheme", r.scheme),
            ("model", r.model), ("dataset", r.dataset),
            ("images", fmt_num(r.n_images) if r.n_images is not None else None),
            ("bit_exact", {True: "yes", False: "NO"}.get(self.bit_exact, "n/a")),
            ("mismatches", fmt_num(self.n_mismatch) if self.n_mismatch is not None else None),
        ]
        if self.mismatch_ids:
            more = "" if len(self.mismatch_ids) <= 10 else ", …"
            rows.append(("mismatching images", ", ".join(map(str, self.mismatch_ids[:10])) + more))
        elif r.first_mismatch is not None:
            rows.append(("first mismatching image", str(r.first_mismatch)))
        rows.append(("max |diff| of logits", fmt_num(r.max_abs_diff) if r.max_abs_diff is not None else None))
        for k, label in (("target", "accuracy on the target"), ("integer_reference", "accuracy, integer reference"),
                         ("fakequant", "accuracy, fake-quant (PyTorch)")):
            if getattr(r.accuracy, k) is not None:
                rows.append((label, fmt_acc(getattr(r.accuracy, k))))
        lat = r.latency
        u = f" {self.unit}" if self.unit else ""
        if is_number(lat.measured_total_median):
            iqr = lat.measured_total_iqr
            rows.append(("measured latency (median)", f"{fmt_num(lat.measured_total_median)}{u}"
                         + (f" (IQR {fmt_num(iqr)})" if is_number(iqr) else "")))
        if lat.predicted_total is not None:
            rows.append(("predicted latency", f"{fmt_num(lat.predicted_total)}{u}"
                         + (f" ({lat.predicted_covers})" if lat.predicted_covers else "")))
        if is_number(lat.error_pct):
            rows.append(("prediction error", fmt_pct(lat.error_pct, 1, signed=True)))
        return [(k, str(v)) for k, v in rows if v not in (None, "")]

    def layer_rows(self) -> list[dict]:
        rows = []
        for l in self.layers:
            err = _error_pct(l)
            rows.append({
                "name": l.name, "kind": l.kind,
                "bits": f"{l.qa}×{l.qw}" if l.qa is not None and l.qw is not None else "",
                "spec": str(l.spec) if l.spec is not None else "",
                "measured": fmt_num(l.measured_median),
                "iqr": fmt_num(l.measured_iqr) if l.measured_iqr is not None else "",
                "predicted": fmt_num(l.predicted) if l.predicted is not None else "not modelled",
                "error": fmt_pct(err, 1, signed=True) if is_number(err) else "",
                "bad": is_number(err) and abs(err) > 10,
            })
        return rows

    def to_dict(self) -> dict:
        r, lat = self.report, self.report.latency
        return {"path": self.path, "target": r.target, "bit_exact": self.bit_exact,
                "mismatches": self.n_mismatch, "n_images": r.n_images,
                "accuracy": r.accuracy.to_dict(), "unit": self.unit,
                "measured_total_median": lat.measured_total_median,
                "predicted_total": lat.predicted_total, "error_pct": lat.error_pct, "png": self.png}


def _error_pct(l: DeployLayer) -> float | None:
    """The layer's recorded error, else the one its measured and predicted latencies give."""
    if is_number(l.error_pct):
        return l.error_pct
    if is_number(l.measured_median) and is_number(l.predicted) and l.measured_median:
        return 100.0 * (l.predicted - l.measured_median) / l.measured_median
    return None


def load(path: str | Path) -> Deploy:
    """Read and check a deploy.json; MicoError (one sentence) when it is malformed."""
    return Deploy(path=str(path), report=DeployReport.read(path))


def plot(dep: Deploy, out_dir: Path, used: set[str]) -> str | None:
    """Grouped bars per layer: measured median (IQR error bar) vs predicted."""
    layers = [l for l in dep.layers if is_number(l.measured_median)]
    if not layers:
        return None
    names = [l.name or str(i) for i, l in enumerate(layers)]
    meas = np.array([float(l.measured_median) for l in layers])
    iqr = np.array([float(l.measured_iqr) if is_number(l.measured_iqr) else 0.0 for l in layers])
    pred = np.array([float(l.predicted) if is_number(l.predicted) else np.nan for l in layers])
    if not plottable(meas, iqr, pred[np.isfinite(pred)]):
        return None
    x = np.arange(len(layers))
    fig = new_figure(max(6.0, 1.0 + 0.55 * len(layers)), 4.6)
    ax = fig.add_subplot()
    w = 0.4
    ax.bar(x - w / 2, meas, w, yerr=iqr / 2, capsize=2, color="#1f77b4", label="measured (median, IQR)")
    has_pred = np.isfinite(pred)
    ax.bar(x[has_pred] + w / 2, pred[has_pred], w, color="#ff7f0e", alpha=0.85, hatch="//", edgecolor="white",
           label="predicted (proxy)")
    pos = np.concatenate([meas[meas > 0], pred[has_pred & (pred > 0)]])
    log = pos.size and pos.max() / pos.min() > 50
    if log:
        ax.set_yscale("log")
    for i, l in enumerate(layers):
        err = _error_pct(l)
        if is_number(err):
            top = max(meas[i] + iqr[i] / 2, pred[i] if has_pred[i] else 0)
            ax.text(x[i], top * (1.15 if log else 1.02), f"{err:+.0f}%", ha="center", va="bottom", fontsize=7,
                    color="#d62728" if abs(err) > 10 else "0.25")
    ax.set_xticks(x, names, rotation=45 if len(layers) > 6 else 0, ha="right" if len(layers) > 6 else "center",
                  fontsize=8)
    ax.set_ylabel(f"latency ({dep.unit})" if dep.unit else "latency")
    ymax = max(meas.max(), np.nanmax(pred) if has_pred.any() else 0)
    if not log:
        ax.set_ylim(0, ymax * 1.15)
    else:
        ax.set_ylim(top=ymax * 3)
    tgt = dep.report.target or "target"
    ax.set_title(f"{dep.report.model or 'model'} on {tgt}: per-layer latency, measured vs predicted\n"
                 f"{dep.verdict}", fontsize=9)
    ax.grid(True, axis="y", color="0.9", lw=0.6)
    ax.set_axisbelow(True)
    ax.legend(fontsize=8, loc="upper right")
    dep.png = save_figure(fig, out_dir, unique_name("deploy_layers", used))
    return dep.png
