"""`mico fit`: fit latency proxies from a store, report shape-grouped CV error.

Registered on the `mico` group through the ``mico.commands`` entry point, so
harness/ never imports this package.  Errors are `UserError`s (one sentence;
the `mico` group prints them and exits 2).  This is the proxy's edge: rows of
the store become `TrainingSet`s here, and `frame_training_set` adapts a
DataFrame for scripts that hold one; the library itself takes KernelSpecs.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from harness.errors import UserError
from harness.spec import ALL_OPS, MODES, KernelSpec

from .features import FEATURE_SETS
from .model import MODELS, LatencyProxy, TrainingSet, save_proxies
from .select import AUTO, select
from .terms import FAMILIES
from .transfer import METHODS, transfer_curve


def _single(df, col: str):
    """The one value of column `col` (None if absent or empty); UserError if it varies."""
    if col not in df.columns:
        return None
    vals = df[col].dropna().unique().tolist()
    if len(vals) > 1:
        raise UserError(f"the table mixes {col}s {', '.join(str(v)[:12] for v in vals)}; fit one proxy per {col}.")
    return vals[0] if vals else None


def frame_training_set(df, op: str | None = None) -> TrainingSet:
    """The DataFrame adapter: a `Store.frame()`-like table -> TrainingSet.

    Needs the columns ``qa``, ``qw``, ``value``, ``op`` (or the `op`
    argument) and one column per shape field of the op (N, M, K / N, C, H, W,
    K, KS, S, P, G); ``unit``, ``target`` and ``fingerprint`` are taken when
    present (each must hold one value).  Rows without a value are dropped.
    """
    if op is None:
        op = _single(df, "op")
    if op not in ALL_OPS:
        raise UserError(f"the table has no single op ({op!r}); pass op= matmul or conv2d.")
    if "op" in df.columns:
        df = df[df["op"] == op]
    fields = KernelSpec.FIELDS[op]
    missing = [c for c in ("qa", "qw", "value", *fields) if c not in df.columns]
    if missing:
        raise UserError(f"the table has no column(s) {', '.join(missing)}; pass a Store.frame() DataFrame.")
    df = df[df["value"].notna()]
    shapes = zip(*(df[f].astype(int).tolist() for f in fields))
    n = len(df)
    modes = df["mode"].astype(str).tolist() if "mode" in df.columns else ["kernel"] * n
    outs = df["out_bits"].astype(int).tolist() if "out_bits" in df.columns else [0] * n
    specs = [KernelSpec(op, shape, int(a), int(w), md, ob)
             for shape, a, w, md, ob in zip(shapes, df["qa"].astype(int).tolist(), df["qw"].astype(int).tolist(),
                                            modes, outs)]
    return TrainingSet(op, specs, df["value"].astype(float).tolist(), unit=_single(df, "unit"),
                       target=_single(df, "target"), fingerprint=_single(df, "fingerprint"))


def _load_rows(store_path: str, target: str, op: str, mode: str = "kernel") -> list:
    from harness.store import Store

    if not Path(store_path).exists():
        raise UserError(f"store {store_path} does not exist; run `mico sweep --store {store_path}` first.")
    with Store(store_path, readonly=True) as st:
        rows = [m for m in st.rows(target, None if op == "all" else op, status="ok", mode=mode)
                if m.median is not None]
    if not rows:
        what = ("kernels" if op == "all" else f"{op} kernels") + f" in {mode} mode"
        raise UserError(f"store {store_path} has no successfully measured {what} for target {target!r}; run `mico sweep` first.")
    fps = sorted({m.fingerprint for m in rows})
    if len(fps) > 1:
        raise UserError(
            f"target {target!r} has {len(fps)} builds in store {store_path} ({', '.join(f[:12] for f in fps)}); "
            "pass one fingerprint prefix as --target."
        )
    units = sorted({str(m.unit) for m in rows if m.unit is not None})
    if len(units) > 1:
        raise UserError(f"target {target!r} has measurements in several units ({', '.join(units)}); re-measure them in one.")
    return rows


def _summary(p: LatencyProxy, features: str, model: str, output: Path) -> dict:
    m = dict(p.cv_ or {"n": p.n_train, "n_groups": p.n_shapes})
    m.update(op=p.op, target=p.target, fingerprint=p.fingerprint, features=features, model=model,
             unit=p.unit, output=str(output))
    return m


def _transfer(source: str, data: TrainingSet, method: str, features: str, family: str | None):
    """(the transferred proxy fit on all target kernels, its error curve vs target shapes)."""
    from .document import ProxyFile

    if not Path(source).exists():
        raise UserError(f"source proxy file {source} does not exist; fit the source target first.")
    entries = ProxyFile.read(source).proxies
    if data.op not in entries:
        raise UserError(f"source proxy file {source} has no {data.op} proxy (it has {', '.join(sorted(entries))}).")
    if features == AUTO:
        raise UserError("--from fits on one feature set; pass --features (terms, analytic, ...), not auto.")
    src = entries[data.op].to_dict()
    transfer = {"method": method, "source": src}
    p = LatencyProxy(data.op, features, "linear", family=family, transfer=transfer)
    p.fit(data.specs, data.values, unit=data.unit, target=data.target, fingerprint=data.fingerprint)
    n = data.n_shapes
    counts = sorted({c for c in (1, 2, 3, max(1, round(0.1 * n)), 5, 8, max(1, round(0.25 * n))) if c < n})
    return p, transfer_curve(src, data, method, counts, features=features, family=p.family_)


def _fmt(v, pct: bool = True) -> str:
    if v is None:
        return "n/a"
    return f"{v:.2f}%" if pct else f"{v:.4f}"


@click.command("fit")
@click.option("--store", "store_path", required=True, type=click.Path(dir_okay=False), help="Results store (SQLite).")
@click.option("--target", required=True, help="Target name or fingerprint prefix.")
@click.option("--op", required=True, type=click.Choice(list(ALL_OPS) + ["all"]), help="Kernel op ('all': every op present).")
@click.option("--mode", type=click.Choice(list(MODES)), default="kernel", show_default=True,
              help="Fit on kernel-mode measurements (profiling) or layer-mode ones (what whole models add up to).")
@click.option("--features", default="cbops", show_default=True, type=click.Choice(FEATURE_SETS + (AUTO,)),
              help="Feature set ('auto': chosen by shape-grouped CV, recorded in the proxy file).")
@click.option("--model", default="linear", show_default=True, type=click.Choice(MODELS + (AUTO,)),
              help="Regressor ('auto': chosen by shape-grouped CV).")
@click.option("--family", type=click.Choice(FAMILIES), default=None,
              help="Whose cost terms `--features terms` uses (default: from the target's name and widths).")
@click.option("--from", "source", type=click.Path(dir_okay=False), default=None,
              help="Source proxy file: fit on top of its proxy from a few target measurements (transfer).")
@click.option("--transfer", "method", type=click.Choice(METHODS), default="ratio", show_default=True,
              help="With --from: ratio (one scale), residual (log-ratio ridge on the features), "
                   "cascade (source prediction as one more non-negative term).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Proxy file to write (JSON).")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def fit(store_path: str, target: str, op: str, mode: str, features: str, model: str, family: str | None,
        source: str | None, method: str, output: str, as_json: bool) -> None:
    """Fit a latency proxy per op and report its shape-grouped CV error.

    Every bit-width of a shape is held out together, so the error is that of
    predicting kernels of shapes never measured.  MAPE and the within-5/10%
    shares are in percent; Spearman rho is the rank correlation.
    """
    rows = _load_rows(store_path, target, op, mode)
    ops = [o for o in ALL_OPS if any(m.spec.op == o for m in rows)] if op == "all" else [op]
    out = Path(output)
    proxies: dict[str, LatencyProxy] = {}
    curves: dict[str, list] = {}
    for o in ops:
        data = TrainingSet.from_rows(rows, o)
        if data.n_shapes < 2 and not (op == "all" and mode == "layer" and len(data.specs) >= 2):
            raise UserError(
                f"target {target!r} has {o} measurements of only {data.n_shapes} shape; "
                "shape-grouped cross-validation needs at least 2, so measure more shapes."
            )
        if data.n_shapes < 2:
            # a model plan's one-shape ops (its global pool, its classifier): fitted without CV, they
            # price those layers by their measurements
            proxies[o] = data.fit("analytic" if features == AUTO else features, "linear" if model == AUTO else model,
                                  cv=False, family=family)
        elif source is not None:
            proxies[o], curves[o] = _transfer(source, data, method, features, family)
        elif AUTO in (features, model):
            proxies[o] = select(data, features, model, family=family)
        else:
            proxies[o] = data.fit(features, model, family=family)
    save_proxies(proxies, out)
    summaries = {o: _summary(p, p.features, p.model, out) for o, p in proxies.items()}
    for o, c in curves.items():
        summaries[o].update(transfer={"from": str(source), "method": method, "curve": c})
    if as_json:
        obj = summaries[ops[0]] if op != "all" else summaries
        click.echo(json.dumps(obj, indent=2, sort_keys=True))
        return
    for o, m in summaries.items():
        chosen = " (chosen by grouped CV)" if "selection" in m else ""
        click.echo(
            f"{o} on {m['target']}: {m['model']} proxy on {m['features']} features{chosen}, {m['n']} kernels of "
            f"{m['n_groups']} shapes (unit {m['unit']})"
        )
        if "n_splits" not in m:
            click.echo("  no CV (one shape): priced by its measurements")
            continue
        click.echo(f"  grouped {m['n_splits']}-fold CV (whole shapes held out):")
        click.echo(f"    MAPE            {_fmt(m['mape'])}")
        click.echo(f"    within +-5%     {_fmt(m['within5'])}")
        click.echo(f"    within +-10%    {_fmt(m['within10'])}")
        click.echo(f"    Spearman rho    {_fmt(m['spearman'], pct=False)}")
        if "transfer" in m:
            click.echo(f"  transfer ({method} from {source}): held-out-shape MAPE vs target shapes measured")
            for r in m["transfer"]["curve"]:
                click.echo(f"    {r['n_shapes']:4d} shapes ({100 * r['share']:5.1f}%)  MAPE {r['mape']:6.2f}% "
                           f"+- {r['mape_sd']:.2f}  within10 {r['within10']:5.1f}%")
    click.echo(f"wrote {out}")
