"""Whole-model latency validation: predicted against measured, over many schemes.

A latency model is only worth what it predicts for models it has not seen run.
`validate` deploys N random schemes of one network plus the all-lowest and the
all-8x8 scheme on a target, checks every run bit-exact against the integer
reference, and sets the measured whole-model latency beside the prediction:
MAPE, max |error| and Spearman's rho over the schemes, and the per-layer
errors.  Beside it stands MiCo's recipe: a two-point calibration (slope and
intercept fitted on the measured all-lowest and all-8x8 runs) applied to the
same predictions, evaluated on the random schemes only.

Latency does not depend on how well a model is trained, so the network is
quantised straight from its seeded initialisation, calibrated on a few
training batches; accuracy is not reported.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from harness.errors import MeasureError, UserError
from kernels.ir import codegen
from kernels.reference import BITS

from .deploy import run_on_device, timed_layers
from .evaluate import latency_mode
from .fold import fold_model
from .integer import build_integer_model
from .models import QuantModel, Scheme
from .train import quantize

log = logging.getLogger(__name__)

FORMAT, VERSION = "mico-validation", 1


@dataclass
class SchemeResult:
    """One deployed scheme: what was predicted and what the device measured."""

    label: str                               # "all-lowest", "all-8x8", "random-3"
    bits: list[list[int]]
    predicted: float | None
    measured: float
    bit_exact: bool
    layers: list[dict] = field(default_factory=list)   # name, kind, predicted, measured, error_pct

    @property
    def error_pct(self) -> float | None:
        return None if self.predicted is None else 100.0 * (self.predicted - self.measured) / self.measured


def random_schemes(n_layers: int, n: int, seed: int, bits: Sequence[int] = BITS) -> list[Scheme]:
    """n distinct uniformly random schemes (seeded), excluding the two uniform end points."""
    rng = np.random.default_rng(seed)
    pairs = [(a, w) for a in bits for w in bits]
    ends = {((min(bits), min(bits)),) * n_layers, ((max(bits), max(bits)),) * n_layers}
    out: list[Scheme] = []
    limit = len(pairs) ** n_layers - len(ends)
    while len(out) < min(n, limit):
        s = tuple(pairs[int(i)] for i in rng.integers(len(pairs), size=n_layers))
        if s not in ends and s not in out:
            out.append(s)
    return out


def metrics(pred: Sequence[float], meas: Sequence[float]) -> dict:
    """MAPE, max |error| (percent of measured) and Spearman rho of predicted vs measured."""
    from scipy.stats import spearmanr

    p, m = np.asarray(pred, dtype=np.float64), np.asarray(meas, dtype=np.float64)
    if len(p) == 0:
        return {"n": 0, "mape": None, "max_abs_pct": None, "spearman": None}
    err = np.abs(p - m) / m * 100.0
    rho = float(spearmanr(p, m).statistic) if len(p) > 2 and np.ptp(p) > 0 and np.ptp(m) > 0 else None
    return {"n": int(len(p)), "mape": float(err.mean()), "max_abs_pct": float(err.max()),
            "spearman": None if rho is None or math.isnan(rho) else rho}


def two_point(results: Sequence[SchemeResult]) -> tuple[float, float] | None:
    """MiCo's calibration: the line through (predicted, measured) of all-lowest and all-8x8."""
    ends = {r.label: r for r in results}
    lo, hi = ends.get("all-lowest"), ends.get("all-8x8")
    if lo is None or hi is None or lo.predicted is None or hi.predicted is None or hi.predicted == lo.predicted:
        return None
    slope = (hi.measured - lo.measured) / (hi.predicted - lo.predicted)
    return slope, lo.measured - slope * lo.predicted


@dataclass
class Validation:
    model: str
    dataset: str
    target: str
    unit: str
    proxy: str | None
    results: list[SchemeResult]
    wall_s: float = 0.0

    def summary(self) -> dict:
        rnd = [r for r in self.results if r.label.startswith("random")]
        every = [r for r in self.results if r.predicted is not None]
        out = {"uncalibrated": metrics([r.predicted for r in every], [r.measured for r in every]),
               "uncalibrated_random": metrics([r.predicted for r in rnd if r.predicted is not None],
                                              [r.measured for r in rnd if r.predicted is not None])}
        cal = two_point(self.results)
        if cal is not None:
            a, b = cal
            out["two_point"] = dict(metrics([a * r.predicted + b for r in rnd if r.predicted is not None],
                                            [r.measured for r in rnd if r.predicted is not None]),
                                    slope=a, intercept=b)
        errs = [abs(l["error_pct"]) for r in self.results for l in r.layers if l.get("error_pct") is not None]
        out["layers"] = {"n": len(errs), "mape": float(np.mean(errs)) if errs else None,
                         "max_abs_pct": float(np.max(errs)) if errs else None}
        out["bit_exact"] = all(r.bit_exact for r in self.results)
        return out

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "model": self.model, "dataset": self.dataset,
                "target": self.target, "unit": self.unit, "proxy": self.proxy, "wall_s": self.wall_s,
                "summary": self.summary(),
                "schemes": [dict(asdict(r), error_pct=r.error_pct) for r in self.results]}


