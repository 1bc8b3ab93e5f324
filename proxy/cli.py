"""`mico fit`: fit latency proxies from a store, report shape-grouped CV error.

Registered on the `mico` group through the ``mico.commands`` entry point, so
harness/ never imports this package.  Errors are `UserError`s (one sentence;
the `mico` group prints them and exits 2).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from harness.errors import UserError
from harness.spec import OPS

from .features import FEATURE_SETS
from .model import MODELS, LatencyProxy, save_proxies


def _load_frame(store_path: str, target: str, op: str):
    from harness.store import Store

    with Store(store_path, readonly=True) as st:
        df = st.frame(target, None if op == "all" else op, status="ok")
    if len(df):
        df = df[df["value"].notna()]
    if len(df) == 0:
        what = "kernels" if op == "all" else f"{op} kernels"
        raise UserError(f"store {store_path} has no successfully measured {what} for target {target!r}; run `mico sweep` first.")
    fps = sorted(df["fingerprint"].unique())
    if len(fps) > 1:
        raise UserError(
            f"target {target!r} has {len(fps)} builds in store {store_path} ({', '.join(f[:12] for f in fps)}); "
            "pass one fingerprint prefix as --target."
        )
    units = sorted(map(str, df["unit"].dropna().unique()))
    if len(units) > 1:
        raise UserError(f"target {target!r} has measurements in several units ({', '.join(units)}); re-measure them in one.")
    return df


def _summary(p: LatencyProxy, features: str, model: str, output: Path) -> dict:
    m = dict(p.cv_ or {})
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
@click.option("--op", required=True, type=click.Choice(list(OPS) + ["all"]), help="Kernel op ('all': every op present).")
@click.option("--features", default="cbops", show_default=True, type=click.Choice(FEATURE_SETS), help="Feature set.")
@click.option("--model", default="linear", show_default=True, type=click.Choice(MODELS), help="Regressor.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Proxy file to write (JSON).")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def fit(store_path: str, target: str, op: str, features: str, model: str, output: str, as_json: bool) -> None:
    """Fit a latency proxy per op and report its shape-grouped CV error.

    Every bit-width of a shape is held out together, so the error is that of
    predicting kernels of shapes never measured.  MAPE and the within-5/10%
    shares are in percent; Spearman rho is the rank correlation.
    """
    df = _load_frame(store_path, target, op)
    ops = [o for o in OPS if o in set(df["op"])] if op == "all" else [op]
    out = Path(output)
    proxies: dict[str, LatencyProxy] = {}
    for o in ops:
        sub = df[df["op"] == o].reset_index(drop=True)
        n_shapes = sub["shape"].nunique()
        if n_shapes < 2:
            raise UserError(
                f"target {target!r} has {o} measurements of only {n_shapes} shape; "
                "shape-grouped cross-validation needs at least 2, so measure more shapes."
            )
        proxies[o] = LatencyProxy(o, features=features, model=model).fit(sub)
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
        click.echo(f"  grouped {m['n_splits']}-fold CV (whole shapes held out):")
        click.echo(f"    MAPE            {_fmt(m['mape'])}")
        click.echo(f"    within +-5%     {_fmt(m['within5'])}")
        click.echo(f"    within +-10%    {_fmt(m['within10'])}")
        click.echo(f"    Spearman rho    {_fmt(m['spearman'], pct=False)}")
    click.echo(f"wrote {out}")
