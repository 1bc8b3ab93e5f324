"""`mico deploy` and `mico demo`."""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

import click

from harness.cli import emit, param_option
from harness.errors import UserError


@click.command()
@click.option("--scheme", "scheme_path", required=True, type=click.Path(dir_okay=False),
              help="scheme.json written by `mico search`.")
@click.option("--target", "target_name", required=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Where to write deploy.json (default: next to the scheme).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N test images.")
@click.option("--proxy", "proxy_path", type=click.Path(dir_okay=False), default=None,
              help="Latency proxy for the predictions (default: the one the scheme was searched with).")
@param_option()
@click.option("--no-progress", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
def deploy(scheme_path, target_name, output, limit, proxy_path, params, no_progress, as_json):
    """Generate C for a scheme, run it on a target over the whole test set and
    validate it: logits bit-exact against the PyTorch integer reference,
    accuracy, and measured vs predicted latency per layer and end to end.
    Exits 1 if any image's logits differ."""
    from .deploy import deploy as run_deploy
    from .deploy import summary_text, write_report

    if not Path(scheme_path).exists():
        raise UserError(f"scheme file {scheme_path} does not exist; run `mico search` first.")
    res = run_deploy(scheme_path, target_name, limit=limit, progress=not no_progress, params=params,
                     proxy_path=proxy_path)
    out = Path(output) if output else Path(scheme_path).with_name("deploy.json")
    write_report(res, out)
    res.report["output"] = str(out)
    emit(res.report, as_json, summary_text(res.report) + f"\nwrote {out}")
    if not res.ok:
        raise SystemExit(1)


#: the one-minute version: warm kernel profiling of the host on random shapes (the zoo plan of 13
#: models takes ~4 min here), the analytic proxy, LeNet on digits
HOST_STEPS = [
    ["sweep", "--target", "host", "--plan", "random:40", "--store", "{out}/store.db", "--jobs", "2", "--budget", "0.5"],
    ["sweep", "--target", "host", "--plan", "random:24:1", "--store", "{out}/store.db", "--jobs", "2", "--budget",
     "0.5"],
    ["fit", "--store", "{out}/store.db", "--target", "host", "--op", "all", "--features", "analytic",
     "--model", "linear", "-o", "{out}/proxy.json"],
    ["search", "--model", "lenet", "--dataset", "digits", "--proxy", "{out}/proxy.json",
     "--latency-budget", "{budget}", "--searcher", "evolution", "-o", "{out}/scheme.json"],
    ["deploy", "--scheme", "{out}/scheme.json", "--target", "host", "-o", "{out}/deploy.json"],
    ["report", "--store", "{out}/store.db", "--proxy", "{out}/proxy.json", "--scheme", "{out}/scheme.json",
     "--deploy", "{out}/deploy.json", "-o", "{out}/report"],
]

#: a core that runs models: every LeNet layer measured as the deployed model runs it (layer mode,
#: 216 specs), a layer-mode proxy, the search, the deploy against the budget, and a validation of the
#: latency model over random schemes -- the budget holding on the (simulated) hardware
CORE_STEPS = [
    ["sweep", "--target", "{target}", "--plan", "model:lenet", "--mode", "layer", "--store", "{out}/store.db",
     "--jobs", "2"],
    ["fit", "--store", "{out}/store.db", "--target", "{target}", "--op", "all", "--mode", "layer",
     "--features", "analytic", "--model", "linear", "-o", "{out}/proxy.json"],
    ["search", "--model", "lenet", "--dataset", "digits", "--proxy", "{out}/proxy.json",
     "--latency-budget", "{budget}", "--margin", "5", "--searcher", "evolution", "-o", "{out}/scheme.json"],
    ["deploy", "--scheme", "{out}/scheme.json", "--target", "{target}", "--limit", "100", "-o", "{out}/deploy.json"],
    ["validate", "--model", "lenet", "--target", "{target}", "--proxy", "{out}/proxy.json", "--schemes", "8",
     "--images", "1", "--store", "{out}/store.db", "-o", "{out}/validation.json"],
    ["report", "--store", "{out}/store.db", "--proxy", "{out}/proxy.json", "--scheme", "{out}/scheme.json",
     "--deploy", "{out}/deploy.json", "-o", "{out}/report"],
]


def demo_steps(target: str) -> list[list[str]]:
    return HOST_STEPS if target == "host" else CORE_STEPS


@click.command()
@click.option("--out", "out_dir", default="demo-out", show_default=True, type=click.Path(file_okay=False))
@click.option("--latency-budget", "budget", default="70%", show_default=True,
              help="Latency budget for the search, absolute or relative to the all-8x8 model.")
@click.option("--target", "target_name", default="vexriscv-mico", show_default=True,
              help="Where to run the loop: a core that runs models (the MiCo-style vexriscv-mico by default), "
                   "or `host` for the one-minute version.")
@click.pass_context
def demo(ctx, out_dir, budget, target_name):
    """The whole loop on the embedded default: the MiCo-style RISC-V core
    (Verilator), scikit-learn's digits, a LeNet-style CNN.  Measure every layer
    as the model runs it -> fit -> search under a latency budget -> generate C
    -> deploy and check the budget on the core -> validate the latency model
    -> report.  Each step's command is printed so it can be rerun alone."""
    from harness import registry

    target = registry.get(target_name)
    caps = target.capabilities()
    if target_name != "host" and "layer" not in caps.modes:
        raise UserError(f"target {target_name} cannot run models; use a core such as vexriscv-mico, or host.")
    from harness.cli import main

    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create {out}: {e.strerror}.") from None
    t_all = time.monotonic()
    timings = []
    for step in demo_steps(target_name):
        argv = [a.format(out=out, budget=budget, target=target_name) for a in step]
        click.secho(f"\n$ mico {shlex.join(argv)}", bold=True)
        t0 = time.monotonic()
        try:
            rc = main.main(argv, standalone_mode=False)
        except SystemExit as e:
            rc = e.code
        if rc not in (0, None):
            raise UserError(f"demo step `mico {argv[0]}` failed (exit {rc}); see the message above.")
        timings.append({"step": argv[0], "seconds": round(time.monotonic() - t0, 1)})
    total = time.monotonic() - t_all
    (out / "demo.json").write_text(json.dumps({"target": target_name, "steps": timings, "total_s": round(total, 1)},
                                              indent=2))
    click.secho(f"\ndemo finished in {total:.0f} s; report: {out / 'report' / 'index.html'}", bold=True)
