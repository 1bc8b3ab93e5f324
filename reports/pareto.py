"""The search's Pareto front (accuracy vs predicted latency) from a scheme.json.

scheme.json (``"format": "mico-scheme"``) must hold ``layers`` (a list of
``{name, kind, qa, qw, spec}``); everything else is optional: ``accuracy``
({float, fakequant, integer} or one number), ``predicted_latency`` ({unit, total,
per_layer: list aligned with layers or {name: value}}), ``budget`` ({text, value,
unit} or a number), ``bops``, ``size_bits``, ``searcher``, ``evaluations``,
``pareto`` and ``candidates`` ([{bits, accuracy, latency[, feasible]}]).  When
``pareto`` is missing it is computed from ``candidates``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.documents import read_document
from harness.errors import UserError

from .common import fmt_acc, fmt_num, is_number, new_figure, plottable, save_figure, spec_text, unique_name


@dataclass
class Point:
    latency: float
    accuracy: float
    bits: tuple[int, ...] | None = None
    feasible: bool | None = None


@dataclass
class Scheme:
    path: str
    doc: dict
    layers: list[dict]
    accuracy: dict[str, float]
    unit: str | None
    total: float | None
    per_layer: list[float | None]
    budget_value: float | None
    budget_text: str | None
    budget_unit: str | None
    pareto: list[Point]
    candidates: list[Point]
    pareto_computed: bool = False
    chosen: Point | None = None
    chosen_source: str = ""
    png: str | None = None
    notes: list[str] = field(default_factory=list)

    def summary_rows(self) -> list[tuple[str, str]]:
        d = self.doc
        rows = [("model", d.get("model")), ("dataset", d.get("dataset")), ("searcher", d.get("searcher")),
                ("evaluations", fmt_num(d.get("evaluations")) if d.get("evaluations") is not None else None)]
        for k in ("float", "fakequant", "integer"):
            if k in self.accuracy:
                rows.append((f"accuracy ({k})", fmt_acc(self.accuracy[k])))
        if self.total is not None:
            rows.append(("predicted latency", f"{fmt_num(self.total)} {self.unit or ''}".strip()))
        if self.budget_value is not None or self.budget_text:
            b = f"{fmt_num(self.budget_value)} {self.budget_unit or self.unit or ''}".strip() if self.budget_value is not None else ""
            if self.budget_text and self.budget_text != b:
                b = f"{b} ({self.budget_text})" if b else self.budget_text
            rows.append(("latency budget", b))
        if self.total is not None and self.budget_value:
            rows.append(("budget used", f"{100 * self.total / self.budget_value:.1f}%"))
        if is_number(d.get("bops")):
            rows.append(("BOPs", fmt_num(d["bops"])))
        if is_number(d.get("size_bits")):
            rows.append(("weights size", f"{fmt_num(d['size_bits'])} bits ({d['size_bits'] / 8192:.2f} KiB)"))
        rows.append(("Pareto points", f"{len(self.pareto)}" + (" (computed from the candidates)" if self.pareto_computed else "")))
        if self.candidates:
            feas = sum(1 for c in self.candidates if c.feasible is not False)
            rows.append(("candidates", f"{len(self.candidates)} ({feas} within budget)"))
        return [(k, str(v)) for k, v in rows if v not in (None, "")]

    def layer_rows(self) -> list[dict]:
        rows = []
        known = [v for v in self.per_layer if v is not None]
        tot = sum(known) if known else None
        for l, v in zip(self.layers, self.per_layer):
            rows.append({"name": l["name"], "kind": l.get("kind") or "", "qa": _s(l.get("qa")), "qw": _s(l.get("qw")),
                         "spec": spec_text(l.get("spec")), "predicted": fmt_num(v) if v is not None else "",
                         "share": f"{100 * v / tot:.1f}%" if v is not None and tot else ""})
        return rows

    def to_dict(self) -> dict:
        c = self.chosen
        return {"path": self.path, "model": self.doc.get("model"), "layers": len(self.layers),
                "bits": [[l.get("qa"), l.get("qw")] for l in self.layers], "accuracy": self.accuracy,
                "predicted_total": self.total, "unit": self.unit, "budget": self.budget_value,
                "pareto_points": len(self.pareto), "candidates": len(self.candidates),
                "chosen": None if c is None else {"latency": c.latency, "accuracy": c.accuracy,
                                                   "source": self.chosen_source},
                "png": self.png}


def _s(v: Any) -> str:
    return "" if v is None else str(v)


def _bad(path, why: str) -> UserError:
    return UserError(f"scheme file {path} is malformed: {why}.")


def _flat_bits(bits: Any) -> tuple[int, ...] | None:
    out: list[int] = []

    def walk(x):
        if isinstance(x, (list, tuple)):
            for e in x:
                walk(e)
        elif isinstance(x, dict) and "qa" in x and "qw" in x:
            walk([x["qa"], x["qw"]])
        elif is_number(x):
            out.append(int(x))
        else:
            raise TypeError
    try:
        walk(bits)
    except TypeError:
        return None
    return tuple(out) if out else None


def _points(path, items: Any, key: str) -> list[Point]:
    if items is None:
        return []
    if not isinstance(items, list):
        raise _bad(path, f"'{key}' is not a list")
    pts = []
    for i, e in enumerate(items):
        if not isinstance(e, dict) or not is_number(e.get("accuracy")) or not is_number(e.get("latency")):
            raise _bad(path, f"{key} entry {i} has no numeric 'accuracy' and 'latency'")
        feas = e.get("feasible")
        pts.append(Point(float(e["latency"]), float(e["accuracy"]), _flat_bits(e.get("bits")),
                         feas if isinstance(feas, bool) else None))
    return pts


def pareto_front(points: list[Point]) -> list[Point]:
    """Non-dominated points (lower latency, higher accuracy), by latency."""
    front: list[Point] = []
    best = -np.inf
    for p in sorted(points, key=lambda p: (p.latency, -p.accuracy)):
        if p.accuracy > best:
            front.append(p)
            best = p.accuracy
    return front


def load(path: str | Path) -> Scheme:
    """Read and check a scheme.json; UserError (one sentence) when it is malformed."""
    # the format of mpq.scheme.SchemeDoc, read leniently here (a report shows whatever parts a file has)
    doc = read_document(path, "mico-scheme", 1, what="scheme file")
    layers = doc.get("layers")
    if not isinstance(layers, list) or not layers:
        raise _bad(path, "it has no 'layers' list")
    for i, l in enumerate(layers):
        if not isinstance(l, dict) or not isinstance(l.get("name"), str):
            raise _bad(path, f"layer {i} is not an object with a 'name'")
        for k in ("qa", "qw"):
            if l.get(k) is not None and not (is_number(l[k]) and int(l[k]) == l[k] and l[k] > 0):
                raise _bad(path, f"layer {l['name']!r} has {k}={l[k]!r}, which is not a bit-width")
    acc_raw = doc.get("accuracy")
    if is_number(acc_raw):
        accuracy = {"fakequant": float(acc_raw)}
    elif isinstance(acc_raw, dict):
        accuracy = {k: float(v) for k, v in acc_raw.items() if is_number(v)}
    elif acc_raw is None:
        accuracy = {}
    else:
        raise _bad(path, "'accuracy' is neither a number nor an object")
    pl = doc.get("predicted_latency")
    if pl is not None and not isinstance(pl, dict):
        raise _bad(path, "'predicted_latency' is not an object")
    pl = pl or {}
    total = float(pl["total"]) if is_number(pl.get("total")) else None
    per_raw = pl.get("per_layer")
    if isinstance(per_raw, list) and len(per_raw) == len(layers):
        per_layer = [float(v) if is_number(v) else None for v in per_raw]
    elif isinstance(per_raw, dict):
        per_layer = [float(per_raw[l["name"]]) if is_number(per_raw.get(l["name"])) else None for l in layers]
    else:
        per_layer = [None] * len(layers)
    budget = doc.get("budget")
    b_value = b_text = b_unit = None
    if is_number(budget):
        b_value = float(budget)
    elif isinstance(budget, dict):
        b_value = float(budget["value"]) if is_number(budget.get("value")) else None
        b_text = str(budget["text"]) if budget.get("text") is not None else None
        b_unit = str(budget["unit"]) if budget.get("unit") is not None else None
    elif isinstance(budget, str):
        b_text = budget
    sch = Scheme(path=str(path), doc=doc, layers=layers, accuracy=accuracy,
                 unit=str(pl["unit"]) if pl.get("unit") is not None else None, total=total, per_layer=per_layer,
                 budget_value=b_value, budget_text=b_text, budget_unit=b_unit,
                 pareto=_points(path, doc.get("pareto"), "pareto"),
                 candidates=_points(path, doc.get("candidates"), "candidates"))
    if not sch.pareto and sch.candidates:
        sch.pareto = pareto_front([c for c in sch.candidates if c.feasible is not False] or sch.candidates)
        sch.pareto_computed = True
    if b_unit and sch.unit and b_unit != sch.unit:
        sch.notes.append(f"the budget is in {b_unit} but the latencies in {sch.unit}; the budget line is not drawn.")
    _choose(sch)
    return sch


def _choose(sch: Scheme) -> None:
    """Where the chosen scheme sits: its own entry in pareto/candidates, else its totals."""
    bits = _flat_bits([[l.get("qa"), l.get("qw")] for l in sch.layers if l.get("qa") is not None])
    for src, pts in (("pareto", sch.pareto), ("candidates", sch.candidates)):
        for p in pts:
            if bits is not None and p.bits == bits:
                sch.chosen, sch.chosen_source = p, f"its {src} entry"
                return
    acc_key = next((k for k in ("fakequant", "integer", "float") if k in sch.accuracy), None)
    if sch.total is not None and acc_key is not None:
        sch.chosen = Point(sch.total, sch.accuracy[acc_key], bits)
        sch.chosen_source = f"predicted total and {acc_key} accuracy"


def plot(sch: Scheme, out_dir: Path, used: set[str]) -> str | None:
    if not (sch.pareto or sch.candidates or sch.chosen):
        sch.notes.append("the scheme holds no Pareto points or candidates to plot.")
        return None
    pts = sch.pareto + sch.candidates + ([sch.chosen] if sch.chosen else [])
    if not plottable([p.latency for p in pts], [p.accuracy for p in pts], sch.budget_value or 0.0):
        sch.notes.append("the latencies are too far apart to plot; the scheme holds implausible values.")
        return None
    from matplotlib.ticker import PercentFormatter

    fig = new_figure(8.6, 4.8)
    ax = fig.add_subplot()
    if sch.candidates:
        feas = [c for c in sch.candidates if c.feasible is not False]
        infeas = [c for c in sch.candidates if c.feasible is False]
        if feas:
            ax.scatter([c.latency for c in feas], [c.accuracy for c in feas], s=12, color="0.6", alpha=0.6,
                       edgecolors="none", label=f"evaluated ({len(feas)})", zorder=1)
        if infeas:
            ax.scatter([c.latency for c in infeas], [c.accuracy for c in infeas], s=14, marker="x", color="#e6a0a0",
                       lw=0.8, label=f"over budget ({len(infeas)})", zorder=1)
    if sch.pareto:
        fr = sorted(sch.pareto, key=lambda p: p.latency)
        ax.plot([p.latency for p in fr], [p.accuracy for p in fr], "-o", drawstyle="steps-post", color="#1f77b4",
                ms=4.5, lw=1.4, label="Pareto front" + (" (computed)" if sch.pareto_computed else ""), zorder=2)
    if "float" in sch.accuracy:
        ax.axhline(sch.accuracy["float"], color="0.35", ls=":", lw=1.0,
                   label=f"float model ({fmt_acc(sch.accuracy['float'])})", zorder=0)
    if sch.budget_value is not None and not any("budget line" in n for n in sch.notes):
        label = "budget" + (f": {sch.budget_text}" if sch.budget_text else f" {fmt_num(sch.budget_value)}")
        ax.axvline(sch.budget_value, color="#d62728", ls="--", lw=1.2, label=label, zorder=0)
    if sch.chosen is not None:
        ax.scatter([sch.chosen.latency], [sch.chosen.accuracy], s=220, marker="*", color="#ff7f0e",
                   edgecolors="black", linewidths=0.8, label="chosen scheme", zorder=3)
    lats = [p.latency for p in sch.pareto + sch.candidates] + ([sch.chosen.latency] if sch.chosen else [])
    if sch.budget_value:
        lats.append(sch.budget_value)
    pos = [v for v in lats if v > 0]
    if pos and max(pos) / min(pos) > 30:
        ax.set_xscale("log")
    accs = [p.accuracy for p in sch.pareto + sch.candidates] + list(sch.accuracy.values())
    if accs and all(0 <= a <= 1 for a in accs):
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
    unit = f" ({sch.unit})" if sch.unit else ""
    ax.set_xlabel(f"predicted latency{unit}")
    ax.set_ylabel("accuracy")
    model = sch.doc.get("model") or "model"
    ds = f" on {sch.doc['dataset']}" if sch.doc.get("dataset") else ""
    by = f" · {sch.doc['searcher']}" if sch.doc.get("searcher") else ""
    ax.set_title(f"{model}{ds}: accuracy vs predicted latency{by}", fontsize=10)
    ax.grid(True, color="0.9", lw=0.6)
    fig.legend(loc="outside right upper", fontsize=8, frameon=False)
    sch.png = save_figure(fig, out_dir, unique_name("pareto", used))
    return sch.png


def plot_fronts(schemes: list[Scheme], out_dir: Path, used: set[str]) -> str | None:
    """The Pareto fronts of several searches (one scheme.json each, e.g. one per searcher)
    on one plot, each labelled with its searcher and the accuracy evaluations it used."""
    drawable = [s for s in schemes if s.pareto]
    if not drawable:
        return None
    units = {s.unit for s in drawable}
    fig = new_figure(8.6, 4.8)
    ax = fig.add_subplot()
    for k, sch in enumerate(drawable):
        fr = sorted(sch.pareto, key=lambda p: p.latency)
        who = sch.doc.get("searcher") or Path(sch.path).stem
        ev = sch.doc.get("evaluations")
        label = f"{who} ({ev} evaluations)" if ev is not None else who
        ax.plot([p.latency for p in fr], [p.accuracy for p in fr], "-o", drawstyle="steps-post", ms=4, lw=1.3,
                label=label, zorder=2)
    budgets = {s.budget_value for s in drawable if s.budget_value is not None}
    if len(budgets) == 1:
        ax.axvline(budgets.pop(), color="#d62728", ls="--", lw=1.0, label="budget", zorder=0)
    unit = f" ({units.pop()})" if len(units) == 1 and None not in units else ""
    ax.set_xlabel(f"predicted latency{unit}")
    ax.set_ylabel("accuracy (validation split)")
    ax.set_title("Pareto fronts of the searches", fontsize=10)
    ax.grid(True, color="0.9", lw=0.6)
    fig.legend(loc="outside right upper", fontsize=8, frameon=False)
    return save_figure(fig, out_dir, unique_name("fronts", used))
