"""Whole models on bitfusion-rtl: measured vs predicted cycles, per layer and in total.

    .venv/bin/python benchmarks/bench_bitfusion_deploy.py [SCHEME.json ...] [--zoo MODEL ...] \
        [--limit 3] [--param KEY=VALUE ...] [-o benchmarks/results/bitfusion_deploy.json]

For each scheme (from ``mico search``), the integer model is loaded into one
bitfusion-rtl session (rtl_sims/bitfusion/deploy.py: conv / linear +
requantisation + fused pools on the array, the rest on the host side) and run
on the first ``--limit`` test images; the logits are checked against the
PyTorch integer model.  Measured: the RTL's cycle counter of every layer
program (the timer slots ``mico deploy`` prints).  Predicted: the analytical
model (rtl_sims/bitfusion/model.py) of the same compiled programs.  The JSON
holds both per layer, the totals, the error and the placement of every node.
Cycles are deterministic (one image would do; several check that).

``--zoo`` adds zoo models without a search: untrained, random BN folded, a
seeded random scheme of widths 1/2/4/8, calibrated on the training split (the
test suite's ``calibrated_integer_model``), on digits 8x8.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np


def _zoo_model(name: str, seed: int = 6):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from helpers.models import calibrated_integer_model
    from mpq.datasets import load_dataset

    ds = load_dataset("digits")
    _, im = calibrated_integer_model(name, seed, ds.x_train)
    return im, {"model": name, "dataset": "digits", "scheme": f"random (seed {seed}), untrained"}


def bench(scheme_path: Path | None, limit: int, params: dict, zoo: str | None = None) -> dict:
    import torch

    from harness import registry
    from mpq.datasets import load_dataset
    from mpq.deploy import run_on_device
    from mpq.scheme import load_scheme

    if zoo is None:
        _, imodel, doc = load_scheme(scheme_path)
    else:
        imodel, doc = _zoo_model(zoo)
    g = imodel.graph
    ds = load_dataset(doc.get("dataset", "digits"), doc.get("data_dir"))
    with torch.no_grad():
        xq = imodel.quantize_input(ds.x_test[:limit])
        ref = np.asarray(imodel.forward_int(xq), dtype=np.int64)
    xq = np.asarray(xq, dtype=np.int8).reshape(limit, -1)
    t = registry.get("bitfusion-rtl", **params)
    t0 = time.monotonic()
    with t.session() as s:
        run = run_on_device(s, g, xq)
        info = s._model.info
    wall = time.monotonic() - t0
    meas = np.median(run.times, axis=0)
    pred = info["predicted_layers"]
    layers = [{"name": n.name, "kind": n.op.kind, "measured": float(m), "predicted": int(p),
               "error_pct": (100.0 * (p - m) / m) if m else None}
              for n, m, p in zip(g.timed_nodes, meas, pred)]
    mt, pt = float(np.median(run.totals)), int(info["predicted_total"])
    return {"scheme": str(scheme_path) if zoo is None else doc["scheme"], "model": doc.get("model"), "dataset": doc.get("dataset"),
            "bits": [list(b) for b in g.scheme], "n_images": limit,
            "bit_exact": bool(np.array_equal(run.outputs, ref)),
            "measured_total": mt, "predicted_total": pt, "error_pct": 100.0 * (pt - mt) / mt,
            "deterministic": bool((run.times == run.times[0]).all()),
            "layers": layers, "placement": info["placement"], "wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("schemes", nargs="*", type=Path)
    ap.add_argument("--zoo", nargs="*", default=[], help="zoo models at a random scheme (no search)")
    ap.add_argument("--limit", type=int, default=3)
    ap.add_argument("--param", action="append", default=[], help="bitfusion-rtl parameter KEY=VALUE")
    ap.add_argument("-o", "--out", type=Path, default=Path("benchmarks/results/bitfusion_deploy.json"))
    a = ap.parse_args()
    params = {}
    for kv in a.param:
        k, _, v = kv.partition("=")
        params[k] = int(v) if v.isdigit() else v
    res = {"machine": platform.machine(), "params": params, "models": [bench(p, a.limit, params) for p in a.schemes]
           + [bench(None, a.limit, params, z) for z in a.zoo]}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1))
    for m in res["models"]:
        where = {}
        for p in m["placement"]:
            where[p["where"]] = where.get(p["where"], 0) + 1
        print(f"{m['model']} {m['bits']}: bit-exact {m['bit_exact']}, measured {m['measured_total']:.0f} cycles, "
              f"predicted {m['predicted_total']} ({m['error_pct']:+.2f}%); nodes {where}")
        for layer in m["layers"]:
            if layer["measured"]:
                print(f"  {layer['name']:<12} {layer['kind']:<7} measured {layer['measured']:>9.0f}  "
                      f"predicted {layer['predicted']:>9d} ({layer['error_pct']:+.2f}%)")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
