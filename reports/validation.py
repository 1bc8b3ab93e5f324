"""Whole-model validation in the report: predicted vs measured latency of deployed schemes.

The kernel parity plots say how well a proxy predicts one kernel; what a user
plans with is the whole model.  This section draws, per (model, target), the
predicted whole-model latency of every deployed scheme against what the device
measured, beside the same predictions after MiCo's two-point calibration, so
the reader sees at a glance whether the uncalibrated model needs it.

Validations come from `mico validate -o FILE` documents and from the store
(`mico validate --store`); the newest one per (model, target) is shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from harness.documents import read_document
from harness.errors import UserError

from .common import fmt_num, fmt_pct, fmt_rho, new_figure, save_figure, unique_name

FORMAT, VERSION = "mico-validation", 1    # as mpq.validate writes it (reports never import mpq)


@dataclass
class ValidationView:
    model: str
    target: str
    unit: str
    source: str                              # file path or "store #id"
    summary: dict
    schemes: list[dict] = field(default_factory=list)
    png: str | None = None

    @property
    def title(self) -> str:
        return f"{self.model} on {self.target}"

    def rows(self) -> list[dict]:
        out = []
        for s in self.schemes:
            e = s.get("error_pct")
            out.append({"label": s.get("label", "?"),
                        "bits": " ".join(f"{a}x{w}" for a, w in s.get("bits", [])),
                        "predicted": fmt_num(s.get("predicted")), "measured": fmt_num(s.get("measured")),
                        "error": "" if e is None else f"{e:+.1f}%", "bad": e is not None and abs(e) > 5.0,
                        "bit_exact": s.get("bit_exact")})
        return out

    def metric_rows(self) -> list[dict]:
        s = self.summary
        out = []
        for key, label in (("uncalibrated", "uncalibrated, every scheme"),
                           ("uncalibrated_random", "uncalibrated, random schemes"),
                           ("two_point", "MiCo two-point calibration, random schemes")):
            m = s.get(key)
            if not m:
                continue
            out.append({"label": label, "n": m.get("n"), "mape": fmt_pct(m.get("mape")),
                        "max": fmt_pct(m.get("max_abs_pct")), "rho": fmt_rho(m.get("spearman"))})
        lay = s.get("layers") or {}
        if lay.get("n"):
            out.append({"label": "per layer (every layer run)", "n": lay["n"], "mape": fmt_pct(lay.get("mape")),
                        "max": fmt_pct(lay.get("max_abs_pct")), "rho": "–"})
        return out

    def to_dict(self) -> dict:
        return {"model": self.model, "target": self.target, "unit": self.unit, "source": self.source,
                "summary": self.summary, "png": self.png, "n_schemes": len(self.schemes)}


def _view(doc: dict, source: str) -> ValidationView:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise UserError(f"{source} is not a mico validation document (mico validate -o).")
    try:
        return ValidationView(str(doc["model"]), str(doc["target"]), str(doc.get("unit") or ""), source,
                              dict(doc["summary"]), list(doc["schemes"]))
    except (KeyError, TypeError, ValueError):
        raise UserError(f"validation document {source} lacks its model, target, summary or schemes.") from None


def load(paths: list[str | Path], stored: list[dict]) -> list[ValidationView]:
    """Views of the given files and the store's validations, newest per (model, target)."""
    views: dict[tuple[str, str], ValidationView] = {}
    for d in stored:
        v = _view(d, f"store validation #{d.get('id')}")
        views[(v.model, v.target)] = v
    for p in paths:
        v = _view(read_document(p, FORMAT, VERSION, what="validation file"), str(p))
        views[(v.model, v.target)] = v
    return list(views.values())


def plot(v: ValidationView, out: Path, used: set[str]) -> None:
    """Predicted vs measured whole-model latency, uncalibrated and two-point calibrated."""
    pts = [(s["predicted"], s["measured"], s.get("label", "")) for s in v.schemes
           if s.get("predicted") is not None and s.get("measured")]
    if not pts:
        return
    tp = v.summary.get("two_point")
    fig = new_figure(5.2, 4.4)
    ax = fig.add_subplot(1, 1, 1)
    pred = [p for p, _, _ in pts]
    meas = [m for _, m, _ in pts]
    ends = [i for i, (_, _, lab) in enumerate(pts) if not lab.startswith("random")]
    ax.scatter(meas, pred, s=22, color="#1f77b4", label="uncalibrated", zorder=3)
    if ends:
        ax.scatter([meas[i] for i in ends], [pred[i] for i in ends], s=60, facecolors="none",
                   edgecolors="black", label="all-lowest / all-8x8", zorder=4)
    if tp:
        a, b = tp["slope"], tp["intercept"]
        ax.scatter(meas, [a * p + b for p in pred], s=14, marker="x", color="#d95f02",
                   label="two-point calibrated", zorder=2)
    lo, hi = min(meas + pred) * 0.9, max(meas + pred) * 1.1
    ax.plot([lo, hi], [lo, hi], color="grey", lw=1)
    for f in (0.95, 1.05):
        ax.plot([lo, hi], [lo * f, hi * f], color="grey", lw=0.6, ls="--")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    unit = f" ({v.unit})" if v.unit else ""
    ax.set_xlabel(f"measured whole-model latency{unit}")
    ax.set_ylabel(f"predicted{unit}")
    ax.set_title(v.title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    v.png = save_figure(fig, out, unique_name(f"validation-{v.model}-{v.target}", used))
