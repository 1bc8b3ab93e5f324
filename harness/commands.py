"""Measurement commands of the `mico` CLI: targets, measure, sweep, export, import."""

from __future__ import annotations

from pathlib import Path

import click

from . import registry
from .cli import FiniteFloat, emit, main, param_option
from .errors import UserError
from .measure import StatsPolicy
from .spec import ALL_OPS, LAYER_OPS, MODES, KernelSpec, check_target_bits, parse_shape
from .store import Measurement, Store

SHAPE_HELP = ("matmul: N,M,K (N activation rows, M outputs, K reduction); "
              "conv2d: N,C,H,W,K,KS,S,P[,G] (NCHW input, K output channels, "
              "square kernel KS, stride S, zero padding P, groups G, default 1); "
              "maxpool/avgpool: N,C,H,W,KS,S[,P]; maxpool1d/avgpool1d/unfold: N,C,L,KS,S,P; "
              "gavgpool: N,C,H,W,OH,OW; add/rescale: N,E; concat: N,C1,C2,S; shuffle: N,C,S,G.")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def targets(as_json: bool) -> None:
    """List every registered target, available or not, and why not."""
    rows = [t.describe() for t in registry.all_targets()]
    for name, why in registry.broken_plugins().items():
        rows.append({"name": f"{name} (plugin)", "description": "a target plugin that failed to load",
                     "available": False, "reason": why, "deterministic": None, "unit": None, "params": []})
    for fam in registry.families():
        rows.append({"name": fam + "<name>", "description": "a family of targets", "available": None,
                     "reason": "", "deterministic": None, "unit": None, "params": registry.family_params(fam)})
    lines = []
    for r in rows:
        state = "available" if r["available"] else ("" if r["available"] is None else f"unavailable: {r['reason']}")
        lines.append(f"{r['name']:<22} {state}\n    {r['description']}")
        if r["params"]:
            lines.append(f"    params: {', '.join(p['name'] for p in r['params'])}")
    emit(rows, as_json, "\n".join(lines))


MODE_HELP = ("kernel: warm repeats of the kernel alone (profiling); layer: the layer exactly as a deployed "
             "model runs it (packing, kernel, requantisation, cache state), what latency models use.")


@main.command()
@click.option("--target", "target_name", default="host", show_default=True)
@click.option("--op", type=click.Choice(list(ALL_OPS)), required=True,
              help="Ops other than matmul / conv2d: layer mode only (steps of a generated model).")
@click.option("--shape", required=True, help=SHAPE_HELP)
@click.option("--qa", type=int, required=True, help="activation bits: 1,2,4,8 (BitFusion with --param widths=all: 1..8)")
@click.option("--qw", type=int, default=None, help="weight bits, as --qa (none for pools)")
@click.option("--mode", type=click.Choice(list(MODES)), default="kernel", show_default=True, help=MODE_HELP)
@click.option("--out-bits", type=click.Choice(["0", "1", "2", "4", "8"]), default=None,
              help="Layer mode: width of the codes the layer writes (0: int32 logits; default 8, pools: qa).")
@click.option("--repeats", type=click.IntRange(min=1), default=None,
              help="Exact number of timed repeats (default: adaptive until the relative IQR is under 5%).")
@param_option()
@click.option("--json", "as_json", is_flag=True)
def measure(target_name, op, shape, qa, qw, mode, out_bits, repeats, params, as_json):
    """Measure one kernel (or, with --mode layer, one layer) on one target.

    \b
    Shapes:
      matmul  N,M,K
      conv2d  N,C,H,W,K,KS,S,P[,G]
      maxpool / avgpool  N,C,H,W,KS,S[,P]
      maxpool1d / avgpool1d / unfold  N,C,L,KS,S,P
      gavgpool  N,C,H,W,OH,OW
      add / rescale  N,E
      concat  N,C1,C2,S
      shuffle  N,C,S,G
    """
    from .sweep import measure_single

    weightless = op in LAYER_OPS
    if qw is None and not weightless:
        raise UserError(f"--qw is required for {op}.")
    if mode == "kernel" and out_bits is not None:
        raise UserError("--out-bits applies to --mode layer only.")
    ob = int(out_bits) if out_bits is not None else (qa if weightless else 8)
    spec = KernelSpec(op, parse_shape(op, shape), qa, 0 if weightless else qw, mode, ob if mode == "layer" else 0)
    qw = spec.qw
    check_target_bits(spec, target_name, registry.get(target_name, **params).capabilities().bits)
    policy = StatsPolicy(fixed_repeats=repeats) if repeats else StatsPolicy()
    m, build = measure_single(target_name, spec, params, policy)
    d = m.to_dict()
    d.update(target=target_name, op=op, shape=list(spec.shape), qa=qa, qw=qw, mode=mode, out_bits=spec.out_bits)
    text = (f"{spec} on {target_name}: median {m.median:.0f} {m.unit}, IQR {m.iqr:.0f} "
            f"({100 * (m.rel_iqr or 0):.2f}%), {len(m.raw)} repeats, checksum {'ok' if m.checksum_ok else 'MISMATCH'}")
    emit(d, as_json, text)


