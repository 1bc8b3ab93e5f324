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
@click.option("--features", default="cbops", show_default=True, type=click.Choice(FEATURE_SETS), help="Feature set.")
@click.option("--model", default="linear", show_default=True, type=click.Choice(MODELS), help="Regressor.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Proxy file to write (JSON).")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def fit(store_path: str, target: str, op: str, mode: str, features: str, model: str, output: str,
        as_json: bool) -> None:
    """Fit a latency proxy per op and report its shape-grouped CV error.

    Every bit-width of a shape is held out together, so the error is that of
    predicting kernels of shapes never measured.  MAPE and the within-5/10%
    shares are in percent; Spearman rho is the rank correlation.
    """
    rows = _load_rows(store_path, target, op, mode)
    ops = [o for o in ALL_OPS if any(m.spec.op == o for m in rows)] if op == "all" else [op]
    out = Path(output)
    proxies: dict[str, LatencyProxy] = {}
    for o in ops:
        data = TrainingSet.from_rows(rows, o)
        if data.n_shapes < 2 and not (op == "all" and mode == "layer" and len(data.specs) >= 2):
            raise UserError(
                f"target {target!r} has {o} measurements of only {data.n_shapes} shape; "
                "shape-grouped cross-validation needs at least 2, so measure more shapes."
            )
        # a model plan's one-shape ops (its global pool, its classifier): fitted without CV, they price
        # those layers by their measurements
        proxies[o] = data.fit(features, model, cv=data.n_shapes >= 2)
    save_proxies(proxies, out)
    summaries = {o: _summary(p, features, model, out) for o, p in proxies.items()}
    if as_json:
        obj = summaries[ops[0]] if op != "all" else summaries
        click.echo(json.dumps(obj, indent=2, sort_keys=True))
        return
    for o, m in summaries.items():
        click.echo(
            f"{o} on {m['target']}: {model} proxy on {features} features, {m['n']} kernels of {m['n_groups']} shapes"
            f" (unit {m['unit']})"
        )
        if "n_splits" not in m:
            click.echo("  no CV (one shape): priced by its measurements")
            continue
        click.echo(f"  grouped {m['n_splits']}-fold CV (whole shapes held out):")
        click.echo(f"    MAPE            {_fmt(m['mape'])}")
        click.echo(f"    within +-5%     {_fmt(m['within5'])}")
        click.echo(f"    within +-10%    {_fmt(m['within10'])}")
        click.echo(f"    Spearman rho    {_fmt(m['spearman'], pct=False)}")
    click.echo(f"wrote {out}")