LatencyFn = Callable[[list], tuple[np.ndarray, float]]


def plan_schemes(n_layers: int, n_schemes: int, seed: int) -> list[tuple[str, Scheme]]:
    """(label, scheme) of every deployment: all-lowest, all-8x8, then the random ones."""
    lo, hi = min(BITS), max(BITS)
    plan = [("all-lowest", ((lo, lo),) * n_layers), ("all-8x8", ((hi, hi),) * n_layers)]
    return plan + [(f"random-{i}", s) for i, s in enumerate(random_schemes(n_layers, n_schemes, seed))]


@dataclass
class Deployment:
    """What every scheme's deployment needs besides the scheme and the session: the folded
    network, its inputs and the latency model (shipped once to each worker on a cluster)."""

    base: QuantModel
    model_name: str
    x_cal: torch.Tensor
    x_in: torch.Tensor
    latency_fn: LatencyFn | None
    seed: int

    def run(self, label: str, scheme: Scheme, session, target) -> SchemeResult:
        """Quantise, generate, run on the device and check bit-exact; predicted beside measured.
        Depends on nothing but its arguments (calibration draws from its own seeded generator),
        so the schemes may run in any order, on any worker."""
        tool = target.model_toolchain() if target.capabilities().model_images else None
        q = quantize(self.base, scheme, self.x_cal, calib_batches=1, seed=self.seed)
        im = build_integer_model(q)
        graph = im.graph
        with torch.no_grad():
            xq = im.quantize_input(self.x_in)
            ref = np.asarray(im.forward_int(xq), dtype=np.int64)
        image = codegen.compile_image(codegen.generate(graph, {"model": self.model_name}), tool) if tool else None
        try:
            run = run_on_device(session, graph, np.asarray(xq, dtype=np.int8), image)
        except MeasureError as e:
            raise UserError(f"running scheme {label} on {target.name} failed: {e}") from None
        latency_fn = self.latency_fn
        timed = timed_layers(graph, latency_mode(latency_fn) if latency_fn is not None else "kernel")
        per_pred: list[float | None] = [None] * len(timed)
        total_pred = None
        if latency_fn is not None:
            specs = [t["spec"] for t in timed]
            known = [i for i, s in enumerate(specs) if s is not None]
            per, _ = latency_fn([specs[i] for i in known])
            for i, v in zip(known, per):
                per_pred[i] = float(v)
            total_pred = float(sum(v for v in per_pred if v is not None))
        layers = []
        for j, t in enumerate(timed):
            med = float(np.median(run.times[:, j]))
            p = per_pred[j]
            layers.append({"name": t["name"], "kind": t["kind"], "measured": med, "predicted": p,
                           "error_pct": None if p is None or med == 0 else 100.0 * (p - med) / med})
        return SchemeResult(label, [list(b) for b in scheme], total_pred, float(np.median(run.totals)),
                            bool((run.outputs == ref).all()), layers)


def prepare(model: QuantModel, model_name: str, dataset, latency_fn: LatencyFn | None, n_schemes: int,
            seed: int, n_images: int) -> tuple[Deployment, list[tuple[str, Scheme]]]:
    """Check the counts, fold the network and plan the schemes."""
    if n_schemes < 0:
        raise UserError(f"the number of random schemes must be >= 0, got {n_schemes}.")
    if n_images < 1:
        raise UserError(f"the number of images must be >= 1, got {n_images}.")
    torch.manual_seed(seed)
    base = model.eval()
    fold_model(base)
    dep = Deployment(base, model_name, dataset.x_train[:256], dataset.x_test[:n_images], latency_fn, seed)
    return dep, plan_schemes(len(base.layer_names), n_schemes, seed)


def validate(model: QuantModel, model_name: str, dataset, session, target, latency_fn: LatencyFn | None,
             n_schemes: int, seed: int = 0, n_images: int = 2, proxy_path: str | None = None,
             progress: bool = False) -> Validation:
    """Deploy the schemes on a booted session and compare (see the module doc)."""
    t0 = time.monotonic()
    dep, plan = prepare(model, model_name, dataset, latency_fn, n_schemes, seed, n_images)
    results: list[SchemeResult] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(plan), desc=f"validate {model_name} on {target.name}", unit="scheme", leave=False)
    try:
        for label, scheme in plan:
            results.append(dep.run(label, scheme, session, target))
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    unit = session.hello.timer_unit if session.hello is not None else "cycles"
    return Validation(model_name, dataset.name, target.name, unit, proxy_path, results,
                      wall_s=round(time.monotonic() - t0, 2))