@main.command()
@click.option("--target", "target_name", required=True)
@click.option("--plan", required=True, help="smoke | grid | zoo | random:N[:SEED] | zoo-random:N[:SEED] | adaptive:N[:SEED] | model:NAME")
@click.option("--store", "store_path", required=True, type=click.Path(dir_okay=False))
@click.option("--jobs", type=click.IntRange(min=1, max=1024), default=1, show_default=True,
              help="Parallel workers, one booted target each.")
@click.option("--cluster", default=None, metavar="local[:N] | tcp://HOST:PORT",
              help="Run on a Dask cluster: N local worker processes, or the workers of a running scheduler "
                   "(docs/cluster.md) instead of the --jobs pool.")
@click.option("--scheduler", default=None, hidden=True, help="Old name of --cluster tcp://HOST:PORT.")
@click.option("--resource", "resources", multiple=True, metavar="NAME=N",
              help="A Dask worker resource every spec needs (repeatable), besides a board's own.")
@click.option("--op", "ops", multiple=True, type=click.Choice(list(ALL_OPS)), help="Restrict to these ops.")
@click.option("--mode", type=click.Choice(list(MODES)), default="kernel", show_default=True, help=MODE_HELP)
@param_option()
@click.option("--budget", type=FiniteFloat(min=0.0), default=2.0, show_default=True,
              help="Seconds per spec for adaptive repeats (noisy targets).")
@click.option("--target-mape", type=FiniteFloat(min=0.0), default=None, metavar="PERCENT",
              help="adaptive:N only: stop an op as soon as its shape-grouped CV MAPE is at most this.")
