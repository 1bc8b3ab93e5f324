"""Assemble the report: read every input, draw the figures, render index.html.

Every input is read and checked before anything is written, so a malformed
scheme or deploy file leaves no half-written report behind.  The HTML is one
self-contained file (inline CSS, no scripts, no network) next to its PNGs;
Jinja2 autoescaping is on, so names from the inputs cannot inject markup.
"""

from __future__ import annotations

import datetime as _dt
import logging
from dataclasses import dataclass, field
from pathlib import Path

from harness.documents import atomic_write
from harness.errors import UserError

from . import deploy_table, heatmaps, pareto, parity, validation
from .common import fmt_acc, fmt_num, fmt_pct, fmt_rho

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).parent / "templates"
STATUS_ORDER = ("ok", "timeout", "crash", "mismatch", "does_not_fit", "unsupported")


@dataclass
class StoreSummary:
    path: str
    targets: list[dict]                  # name, fingerprint, short, units, sources, total, ok, ops
    statuses: list[str]
    counts: list[dict]                   # target, op, by status [..], total
    total: int
    ok: int

    def to_dict(self) -> dict:
        return {"path": self.path, "total": self.total, "ok": self.ok,
                "targets": [{k: v for k, v in t.items() if k != "short"} for t in self.targets],
                "counts": [{"target": c["target"], "op": c["op"], "total": c["total"],
                            **dict(zip(self.statuses, c["raw"]))} for c in self.counts]}


@dataclass
class Report:
    out: Path
    index: Path
    store: StoreSummary
    heatmaps: list = field(default_factory=list)
    parity: list = field(default_factory=list)
    scheme: object | None = None
    deploy: object | None = None
    validations: list = field(default_factory=list)
    compare: list = field(default_factory=list)     # scheme files whose fronts share one plot
    fronts_png: str | None = None

    @property
    def figures(self) -> list[str]:
        names = [h.png for h in self.heatmaps] + [p.png for p in self.parity]
        names += [self.scheme.png if self.scheme else None, self.deploy.png if self.deploy else None,
                  self.fronts_png]
        names += [v.png for v in self.validations]
        return [str(self.out / n) for n in names if n]

    def to_dict(self) -> dict:
        return {"index": str(self.index), "out": str(self.out), "figures": self.figures,
                "store": self.store.to_dict(), "heatmaps": [h.to_dict() for h in self.heatmaps],
                "proxies": {p.op: p.to_dict() for p in self.parity},
                "scheme": self.scheme.to_dict() if self.scheme else None,
                "deploy": self.deploy.to_dict() if self.deploy else None,
                "validations": [v.to_dict() for v in self.validations],
                "compare": [{"path": c.path, "searcher": c.doc.get("searcher"), "evaluations": c.doc.get("evaluations"),
                             "pareto_points": len(c.pareto)} for c in self.compare],
                "fronts_png": self.fronts_png}


def summarize_store(path: str | Path, targets: list[dict], frame) -> tuple[StoreSummary, dict[str, str]]:
    """Targets, and measurement counts by (target, op) and status (`frame`: Store.frame(status=None))."""
    names = {t["fingerprint"]: t["name"] for t in targets}
    df = frame
    statuses = list(STATUS_ORDER)
    if len(df):
        statuses += sorted(set(df["status"].astype(str)) - set(STATUS_ORDER))
    rows = []
    dup = {}
    for t in targets:
        dup[t["name"]] = dup.get(t["name"], 0) + 1
    for t in targets:
        sub = df[df["fingerprint"] == t["fingerprint"]] if len(df) else df
        units = sorted({str(u) for u in sub["unit"].dropna()}) if len(sub) else []
        sources = sorted({str(s) for s in sub["source"].dropna()}) if len(sub) else []
        ops = sorted({str(o) for o in sub["op"]}) if len(sub) else []
        info = t.get("info") or {}
        created = _dt.datetime.fromtimestamp(t["created_at"]).strftime("%Y-%m-%d %H:%M") if t.get("created_at") else ""
        rows.append({"name": t["name"], "fingerprint": t["fingerprint"], "short": t["fingerprint"][:12],
                     "units": ", ".join(units), "sources": ", ".join(sources), "ops": ", ".join(ops),
                     "total": int(len(sub)), "ok": int((sub["status"] == "ok").sum()) if len(sub) else 0,
                     "created": created, "isa": str(info.get("isa", "")) if isinstance(info, dict) else "",
                     "ambiguous": dup[t["name"]] > 1})
    counts = []
    if len(df):
        order = {fp: i for i, fp in enumerate(names)}
        groups = sorted(df.groupby(["fingerprint", "op"], sort=True),
                        key=lambda kv: (order.get(kv[0][0], len(order)), heatmaps._op_rank(kv[0][1])))
        for (fp, op), g in groups:
            vc = g["status"].astype(str).value_counts().to_dict()
            name = names.get(fp, "?")
            if dup.get(name, 0) > 1:
                name = f"{name} ({fp[:8]})"
            raw = [int(vc.get(s, 0)) for s in statuses]
            counts.append({"target": name, "op": op, "raw": raw, "cells": [fmt_num(v) if v else "" for v in raw],
                           "total": int(len(g))})
        used = [i for i, s in enumerate(statuses) if any(c["raw"][i] for c in counts) or s == "ok"]
        statuses = [statuses[i] for i in used]
        for c in counts:
            c["raw"] = [c["raw"][i] for i in used]
            c["cells"] = [c["cells"][i] for i in used]
    else:
        statuses = ["ok"]
    total = int(len(df))
    ok = int((df["status"] == "ok").sum()) if total else 0
    return StoreSummary(str(path), rows, statuses, counts, total, ok), names


