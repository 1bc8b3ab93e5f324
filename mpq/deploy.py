"""Deploy and validate: run the generated C model on a target and check it.

For every test image the logits returned by the device are compared element
by element with the PyTorch integer reference (bit-exact or it is a bug);
on-target accuracy is set beside the reference's; measured per-layer and
end-to-end latency is set beside the proxy's prediction.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness import registry
from harness.errors import MeasureError, UserError
from kernels import ir
from kernels.ir import codegen


log = logging.getLogger(__name__)


@dataclass
class DeployResult:
    report: dict

    @property
    def ok(self) -> bool:
        return bool(self.report["bit_exact"])


def _pct(measured: float | None, predicted: float | None) -> float | None:
    if measured is None or predicted is None or measured == 0:
        return None
    return 100.0 * (predicted - measured) / measured


def _load_latency(proxy_path: str | None):
    """The latency model of a proxy file, or None (no file given, or it is gone)."""
    if not proxy_path:
        return None
    from proxy.model import load_proxies

    p = Path(proxy_path)
    if not p.exists():
        log.warning("proxy %s not found; no predictions", p)
        return None
    return load_proxies(p)


def _predict(lat, timed: list[dict]) -> tuple[list[float | None], str | None]:
    if lat is None:
        return [None] * len(timed), None
    out: list[float | None] = []
    for t in timed:
        if t["spec"] is None:
            out.append(None)
        else:
            try:
                out.append(float(lat.predict_specs([t["spec"]])[0]))
            except (KeyError, UserError, ValueError):
                out.append(None)
    return out, getattr(lat, "unit", None)


def timed_layers(graph: ir.Graph, mode: str = "kernel") -> list[dict]:
    """The nodes a device reports times for, in its order: name, kind, the spec they are
    priced by in ``mode`` (layer mode: every timed node has one)."""
    return [{"name": n.name, "kind": n.op.kind, "spec": graph.spec(n, 1, mode), "node": n.index}
            for n in graph.timed_nodes]


def check_scheme_matches(doc: dict, graph: ir.Graph) -> None:
    """The scheme file's recorded layer specs must be the ones the model lowers to:
    a hand-edited qa/qw would otherwise run silently at other bit-widths."""
    specs = graph.specs(1)
    layers = doc.get("layers") or []
    for l, s in zip(layers, specs):
        want = l.get("spec") or {}
        try:
            qa, qw = int(l["qa"]), int(l["qw"])
            sqa, sqw = int(want.get("qa", qa)), int(want.get("qw", qw))
        except (KeyError, TypeError, ValueError):
            raise UserError(f"scheme layer {l.get('name')!r} has malformed bit-widths; rerun `mico search`.") from None
        if (qa, qw) != (s.qa, s.qw) or (sqa, sqw) != (s.qa, s.qw):
            raise UserError(f"scheme layer {l.get('name')!r} says {qa}x{qw} (spec {sqa}x{sqw}) but its weights "
                            f"build a {s.qa}x{s.qw} layer; the scheme file was edited, rerun `mico search`.")


@dataclass
class DeviceRun:
    """What a device returned for a batch of inputs."""

    outputs: np.ndarray      # (images, out_count) int64
    times: np.ndarray        # (images, timed layers)
    totals: np.ndarray       # (images,)
    #: per timed layer, what the target's own model predicts for the loaded program (accelerators
    #: whose compiler knows its cycles, e.g. BitFusion's analytical model); None elsewhere
    model_predicted: list | None = None


def run_on_device(session, graph: ir.Graph, inputs: np.ndarray, image: bytes | None = None,
                  progress: bool = False, label: str = "deploy") -> DeviceRun:
    """Load a model (a compiled C image, or the IR graph itself for accelerators that map
    it) into a booted session and run every input; per-layer times follow
    ``graph.timed_nodes``."""
    info = session.load_model(image) if image is not None else session.load_ir_model(graph)
    info = info if isinstance(info, dict) else vars(info)
    n_in, n_out = graph.input.numel, graph.output.numel
    if info["in_count"] != n_in or info["out_count"] != n_out:
        raise UserError("the loaded model's input/output sizes differ from the graph's; regenerate it.")
    n_timed = len(graph.timed_nodes)
    xs = np.asarray(inputs, dtype=np.int8).reshape(len(inputs), -1)
    out = DeviceRun(np.zeros((len(xs), n_out), np.int64), np.zeros((len(xs), n_timed)), np.zeros(len(xs)))
    mp = info.get("predicted_layers")
    if mp is not None and len(mp) == n_timed:
        out.model_predicted = [float(v) for v in mp]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(xs), desc=label, unit="img", leave=False)
    try:
        for i, x in enumerate(xs):
            r = session.run_model(x.tobytes())
            if len(r.outputs) != n_out or len(r.layers) != n_timed:
                raise MeasureError(f"the device returned {len(r.outputs)} outputs and {len(r.layers)} layer times; "
                                   f"the model has {n_out} and {n_timed}")
            out.outputs[i] = r.outputs
            out.times[i] = r.layers
            out.totals[i] = r.total
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return out


def deploy(scheme_path: str | Path, target_name: str, limit: int | None = None, progress: bool = True,
           params: dict | None = None, proxy_path: str | Path | None = None) -> DeployResult:
    from .scheme import load_scheme

    if limit is not None and limit < 1:
        raise UserError(f"the image limit must be at least 1, got {limit}.")
    scheme_path = Path(scheme_path)
    qmodel, imodel, scheme = load_scheme(scheme_path)
    graph = imodel.graph
    check_scheme_matches(scheme, graph)
    target = registry.get(target_name, **(params or {}))
    caps = target.capabilities()
    if not (caps.model_images or caps.ir_models):
        raise UserError(f"target {target_name} cannot run models (it only measures kernels).")
    gen = codegen.generate(graph, {"model": scheme.get("model"), "dataset": scheme.get("dataset")})
    t0 = time.monotonic()
    # firmware targets run the generated C image; accelerator targets map the IR graph themselves
    image = codegen.compile_image(gen, target.model_toolchain()) if caps.model_images else None
    compile_s = time.monotonic() - t0

    from .datasets import load_dataset

    ds = load_dataset(scheme.get("dataset", "digits"), scheme.get("data_dir"))
    x, y = ds.x_test, ds.y_test.numpy()
    if limit:
        x, y = x[:limit], y[:limit]
    import torch

    with torch.no_grad():
        xq = imodel.quantize_input(x)
        ref = np.asarray(imodel.forward_int(xq), dtype=np.int64)
        fq_logits = qmodel(x)
    xq_np = np.asarray(xq, dtype=np.int8).reshape(len(y), -1)
    from .memory import check_fits, model_memory

    need = model_memory(gen, image)
    with target.session() as session:
        if image is not None:
            check_fits(need, session.hello, target_name, target.params.get("mem_kib"))
        try:
            run = run_on_device(session, graph, xq_np, image, progress, f"deploy on {target_name}")
        except MeasureError as e:
            raise UserError(f"running the model on {target_name} failed: {e}") from None
        build = session.build_result
    dev, times, totals = run.outputs, run.times, run.totals
    mism = np.any(dev != ref, axis=1)
    unit = session.hello.timer_unit
    proxy_used = str(proxy_path) if proxy_path else scheme.get("proxy")
    lat = _load_latency(proxy_used)
    mode = lat.mode if lat is not None else "kernel"
    timed = timed_layers(graph, mode)
    preds, punit = _predict(lat, timed)
    unit_note = None
    if punit and punit != unit:
        # a proxy of another target (e.g. host ns) says nothing about these cycles
        unit_note = (f"the proxy predicts {punit} but {target_name} measures {unit}; "
                     f"pass --proxy with a proxy fitted on {target_name}")
        log.warning(unit_note)
        preds = [None] * len(preds)
    if all(p is None for p in preds) and run.model_predicted is not None:
        # no proxy of this target: the accelerator's own model of the compiled program predicts
        preds = list(run.model_predicted)
        proxy_used = f"{target_name} analytical model"
        unit_note = None
    layers = []
    for j, t in enumerate(timed):
        col = times[:, j]
        med = float(np.median(col))
        q1, q3 = np.percentile(col, [25, 75])
        spec = t["spec"]
        layers.append({
            "name": t["name"], "kind": t["kind"],
            "qa": spec.qa if spec else None, "qw": spec.qw if spec else None,
            "spec": spec.to_dict() if spec else None,
            "measured_median": med, "measured_iqr": float(q3 - q1),
            "predicted": preds[j], "error_pct": _pct(med, preds[j]),
        })
    kernel_preds = [p for p in preds if p is not None]
    pred_total = float(sum(kernel_preds)) if kernel_preds else None
    other = scheme.get("predicted_latency", {}).get("other_ops") if pred_total is not None else None
    if pred_total is not None and other:
        pred_total += float(other)
    meas_total = float(np.median(totals))
    modelled = [l["measured_median"] for l in layers if l["predicted"] is not None]
    meas_modelled = float(sum(modelled)) if modelled else None
    q1, q3 = np.percentile(totals, [25, 75])
    acc_dev = float(np.mean(dev.argmax(1) == y))
    acc_ref = float(np.mean(ref.argmax(1) == y))
    acc_fq = float(np.mean(fq_logits.argmax(1).numpy() == y))
    report = {
        "format": "mico-deploy", "version": 1,
        "target": target_name, "fingerprint": build.fingerprint, "scheme": str(scheme_path),
        "model": scheme.get("model"), "dataset": scheme.get("dataset"),
        "n_images": int(len(y)), "bit_exact": bool(not mism.any()), "mismatches": int(mism.sum()),
        "max_abs_diff": int(np.abs(dev - ref).max()) if len(y) else 0,
        "first_mismatch": int(np.argmax(mism)) if mism.any() else None,
        "accuracy": {"target": acc_dev, "integer_reference": acc_ref, "fakequant": acc_fq},
        "latency": {
            "unit": unit, "measured_total_median": meas_total, "measured_total_iqr": float(q3 - q1),
            "predicted_total": pred_total, "error_pct": _pct(meas_total, pred_total),
            "predicted_covers": ("every layer, measured as deployed (layer mode)" if mode == "layer"
                                 else "conv/linear kernels (kernel mode)") + (" + other ops" if other else ""),
            "proxy": proxy_used, "proxy_note": unit_note,
            "measured_modelled_layers": meas_modelled,
            "modelled_error_pct": _pct(meas_modelled, float(sum(p for p in preds if p is not None)) if modelled else None),
            "layers": layers, "mode": mode,
        },
        "image_bytes": len(image) if image is not None else None, "scratch_bytes": gen.scratch_bytes,
        "activation_bytes": gen.act_bytes, "memory": need.to_dict(), "compile_s": compile_s,
        "bits": [list(b) for b in graph.scheme],
    }
    budget = scheme.get("budget") or {}
    if isinstance(budget, dict) and budget.get("value") and budget.get("unit") == unit:
        # the promise of the search, checked on the hardware
        report["budget"] = {"text": budget.get("text"), "value": float(budget["value"]), "unit": unit,
                            "measured": meas_total, "held": bool(meas_total <= float(budget["value"]))}
    return DeployResult(report)


def write_report(res: DeployResult, path: str | Path) -> None:
    """deploy.json through its dataclass (validated, written atomically)."""
    from .deploy_report import DeployReport

    DeployReport.from_dict(res.report, "the deploy report").write(path)


def summary_text(r: dict) -> str:
    lat = r["latency"]
    lines = [
        f"{r['model']} on {r['target']}: {r['n_images']} images, "
        + ("bit-exact (C logits == PyTorch integer reference on every image)" if r["bit_exact"]
           else f"NOT bit-exact: {r['mismatches']} images differ (max |diff| {r['max_abs_diff']})"),
        f"accuracy: target {100 * r['accuracy']['target']:.2f}%, integer reference "
        f"{100 * r['accuracy']['integer_reference']:.2f}%, fake-quant {100 * r['accuracy']['fakequant']:.2f}%",
    ]
    pt = lat["predicted_total"]
    lines.append(f"latency: measured {lat['measured_total_median']:.0f} {lat['unit']} (median), predicted "
                 + (f"{pt:.0f} ({lat['error_pct']:+.1f}%)" if pt is not None else "n/a"))
    if lat.get("proxy_note"):
        lines.append(f"  no predictions: {lat['proxy_note']}")
    b = r.get("budget")
    if b:
        lines.append(f"budget {b['value']:.0f} {b['unit']} ({b['text']}): measured {b['measured']:.0f} -> "
                     + ("the budget HELD on the hardware" if b["held"] else
                        f"the budget was MISSED by {100 * (b['measured'] / b['value'] - 1):.1f}%"))
    if lat.get("modelled_error_pct") is not None:
        lines.append(f"  timed layers only (without model entry and exit): measured "
                     f"{lat['measured_modelled_layers']:.0f}, error {lat['modelled_error_pct']:+.1f}%")
    for l in lat["layers"]:
        p = l["predicted"]
        lines.append(f"  {l['name']:<10} {l['kind']:<6} "
                     + (f"{l['qa']}x{l['qw']} " if l["qa"] else "    ")
                     + f"measured {l['measured_median']:>10.0f}  predicted "
                     + ("       n/a (not modelled)" if p is None else f"{p:>10.0f}"
                        + (f" ({l['error_pct']:+.1f}%)" if l["error_pct"] is not None else "")))
    return "\n".join(lines)