@click.option("--no-progress", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
def sweep(target_name, plan, store_path, jobs, cluster, scheduler, resources, ops, mode, params, budget,
          target_mape, no_progress, as_json):
    """Measure every spec of a plan; resumes: stored specs are skipped.

    Plans: smoke, grid, zoo, random:N[:SEED], model:NAME (layer mode: one model's layers),
    adaptive:N[:SEED] (N shapes chosen while measuring where the proxies disagree most, among
    the zoo's layer-shape ranges; --target-mape stops it early)."""
    from .sweep import run_sweep

    if cluster and scheduler:
        raise UserError("give --cluster or --scheduler, not both.")
    if resources and not (cluster or scheduler):
        raise UserError("--resource applies to a sweep on a cluster (--cluster).")
    if jobs != 1 and (cluster or scheduler):
        raise UserError("--jobs sizes the local process pool; on a cluster its workers set the parallelism "
                        "(local:N, or the workers' --nthreads).")
    s = run_sweep(target_name, plan, store_path, jobs=jobs, params=params, cluster=cluster or scheduler,
                  policy=StatsPolicy(budget_s=budget), progress=not no_progress, ops=list(ops) or None, mode=mode,
                  resources=parse_resources(resources), target_mape=target_mape)
    statuses = ", ".join(f"{k} {v}" for k, v in sorted(s.by_status.items())) or "nothing new"
    emit(s.to_dict(), as_json,
         f"{target_name} plan {plan}: {s.total} specs, {s.skipped_existing} already stored, "
         f"{s.measured} measured ({statuses}) in {s.wall_s:.1f} s -> {store_path}"
         + "".join(f"\n  {op}: {r['shapes']} shapes, stopped by {r['stopped']}, grouped-CV MAPE "
                   + ("n/a" if r["cv_mape"] is None else f"{r['cv_mape']:.2f}%")
                   for op, r in (s.adaptive or {}).items()))


def parse_resources(texts) -> dict[str, float]:
    """``NAME=N`` texts (as `dask worker --resources` takes them) -> {NAME: N}."""
    out: dict[str, float] = {}
    for t in texts:
        name, eq, value = t.partition("=")
        try:
            n = float(value)
        except ValueError:
            n = -1.0
        if not eq or not name.strip() or not (n > 0 and n < float("inf")) or " " in name.strip():
            raise UserError(f"resource {t!r} is malformed; use NAME=N with N > 0, e.g. board:arty-a7=1.")
        out[name.strip()] = n
    return out


@main.command()
@click.argument("scheduler")
@click.option("--nthreads", type=click.IntRange(min=1, max=256), default=1, show_default=True,
              help="Specs this worker measures at once (one booted device each).")
@click.option("--board", "boards", multiple=True, metavar="PROFILE",
              help="A board plugged into this host (repeatable): offers the resource board:PROFILE=1.")
@click.option("--resource", "resources", multiple=True, metavar="NAME=N", help="Another worker resource.")
@click.option("--target", "targets", multiple=True, metavar="NAME",
              help="Check and build this target here before joining (repeatable).")
@click.option("--name", default=None, help="The worker's name at the scheduler.")
@param_option("Parameter KEY=VALUE of the --target builds.")
def worker(scheduler, nthreads, boards, resources, targets, name, params):
    """Join a Dask scheduler (tcp://HOST:PORT) as a sweep worker of this host (docs/cluster.md).

    The worker boots each target once per thread and keeps it for the specs it
    gets; sweeps reach it with `mico sweep --cluster tcp://HOST:PORT`."""
    from .cluster import parse_cluster, prepare_targets, serve_worker

    if parse_cluster(scheduler).address is None:
        raise UserError(f"a worker joins a running scheduler: give its address tcp://HOST:PORT, not {scheduler!r}.")
    res = parse_resources(resources)
    for b in boards:
        t = registry.get(f"board:{b}")          # an unknown profile is refused here, in one sentence
        res.update(t.cluster_resources())
    for name_, fp in zip(targets, prepare_targets(list(targets), params)):
        click.echo(f"{name_}: built, fingerprint {fp}", err=True)
    click.echo(f"worker of {scheduler}: {nthreads} thread(s), resources "
               f"{', '.join(f'{k}={v:g}' for k, v in sorted(res.items())) or 'none'}", err=True)
    serve_worker(scheduler, nthreads=nthreads, resources=res, name=name)


def _existing_store(store_path: str) -> Store:
    """A read-only store, with the CLI's hint when the file is missing."""
    if not Path(store_path).exists():
        raise UserError(f"store {store_path} does not exist; run `mico sweep --store {store_path}` first.")
    return Store(store_path, readonly=True)


@main.command()
@click.option("--store", "store_path", required=True, type=click.Path(dir_okay=False))
@click.option("--target", "target_name", required=True, help="Target name or fingerprint prefix.")
@click.option("--op", type=click.Choice(["matmul", "conv2d"]), required=True)
@click.option("--format", "fmt", type=click.Choice(["mico-csv", "csv", "parquet"]), default="csv", show_default=True)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False))
def export(store_path, target_name, op, fmt, output):
    """Export measurements (status ok) of one target and op.

    The file is written to a temporary name and renamed into place, so a
    failure (a full disk) leaves any previous file intact.
    """
    import io

    from . import mico_csv
    from .documents import atomic_write

    with _existing_store(store_path) as store:
        rows = [m for m in store.rows(target_name, op, "ok") if m.median is not None]
        df = store.frame(target_name, op) if rows and fmt != "mico-csv" else None
    if not rows:
        raise UserError(f"store {store_path} has no successful {op} measurements for {target_name}.")
    out = Path(output)
    if fmt == "mico-csv":
        fps = sorted({m.fingerprint for m in rows})
        if len(fps) > 1:
            raise UserError(
                f"target {target_name!r} has {len(fps)} builds in store {store_path} "
                f"({', '.join(f[:12] for f in fps)}); a MiCo CSV holds one, so pass a fingerprint prefix as --target."
            )
        mico_csv.write_mico_csv(rows, op, out)
    elif fmt == "csv":
        atomic_write(out, df.to_csv(index=False), what="CSV export")
    else:
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        atomic_write(out, buf.getvalue(), what="Parquet export")
    click.echo(f"wrote {len(rows)} rows to {out}")


@main.command(name="import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--target", "target_name", required=True,
              help="Name under which the rows are stored; it must not name a measured target.")
@click.option("--op", type=click.Choice(["matmul", "conv2d"]), required=True)
@click.option("--store", "store_path", required=True, type=click.Path(dir_okay=False))
@click.option("--unit", default="ns", show_default=True, type=click.Choice(["ns", "cycles"]),
              help="Unit of the Time column.")
def import_(file, target_name, op, store_path, unit):
    """Import one of MiCo's CSV files (all rows or none).

    The rows are stored as source 'imported' under a fingerprint of their own
    with the file's name and sha256; importing the same op under the same
    name again replaces them.  A name that holds measured rows is refused.
    """
    import hashlib
    import time

    from . import mico_csv
    from .target import fingerprint_of

    path = Path(file)
    rows = mico_csv.read_mico_csv(path, op)
    fp = fingerprint_of({"imported": target_name})
    info = {"file": str(path.resolve()), "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "rows": len(rows), "unit": unit, "imported_at": time.time()}
    ms = [Measurement(spec=s, fingerprint=fp, unit=unit, raw=[v], median=v, iqr=0.0, min=v, source="imported")
          for s, v in rows]
    with Store(store_path) as store:
        n = store.import_rows(fp, target_name, op, info, ms)
    click.echo(f"imported {n} rows from {file} as target {target_name}")