def _prepare_out(out: str | Path) -> Path:
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"output {out} is a file; the report needs a folder.")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create report folder {out}: {e.strerror or e}.") from None
    return out


def build_report(store_path: str | Path, out: str | Path, proxy_path: str | Path | None = None,
                 scheme_path: str | Path | None = None, deploy_path: str | Path | None = None,
                 compare_paths: list | tuple = (), validation_paths: list[str | Path] | None = None) -> Report:
    """Write ``out/index.html`` and its PNGs; returns what was written.

    Raises UserError (one sentence) for a missing or malformed input; inputs
    are all read before the output folder is touched.
    """
    from harness.store import Store

    # ---- read and check every input first ----------------------------------------
    sp = Path(store_path)
    if sp.is_dir():
        raise UserError(f"store {sp} is a folder, not the SQLite store file.")
    with Store(sp, readonly=True) as st:
        targets = st.targets()
        frame = st.frame(status=None)
        stored_validations = st.validations()
    summary, names = summarize_store(sp, targets, frame)
    sch = pareto.load(scheme_path) if scheme_path is not None else None
    cmp = [pareto.load(p) for p in compare_paths]
    dep = deploy_table.load(deploy_path) if deploy_path is not None else None
    par = parity.compute(proxy_path) if proxy_path is not None else []
    hms = heatmaps.compute(frame, names)
    vals = validation.load(list(validation_paths or []), stored_validations)

    # ---- draw and write ----------------------------------------------------------
    outp = _prepare_out(out)
    used: set[str] = {"index.html"}
    for hm in hms:
        heatmaps.plot(hm, outp, used)
    for p in par:
        parity.plot(p, outp, used)
    if sch is not None:
        pareto.plot(sch, outp, used)
    if dep is not None:
        deploy_table.plot(dep, outp, used)
    for v in vals:
        validation.plot(v, outp, used)
    fronts = pareto.plot_fronts(([sch] if sch is not None else []) + cmp, outp, used) if cmp else None
    index = outp / "index.html"
    rep = Report(out=outp, index=index, store=summary, heatmaps=hms, parity=par, scheme=sch, deploy=dep,
                 validations=vals, compare=cmp, fronts_png=fronts)
    html = render(rep, inputs={"store": str(store_path), "proxy": _opt(proxy_path), "scheme": _opt(scheme_path),
                               "deploy": _opt(deploy_path)})
    atomic_write(index, html, what="report")
    return rep


def _opt(p) -> str | None:
    return None if p is None else str(p)


def render(rep: Report, inputs: dict) -> str:
    """The index.html text of a report."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(num=fmt_num, pct=fmt_pct, acc=fmt_acc, rho=fmt_rho)
    tpl = env.get_template("index.html.j2")
    try:
        from importlib.metadata import version

        ver = version("mico-hil")
    except Exception:  # noqa: BLE001
        ver = "?"
    return tpl.render(
        generated=_dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S"), version=ver, inputs=inputs,
        store=rep.store, heatmaps=rep.heatmaps, parity=rep.parity, scheme=rep.scheme, deploy=rep.deploy,
        validations=rep.validations, compare=rep.compare, fronts_png=rep.fronts_png,
    )