def summary_text(v: Validation) -> str:
    s = v.summary()

    def fmt(m: dict) -> str:
        if not m or m.get("mape") is None:
            return "n/a"
        rho = m.get("spearman")
        return (f"MAPE {m['mape']:.2f}%, max |err| {m['max_abs_pct']:.2f}%, "
                f"Spearman rho {rho:.3f}" if rho is not None else
                f"MAPE {m['mape']:.2f}%, max |err| {m['max_abs_pct']:.2f}%") + f" over {m['n']} schemes"

    lines = [f"{v.model} on {v.target}: {len(v.results)} schemes deployed, "
             + ("all bit-exact" if s["bit_exact"] else "NOT all bit-exact"),
             f"  uncalibrated (every scheme):    {fmt(s['uncalibrated'])}",
             f"  uncalibrated (random schemes):  {fmt(s['uncalibrated_random'])}"]
    if "two_point" in s:
        tp = s["two_point"]
        lines.append(f"  MiCo two-point calibration:    {fmt(tp)} (slope {tp['slope']:.4g}, "
                     f"intercept {tp['intercept']:.4g})")
    if s["layers"]["n"]:
        lines.append(f"  per layer: MAPE {s['layers']['mape']:.2f}%, max |err| {s['layers']['max_abs_pct']:.2f}% "
                     f"over {s['layers']['n']} layer runs")
    lines.append(f"  {'scheme':<12} {'predicted':>12} {'measured':>12} {'error':>8}")
    for r in v.results:
        e = r.error_pct
        lines.append(f"  {r.label:<12} {r.predicted if r.predicted is not None else float('nan'):>12.0f} "
                     f"{r.measured:>12.0f} {'' if e is None else f'{e:+.1f}%':>8}")
    return "\n".join(lines)


# ---- on a Dask cluster (`mico validate --cluster`) ---------------------------------
_ONE_AT_A_TIME = threading.Lock()


def deploy_task(dep: Deployment, label: str, scheme: Scheme, target_name: str, params: dict,
                fingerprint: str) -> SchemeResult:
    """On a worker: deploy one scheme on the worker's kept session of the target (booted on
    first use by harness.cluster's plugin; killed if the run fails, the next one boots anew)."""
    from harness.cluster import worker_plugin

    p = worker_plugin()
    with _ONE_AT_A_TIME:               # torch's thread count is the process's
        if torch.get_num_threads() != 1:
            torch.set_num_threads(1)
        try:
            session, target = p.session(target_name, params, fingerprint)
            return dep.run(label, scheme, session, target)
        except BaseException:
            p.drop()
            raise


def validate_on_cluster(model: QuantModel, model_name: str, dataset, target_name: str, params: dict,
                        latency_fn: LatencyFn | None, n_schemes: int, cluster: str, seed: int = 0,
                        n_images: int = 2, proxy_path: str | None = None, progress: bool = False) -> Validation:
    """`validate` with the deployments spread over the workers of a Dask cluster: each worker
    builds and boots the target once (harness.cluster's plugin, as for a sweep), the network
    and inputs go to every worker once, and the client collects the results (the one writer)
    in plan order."""
    from harness import registry
    from harness.cluster import check_resources, connect, parse_cluster, probe_task

    t0 = time.monotonic()
    where = parse_cluster(cluster)
    dep, plan = prepare(model, model_name, dataset, latency_fn, n_schemes, seed, n_images)
    target = registry.get(target_name, **params)
    need = target.cluster_resources()
    client, local = connect(where)
    futures: list = []
    bar = None
    try:
        check_resources(client, need, str(where))
        from distributed import as_completed

        run = uuid.uuid4().hex[:8]
        probe = client.submit(probe_task, target_name, params, resources=need or None, pure=False,
                              key=f"mico-probe-{target_name}-{run}")
        build, hello = _cluster_result(probe, f"probing {target_name}", where)
        remote = client.scatter(dep, broadcast=True, hash=False)
        futures = [client.submit(deploy_task, remote, label, scheme, target_name, params, build.fingerprint,
                                 resources=need or None, pure=False, key=f"mico-deploy-{run}-{label}")
                   for label, scheme in plan]
        labels = {f.key: label for f, (label, _) in zip(futures, plan)}
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(plan), desc=f"validate {model_name} on {target_name} ({where})", unit="scheme",
                       leave=False)
        done: dict[str, SchemeResult] = {}
        for fut in as_completed(futures):
            r = _cluster_result(fut, f"deploying scheme {labels[fut.key]} on {target_name}", where)
            done[r.label] = r
            if bar is not None:
                bar.update(1)
    except BaseException:
        client.cancel(futures)
        raise
    finally:
        if bar is not None:
            bar.close()
        client.close()
        if local is not None:
            local.close()
    unit = hello.timer_unit if hello is not None else "cycles"
    return Validation(model_name, dataset.name, target_name, unit, proxy_path, [done[lb] for lb, _ in plan],
                      wall_s=round(time.monotonic() - t0, 2))


def _cluster_result(fut, what: str, where):
    """A task's result; its failure as one sentence."""
    from distributed import KilledWorker

    from harness.errors import MicoError

    try:
        return fut.result()
    except MicoError as e:
        raise UserError(str(e)) from None
    except KilledWorker as e:
        raise UserError(f"{what} took down every worker it ran on ({e}).") from None
    except Exception as e:  # noqa: BLE001 -- a task's own failure, in its own words
        log.debug("cluster task failed", exc_info=True)
        raise UserError(f"{what} failed on the cluster {where}: {type(e).__name__}: {e}.") from None
