"""``mico search``: train (or reuse) the float model, search per-layer
bit-widths under a latency budget, QAT-fine-tune the chosen scheme and write
``scheme.json`` + ``<stem>.pt``."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import click
import torch

from harness.errors import UserError

from .datasets import DATASETS, dataset_info, load_dataset
from .evaluate import (cbops_latency, integer_accuracy, latency_fn_from_proxy,
                       latency_unit, size_bits, total_bops)
from .integer import build_integer_model
from .models import MODELS, QuantModel, get_model
from .scheme import SchemeDoc, SchemeLayer, read_scheme, save_scheme
from .search import SEARCHERS, PTQEvaluator, model_budget, run_search
from .train import QAT_EPOCHS, accuracy, qat, quantize, set_seed, train_float

log = logging.getLogger(__name__)

CACHE_DIR = ".mico-cache"
#: validation hold-out (from TRAIN) used to score candidates, capped for MNIST
VAL_FRACTION, VAL_MAX = 0.2, 2000


def load_latency(proxy_path: str | None):
    """(latency_fn, unit, proxy path or None)."""
    if proxy_path is None:
        log.warning("no --proxy given: latency is the analytic CBOPs count, not a measured proxy")
        return cbops_latency, "cbops", None
    try:
        from proxy.model import load_proxies
    except ImportError:  # pragma: no cover - proxy/ is part of the distribution
        raise UserError("the proxy package is not available; reinstall mico-hil or drop --proxy.") from None
    p = load_proxies(proxy_path)
    fn = latency_fn_from_proxy(p)
    return fn, latency_unit(fn), str(proxy_path)


def float_model_cached(model_name: str, dataset: str, seed: int, epochs: int, x, y, cache_dir: Path,
                       progress: bool) -> tuple[QuantModel, bool]:
    """Train the float model or load the checkpoint keyed by model, dataset,
    seed and epochs.  Returns (model, loaded_from_cache)."""
    ckpt = cache_dir / f"float-{model_name}-{dataset}-seed{seed}-ep{epochs}.pt"
    if ckpt.is_file():
        model = get_model(model_name, dataset)
        try:
            model.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True))
            model.eval()
            log.info("loaded float model from %s", ckpt)
            return model, True
        except Exception as e:  # noqa: BLE001 - a stale/broken cache entry is retrained
            log.warning("ignoring unusable checkpoint %s (%s)", ckpt, type(e).__name__)
    set_seed(seed)
    model = get_model(model_name, dataset)
    train_float(model, x, y, epochs=epochs, seed=seed, progress=progress)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = ckpt.with_suffix(".tmp")
        torch.save(model.state_dict(), tmp)
        tmp.replace(ckpt)
    except OSError as e:
        log.warning("could not cache the float model in %s: %s", cache_dir, e)
    return model, False


def _fmt_bits(bits) -> str:
    return " ".join(f"{a}x{w}" for a, w in bits)


@click.command("search")
@click.option("--model", "model_name", type=click.Choice(sorted(MODELS)), default="lenet", show_default=True,
              help="Network to quantise.")
@click.option("--dataset", type=click.Choice(DATASETS), default="digits", show_default=True,
              help="digits (and its views) is bundled; the others need --data-dir (docs/datasets.md).")
@click.option("--data-dir", type=click.Path(), default=None, help="Folder with the dataset's files (never downloaded).")
@click.option("--proxy", "proxy_path", type=click.Path(), default=None,
              help="Latency proxy JSON from `mico fit` (without it: analytic CBOPs, not a measurement).")
@click.option("--latency-budget", default="60%", show_default=True,
              help="Absolute latency in the proxy's unit, or a percentage of the all-8x8 scheme's latency.")
@click.option("--margin", type=click.FloatRange(min=0.0, max=50.0), default=0.0, show_default=True,
              help="Plan this many percent under the latency budget: the latency model's error (mico validate) "
                   "as headroom, so the deployed scheme keeps the budget on the hardware.")
@click.option("--searcher", type=click.Choice(SEARCHERS), default="evolution", show_default=True)
@click.option("--budget-evals", type=click.IntRange(min=1), default=40, show_default=True,
              help="Number of schemes whose accuracy is evaluated.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Float training epochs (default: the dataset's, e.g. 30 digits, 3 mnist; docs/datasets.md).")
@click.option("--qat-epochs", type=click.IntRange(min=0), default=QAT_EPOCHS, show_default=True,
              help="QAT fine-tuning epochs at most for the chosen scheme (early stopping on the validation split).")
@click.option("--search-qat-steps", type=click.IntRange(min=0), default=150, show_default=True,
              help="QAT steps per candidate during the search (0: pure PTQ).")
@click.option("--lsq/--no-lsq", default=True, show_default=True,
              help="Learn the step sizes (scales) of every quantiser during QAT (LSQ).")
@click.option("--seeds", type=click.IntRange(min=1), default=1, show_default=True,
              help="Repeat training, search and QAT for seeds SEED..SEED+K-1 and report the test accuracies' "
                   "mean and spread; the first seed's scheme is written.")
@click.option("--size-budget", default=None,
              help="Most bytes of weights (packed weights and requantisation constants of the generated C), "
                   "e.g. 12000 or 12KiB.")
@click.option("--ram-budget", default=None,
              help="Most bytes of RAM the generated model takes from the arena (activations, scratch), e.g. 6KiB.")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True,
              help="Batch size N of the deployed kernels (for latency).")
@click.option("--cluster", default=None, metavar="local[:N] | tcp://HOST:PORT",
              help="Score the candidates on a Dask cluster: N local worker processes, or the workers of a running "
                   "scheduler (docs/cluster.md); the result is the serial run's.")
@click.option("--round-size", type=click.IntRange(min=1), default=1, show_default=True,
              help="Schemes proposed per round by evolution (children) and surrogate (real evaluations), scored "
                   "side by side on a cluster; 1 is classic steady state. The result depends on it, not on "
                   "--cluster.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default="scheme.json", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the scheme document as JSON.")
def search(model_name, dataset, data_dir, proxy_path, latency_budget, margin, searcher, budget_evals, seed, epochs,
           qat_epochs, search_qat_steps, lsq, seeds, size_budget, ram_budget, batch, cluster, round_size, output,
           as_json):
    """Search per-layer (qa, qw) bit-widths under a latency budget and write a scheme."""
    where = None
    if cluster is not None:
        from harness.cluster import parse_cluster

        where = parse_cluster(cluster)          # a malformed address fails before any work
    t0 = time.monotonic()
    progress = not as_json
    out = Path(output)
    latency_fn, unit, proxy_used = load_latency(proxy_path)
    data = load_dataset(dataset, data_dir)          # a missing or malformed file fails here, before any training
    # the budget only needs layer shapes: check it before any training
    budget = model_budget(get_model(model_name, dataset), latency_fn, latency_budget, batch, unit)
    planned = budget
    if margin:
        # the promise stays the user's budget (deploy checks it); the search plans under it
        planned = model_budget(get_model(model_name, dataset), latency_fn, budget.value * (1 - margin / 100), batch,
                               unit)
        planned = type(budget)(f"{budget.text} - {margin:g}% margin", planned.value, unit)
    epochs = epochs or dataset_info(dataset).epochs
    memory_budget = {"weight_bytes": parse_bytes(size_budget, "--size-budget"),
                     "ram_bytes": parse_bytes(ram_budget, "--ram-budget")}
    client = local_cluster = None
    if where is not None:
        from harness.cluster import connect

        client, local_cluster = connect(where)   # before training: an unreachable scheduler says so at once
    try:
        runs = [_search_run(model_name, dataset, data, out, latency_fn, planned, searcher, budget_evals, s, epochs,
                            qat_epochs, search_qat_steps, lsq, batch, progress, memory_budget,
                            cluster=(where, client) if client is not None else None, round_size=round_size)
                for s in range(seed, seed + seeds)]
    finally:
        if client is not None:
            client.close()
        if local_cluster is not None:
            local_cluster.close()
    r = runs[0]
    model, int_model, result, best = r["model"], r["int_model"], r["result"], r["best"]
    acc_float, acc_fq, acc_int, cached = r["float"], r["fakequant"], r["integer"], r["cached"]
    specs = model.layer_specs(batch)
    # priced as the search priced it: the lowered graph, every timed op (pools too), in the proxy's mode
    from .search.latency import SchemeLatency

    lat = SchemeLatency(r["float_model"], latency_fn, batch)
    per, total = lat(best.bits)
    timed_specs = lat.specs(lat.model_key(best.bits))
    accuracy_doc = {"float": acc_float, "fakequant": acc_fq, "integer": acc_int,
                    "search_validation": best.accuracy, "split": "test"}
    if seeds > 1:
        accuracy_doc["seeds"] = seed_summary(runs)
    scheme = SchemeDoc(
        model=model_name,
        dataset=dataset,
        data_dir=str(Path(data_dir).resolve()) if data_dir else None,
        seed=seed,
        scale_policy="mico",
        layers=[SchemeLayer(name, "conv2d" if s.op == "conv2d" else "linear", s.qa, s.qw, s)
                for name, s in zip(model.layer_names, specs)],
        input={"shape": list(int_model.input_shape), "offset": int_model.input_offset,
               "bits": int_model.input_bits, "scale": int_model.input_scale},
        accuracy=accuracy_doc,
        predicted_latency={"unit": unit, "total": float(total), "per_layer": [float(v) for v in per]},
        budget=dict(budget.to_dict(), **({"margin_pct": margin, "planned": planned.value} if margin else {})),
        bops=total_bops(specs),
        size_bits=size_bits(specs),
        searcher=searcher,
        evaluations=result.evaluations,
        pareto=[c.to_dict() for c in result.pareto],
        candidates=[dict(c.to_dict(), feasible=True) for c in result.candidates],
        proxy=proxy_used,
        train={"epochs": epochs, "qat_epochs": qat_epochs, "qat_epochs_run": r["qat_epochs_run"],
               "search_qat_steps": search_qat_steps, "round_size": round_size, "lsq": lsq,
               "float_cached": cached, "n_train": r["n_train"], "n_val": r["n_val"],
               "n_test": int(len(data.y_test))},
        wall_s=round(time.monotonic() - t0, 2),
        memory=scheme_memory(model, int_model, memory_budget),
        extra={"cluster": str(where)} if where is not None else {},
    )
    path = save_scheme(out, scheme, model)
    doc = read_scheme(path).to_dict()
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    click.echo(f"{model_name} on {dataset}: {searcher} search, {result.evaluations} schemes evaluated, "
               f"budget {budget.value:.6g} {unit} ({budget.text})"
               + (f", planned under {planned.value:.6g} ({margin:g}% margin)" if margin else ""))
    click.echo(f"{'op':<8} {'qa':>3} {'qw':>3} {'writes':>6} {'latency':>12}")
    for ts, v in zip(timed_specs, per):
        if ts is None:
            continue
        writes = "int32" if ts.out_bits == 0 and ts.mode == "layer" else str(ts.out_bits or "")
        click.echo(f"{ts.op:<8} {ts.qa:>3} {ts.qw if ts.has_weights else '':>3} {writes:>6} {v:>12.6g}")
    click.echo(f"predicted latency {total:.6g} {unit} (all-8x8 would be {lat.uniform(8, 8):.6g})")
    click.echo(f"accuracy (test): float {acc_float:.4f}  fake-quant {acc_fq:.4f}  integer {acc_int:.4f}")
    if seeds > 1:
        sm = accuracy_doc["seeds"]
        click.echo(f"over {seeds} seeds (test): float {sm['float_mean']:.4f} ± {sm['float_std']:.4f}  "
                   f"integer {sm['integer_mean']:.4f} ± {sm['integer_std']:.4f}  "
                   f"integer - float {100 * sm['drop_mean']:+.2f} ± {100 * sm['drop_std']:.2f} points")
    click.echo("pareto front: " + ", ".join(f"[{_fmt_bits(c.bits)}] {c.accuracy:.3f}@{c.latency:.4g}"
                                             for c in result.pareto))
    click.echo(f"wrote {path} and {path.with_name(doc['weights'])}")


_BYTES = {"": 1, "b": 1, "k": 1024, "kib": 1024, "kb": 1000, "m": 1 << 20, "mib": 1 << 20, "mb": 10 ** 6}


def parse_bytes(text: str | None, option: str) -> int | None:
    """``12000``, ``12KiB``, ``1.5k`` -> bytes (None stays None); bad text is a UserError."""
    if text is None:
        return None
    import re

    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
    if not m or m.group(2).lower() not in _BYTES:
        raise UserError(f"{option} {text!r} is not a byte count like 12000 or 12KiB.")
    n = int(float(m.group(1)) * _BYTES[m.group(2).lower()])
    if n <= 0:
        raise UserError(f"{option} {text!r} must be a positive number of bytes.")
    return n


def scheme_memory(model, int_model, budgets: dict) -> dict:
    """The memory record of a scheme: the budgets, the prediction from the structural
    graph (what the search checked) and the numbers of the generated C."""
    from kernels.ir import codegen

    from .memory import graph_memory, model_memory

    gen = codegen.generate(int_model.graph, {"model": "scheme"})
    need = model_memory(gen, None)
    generated = {"weight_bytes": graph_memory(int_model.graph)["weight_bytes"],
                 "activation_bytes": need.activation_bytes, "ram_bytes": need.arena_bytes}
    return {"budgets": {k: v for k, v in budgets.items() if v is not None},
            "predicted": graph_memory(model.lower()), "generated": generated}


def seed_summary(runs: list[dict]) -> dict:
    """Mean and spread (sample standard deviation) over seeds of the test accuracies."""
    import numpy as np

    out: dict = {"seeds": [r["seed"] for r in runs], "schemes": [[list(p) for p in r["best"].bits] for r in runs]}
    for key in ("float", "fakequant", "integer"):
        v = np.array([r[key] for r in runs], dtype=np.float64)
        out[key] = v.tolist()
        out[f"{key}_mean"], out[f"{key}_std"] = float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0
    d = np.array([r["integer"] - r["float"] for r in runs], dtype=np.float64)
    out["drop_mean"], out["drop_std"] = float(d.mean()), float(d.std(ddof=1)) if len(d) > 1 else 0.0
    return out


def _search_run(model_name, dataset, data, out, latency_fn, budget, searcher, budget_evals, seed, epochs,
                qat_epochs, search_qat_steps, lsq, batch, progress, memory_budget=None, cluster=None,
                round_size: int = 1) -> dict:
    """One seed: float model (cached), search on the validation split, QAT of the best
    scheme with early stopping on the validation split, test accuracies."""
    x_tr, y_tr, x_val, y_val = data.split_validation(VAL_FRACTION, seed, VAL_MAX)

    float_model, cached = float_model_cached(model_name, dataset, seed, epochs, x_tr, y_tr,
                                             out.parent / CACHE_DIR, progress)
    acc_float = accuracy(float_model, data.x_test, data.y_test)
    log.info("float model: test accuracy %.4f (%s)", acc_float, "cached" if cached else "trained")

    evaluator = PTQEvaluator(float_model, x_tr, y_tr, x_val, y_val, qat_steps=search_qat_steps, seed=seed, lsq=lsq)
    remote = None
    if cluster is not None:
        from .search.parallel import ClusterEvaluator

        remote = ClusterEvaluator(evaluator, cluster[0], client=cluster[1]).open()
    try:
        result, budget = run_search(float_model, remote or evaluator, latency_fn, budget, searcher=searcher,
                                    n_evals=budget_evals, seed=seed, batch=batch, unit=budget.unit,
                                    progress=progress, size_budget=(memory_budget or {}).get("weight_bytes"),
                                    ram_budget=(memory_budget or {}).get("ram_bytes"), round_size=round_size)
    finally:
        if remote is not None:
            remote.close()
    if result.best is None:
        raise UserError("the search evaluated no scheme; raise --budget-evals or --latency-budget.")
    best = result.best

    # final QAT of the chosen scheme on the training split, early stopping on the validation split
    model = quantize(float_model, best.bits, x_tr, seed=seed)
    losses: list[float] = []
    if qat_epochs > 0:
        torch.manual_seed(seed)
        losses = qat(model, x_tr, y_tr, epochs=qat_epochs, seed=seed, progress=progress, lsq=lsq,
                     x_val=x_val, y_val=y_val)
    model.eval()
    int_model = build_integer_model(model)
    per_epoch = max(1, (len(y_tr) + 63) // 64)
    return {"seed": seed, "model": model, "float_model": float_model, "int_model": int_model, "result": result,
            "best": best,
            "float": acc_float, "fakequant": accuracy(model, data.x_test, data.y_test),
            "integer": integer_accuracy(int_model, data.x_test, data.y_test), "cached": cached,
            "qat_epochs_run": len(losses) // per_epoch, "n_train": int(len(y_tr)), "n_val": int(len(y_val))}
