"""Deploy validation: bit-exactness, accuracy and measured vs predicted latency.

Reads the deploy.json written by `mico deploy` (``"format": "mico-deploy"``)
and turns it into an HTML summary, a per-layer table and a bar chart of the
measured (median, IQR error bar) and predicted latency of every layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import UserError

from .common import fmt_acc, fmt_num, fmt_pct, is_number, new_figure, read_json, save_figure, spec_text, unique_name


@dataclass
class Deploy:
    path: str
    doc: dict
    layers: list[dict]
    unit: str | None
    n_mismatch: int | None
    mismatch_ids: list[int] = field(default_factory=list)
    png: str | None = None

    @property
    def bit_exact(self) -> bool | None:
        v = self.doc.get("bit_exact")
        return v if isinstance(v, bool) else None

    @property
    def verdict(self) -> str:
        n = self.doc.get("n_images")
        n_txt = f"{n} images" if n is not None else "every image"
        if self.bit_exact:
            return f"bit-exact: the target's logits equal the integer reference on {n_txt}"
        if self.bit_exact is False:
            diff = self.doc.get("max_abs_diff")
            return (f"NOT bit-exact: {fmt_num(self.n_mismatch)} of {n_txt} differ"
                    + (f" (max |diff| {fmt_num(diff)})" if diff is not None else ""))
        return "bit-exactness not recorded"

    def summary_rows(self) -> list[tuple[str, str]]:
        d = self.doc
        rows: list[tuple[str, Any]] = [
            ("target", d.get("target")), ("fingerprint", d.get("fingerprint")), ("scheme", d.get("scheme")),
            ("model", d.get("model")), ("dataset", d.get("dataset")),
            ("images", fmt_num(d.get("n_images")) if d.get("n_images") is not None else None),
            ("bit_exact", {True: "yes", False: "NO"}.get(self.bit_exact, "n/a")),
            ("mismatches", fmt_num(self.n_mismatch) if self.n_mismatch is not None else None),
        ]
        if self.mismatch_ids:
            more = "" if len(self.mismatch_ids) <= 10 else ", …"
            rows.append(("mismatching images", ", ".join(map(str, self.mismatch_ids[:10])) + more))
        elif d.get("first_mismatch") is not None:
            rows.append(("first mismatching image", str(d["first_mismatch"])))
        rows.append(("max |diff| of logits", fmt_num(d.get("max_abs_diff")) if d.get("max_abs_diff") is not None else None))
        acc = d.get("accuracy") if isinstance(d.get("accuracy"), dict) else {}
        for k, label in (("target", "accuracy on the target"), ("integer_reference", "accuracy, integer reference"),
                         ("fakequant", "accuracy, fake-quant (PyTorch)")):
            if k in acc:
                rows.append((label, fmt_acc(acc[k])))
        lat = self.latency
        u = f" {self.unit}" if self.unit else ""
        if is_number(lat.get("measured_total_median")):
            iqr = lat.get("measured_total_iqr")
            rows.append(("measured latency (median)", f"{fmt_num(lat['measured_total_median'])}{u}"
                         + (f" (IQR {fmt_num(iqr)})" if is_number(iqr) else "")))
        if lat.get("predicted_total") is not None:
            rows.append(("predicted latency", f"{fmt_num(lat['predicted_total'])}{u}"
                         + (f" ({lat['predicted_covers']})" if lat.get("predicted_covers") else "")))
        if is_number(lat.get("error_pct")):
            rows.append(("prediction error", fmt_pct(lat["error_pct"], 1, signed=True)))
        return [(k, str(v)) for k, v in rows if v not in (None, "")]

    @property
    def latency(self) -> dict:
        lat = self.doc.get("latency")
        return lat if isinstance(lat, dict) else {}

    def layer_rows(self) -> list[dict]:
        rows = []
        for l in self.layers:
            err = l.get("error_pct")
            if not is_number(err) and is_number(l.get("measured_median")) and is_number(l.get("predicted")) \
                    and l["measured_median"]:
                err = 100.0 * (l["predicted"] - l["measured_median"]) / l["measured_median"]
            rows.append({
                "name": str(l.get("name", "")), "kind": str(l.get("kind") or ""),
                "bits": f"{l['qa']}×{l['qw']}" if l.get("qa") is not None and l.get("qw") is not None else "",
                "spec": spec_text(l.get("spec")),
                "measured": fmt_num(l.get("measured_median")),
                "iqr": fmt_num(l.get("measured_iqr")) if l.get("measured_iqr") is not None else "",
                "predicted": fmt_num(l.get("predicted")) if l.get("predicted") is not None else "not modelled",
                "error": fmt_pct(err, 1, signed=True) if is_number(err) else "",
                "bad": is_number(err) and abs(err) > 10,
            })
        return rows

    def to_dict(self) -> dict:
        lat = self.latency
        return {"path": self.path, "target": self.doc.get("target"), "bit_exact": self.bit_exact,
                "mismatches": self.n_mismatch, "n_images": self.doc.get("n_images"),
                "accuracy": self.doc.get("accuracy"), "unit": self.unit,
                "measured_total_median": lat.get("measured_total_median"),
                "predicted_total": lat.get("predicted_total"), "error_pct": lat.get("error_pct"), "png": self.png}


def _bad(path, why: str) -> UserError:
    return UserError(f"deploy file {path} is malformed: {why}; rerun `mico deploy` to write it again.")


def load(path: str | Path) -> Deploy:
    doc = read_json(path, "deploy file", "mico-deploy")
    if doc.get("version", 1) != 1:
        raise UserError(f"deploy file {path} is of version {doc.get('version')!r}; this mico-hil reads version 1.")
    lat = doc.get("latency", {})
    if not isinstance(lat, dict):
        raise _bad(path, "'latency' is not an object")
    layers = lat.get("layers", [])
    if not isinstance(layers, list) or not all(isinstance(l, dict) for l in layers):
        raise _bad(path, "'latency.layers' is not a list of objects")
    for i, l in enumerate(layers):
        for k in ("measured_median", "measured_iqr", "predicted", "error_pct"):
            if l.get(k) is not None and not is_number(l[k]):
                raise _bad(path, f"layer {i} has a non-numeric '{k}'")
    if "bit_exact" in doc and not isinstance(doc["bit_exact"], bool):
        raise _bad(path, "'bit_exact' is not true or false")
    mm = doc.get("mismatches")
    ids: list[int] = []
    if isinstance(mm, list):
        ids = [int(v) for v in mm if is_number(v)]
        n_mm = len(mm)
    elif is_number(mm):
        n_mm = int(mm)
    elif mm is None:
        n_mm = 0 if doc.get("bit_exact") is True else None
    else:
        raise _bad(path, "'mismatches' is neither a count nor a list of images")
    unit = lat.get("unit")
    return Deploy(path=str(path), doc=doc, layers=layers, unit=None if unit is None else str(unit),
                  n_mismatch=n_mm, mismatch_ids=ids)


def plot(dep: Deploy, out_dir: Path, used: set[str]) -> str | None:
    """Grouped bars per layer: measured median (IQR error bar) vs predicted."""
    layers = [l for l in dep.layers if is_number(l.get("measured_median"))]
    if not layers:
        return None
    names = [str(l.get("name", i)) for i, l in enumerate(layers)]
    meas = np.array([float(l["measured_median"]) for l in layers])
    iqr = np.array([float(l["measured_iqr"]) if is_number(l.get("measured_iqr")) else 0.0 for l in layers])
    pred = np.array([float(l["predicted"]) if is_number(l.get("predicted")) else np.nan for l in layers])
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
        err = l.get("error_pct")
        if not is_number(err) and has_pred[i] and meas[i]:
            err = 100.0 * (pred[i] - meas[i]) / meas[i]
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
    tgt = dep.doc.get("target") or "target"
    ax.set_title(f"{dep.doc.get('model') or 'model'} on {tgt}: per-layer latency, measured vs predicted\n"
                 f"{dep.verdict}", fontsize=9)
    ax.grid(True, axis="y", color="0.9", lw=0.6)
    ax.set_axisbelow(True)
    ax.legend(fontsize=8, loc="upper right")
    dep.png = save_figure(fig, out_dir, unique_name("deploy_layers", used))
    return dep.png
