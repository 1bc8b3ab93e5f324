"""`mico zoo`: search + deploy for every model of the zoo on one target, one report.

The per-model loop a user would otherwise script: for each model, `mico search`
under the latency budget (with the given proxy), `mico deploy` on the target
(bit-exact against the PyTorch integer model), then one HTML table over the
zoo -- accuracy (float, integer), predicted vs measured latency, the budget
verdict and the memory each model needs -- linking each model's own report.
Each step is the same command a user can rerun alone; a model whose step fails
is reported in its row with the one-sentence reason and the others go on.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from harness.documents import atomic_write
from harness.errors import UserError


def _run(argv: list[str]) -> tuple[int, str]:
    """One `mico` step in this process; (exit code, error text)."""
    from harness.cli import main

    try:
        rc = main.main(argv, standalone_mode=False)
    except SystemExit as e:
        rc = e.code
    except click.ClickException as e:
        return e.exit_code, e.format_message()
    except Exception as e:  # noqa: BLE001  (a library error of one model must not stop the zoo)
        return 2, str(e)
    return (0 if rc in (0, None) else int(rc)), ""


@click.command("zoo")
@click.option("--target", "target_name", default="host", show_default=True)
@click.option("--proxy", "proxy_path", type=click.Path(dir_okay=False), default=None,
              help="Latency proxy fitted on the target (without it: analytic CBOPs).")
@click.option("--store", "store_path", type=click.Path(dir_okay=False), default=None,
              help="Store for each model's report (default: an empty one in the output folder).")
@click.option("--models", default="all", show_default=True, help="Comma-separated model names, or all.")
@click.option("--dataset", default="digits", show_default=True)
@click.option("--data-dir", type=click.Path(), default=None)
@click.option("--latency-budget", "budget", default="70%", show_default=True)
@click.option("--budget-evals", type=click.IntRange(min=1), default=12, show_default=True)
@click.option("--qat-epochs", type=click.IntRange(min=0), default=3, show_default=True)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N test images per deploy.")
@click.option("--out", "out_dir", default="zoo-out", show_default=True, type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True)
def zoo(target_name, proxy_path, store_path, models, dataset, data_dir, budget, budget_evals, qat_epochs, limit,
        out_dir, as_json):
    """Search and deploy every zoo model on one target and write one report."""
    from harness.cli import emit

    from .models import MODELS

    names = sorted(MODELS) if models == "all" else [m.strip() for m in models.split(",") if m.strip()]
    unknown = [m for m in names if m not in MODELS]
    if unknown or not names:
        raise UserError(f"unknown model(s) {', '.join(unknown) or '(none)'}; use all or some of "
                        f"{', '.join(sorted(MODELS))}.")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create {out}: {e.strerror}.") from None
    store = store_path or str(out / "store.db")
    if not Path(store).exists():
        from harness.store import Store

        Store(store).close()        # an empty store: the per-model reports need one to summarise
    rows = []
    t_all = time.monotonic()
    for name in names:
        d = out / name
        d.mkdir(exist_ok=True)
        row = {"model": name, "dataset": dataset, "error": None}
        t0 = time.monotonic()
        search = ["search", "--model", name, "--dataset", dataset, "--latency-budget", budget, "--budget-evals",
                  str(budget_evals), "--qat-epochs", str(qat_epochs), "-o", str(d / "scheme.json")]
        search += ["--proxy", proxy_path] if proxy_path else []
        search += ["--data-dir", data_dir] if data_dir else []
        deploy = ["deploy", "--scheme", str(d / "scheme.json"), "--target", target_name, "--no-progress",
                  "-o", str(d / "deploy.json")] + (["--limit", str(limit)] if limit else [])
        report = ["report", "--store", store, "--scheme", str(d / "scheme.json"), "--deploy", str(d / "deploy.json"),
                  "-o", str(d / "report")]
        for step in (search, deploy, report):
            click.secho(f"\n$ mico {' '.join(step)}", bold=True, err=as_json)
            rc, err = _run(step)
            if rc != 0 and step is not deploy or rc not in (0, 1):
                row["error"] = f"`mico {step[0]}` failed (exit {rc})" + (f": {err}" if err else "")
                break
        row["wall_s"] = round(time.monotonic() - t0, 1)
        if (d / "scheme.json").exists():
            s = json.loads((d / "scheme.json").read_text())
            row.update(bits=s["layers"] and [[l["qa"], l["qw"]] for l in s["layers"]],
                       float_acc=s["accuracy"]["float"], int_acc=s["accuracy"]["integer"],
                       predicted=s["predicted_latency"]["total"], unit=s["predicted_latency"]["unit"])
        if (d / "deploy.json").exists() and row["error"] is None:
            dep = json.loads((d / "deploy.json").read_text())
            row.update(bit_exact=dep["bit_exact"], n_images=dep["n_images"], target_acc=dep["accuracy"]["target"],
                       measured=dep["latency"]["measured_total_median"], error_pct=dep["latency"]["error_pct"],
                       budget_held=(dep.get("budget") or {}).get("held"), memory=dep.get("memory"),
                       report=f"{name}/report/index.html")
        rows.append(row)
    doc = {"format": "mico-zoo", "version": 1, "target": target_name, "dataset": dataset, "budget": budget,
           "proxy": proxy_path, "total_s": round(time.monotonic() - t_all, 1), "models": rows}
    atomic_write(out / "zoo.json", json.dumps(doc, indent=2), what="zoo summary")
    atomic_write(out / "index.html", _html(doc), what="zoo report")
    lines = [f"{'model':<12} {'float':>6} {'int':>6} {'predicted':>11} {'measured':>11} {'err':>7} exact budget"]
    for r in rows:
        if r["error"]:
            lines.append(f"{r['model']:<12} {r['error']}")
            continue
        lines.append(f"{r['model']:<12} {r['float_acc']:>6.3f} {r['int_acc']:>6.3f} {r['predicted']:>11.0f} "
                     f"{r['measured']:>11.0f} {r['error_pct'] if r['error_pct'] is not None else float('nan'):>+6.1f}% "
                     f"{'yes' if r['bit_exact'] else 'NO':>5} {_verdict(r['budget_held'])}")
    emit(doc, as_json, "\n".join(lines) + f"\nreport: {out / 'index.html'}")
    if any(r["error"] or not r.get("bit_exact", False) for r in rows):
        raise SystemExit(1)


def _verdict(held) -> str:
    """n/a when the budget is not in the target's unit (no proxy fitted on it)."""
    return "n/a" if held is None else "held" if held else "missed"


def _html(doc: dict) -> str:
    import jinja2

    tpl = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string(_TEMPLATE)
    return tpl.render(doc=doc)


_TEMPLATE = """<!doctype html>
<html><head><meta charset="utf-8"><title>mico-hil zoo on {{ doc.target }}</title>
<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;
padding:3px 8px}td.n{text-align:right}tr.bad{background:#fdd}</style></head><body>
<h1>Zoo on {{ doc.target }}</h1>
<p>Dataset {{ doc.dataset }}, latency budget {{ doc.budget }}, proxy {{ doc.proxy or "analytic CBOPs" }};
{{ doc.models | length }} models in {{ doc.total_s }} s. Each model: <code>mico search</code>, then
<code>mico deploy</code> on the target (logits checked against the PyTorch integer model on every image).</p>
<table><tr><th>model</th><th>bits (qa x qw per layer)</th><th>float acc</th><th>integer acc</th><th>on target</th>
<th>predicted</th><th>measured</th><th>error</th><th>bit-exact</th><th>budget</th><th>flash / arena bytes</th><th></th></tr>
{% for r in doc.models %}
{% if r.error %}<tr class="bad"><td>{{ r.model }}</td><td colspan="11">{{ r.error }}</td></tr>
{% else %}<tr class="{{ '' if r.bit_exact else 'bad' }}"><td>{{ r.model }}</td>
<td>{% for b in r.bits %}{{ b[0] }}x{{ b[1] }} {% endfor %}</td>
<td class="n">{{ '%.3f' % r.float_acc }}</td><td class="n">{{ '%.3f' % r.int_acc }}</td>
<td class="n">{{ '%.3f' % r.target_acc }} ({{ r.n_images }})</td>
<td class="n">{{ '%.0f' % r.predicted }} {{ r.unit }}</td><td class="n">{{ '%.0f' % r.measured }}</td>
<td class="n">{{ '%+.1f%%' % r.error_pct if r.error_pct is not none else 'n/a' }}</td>
<td>{{ 'yes' if r.bit_exact else 'NO' }}</td><td>{{ 'n/a' if r.budget_held is none else ('held' if r.budget_held else 'missed') }}</td>
<td class="n">{% if r.memory %}{{ r.memory.flash_bytes }} / {{ r.memory.arena_bytes }}{% endif %}</td>
<td><a href="{{ r.report }}">report</a></td></tr>{% endif %}
{% endfor %}</table></body></html>
"""
