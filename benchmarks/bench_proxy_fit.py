"""Benchmark: fit + shape-grouped CV time and accuracy of the latency proxies.

For each model (linear, rf, gbrt) this times ``LatencyProxy(...).fit(data)``,
which runs the shape-grouped cross-validation and the final fit, over a few
repeats and reports the median wall time and the CV metrics.  It also reports
grouped vs shuffled K-fold MAPE: the gap is how much plain K-fold would
overstate a proxy's accuracy on unseen shapes.

Data: a synthetic matmul/conv2d data set of about --rows kernels (known formula
plus noise and a per-shape effect, proxy/synthetic.py), or the ok measurements
of --target in --store.  Results are written as JSON (default
benchmarks/results/proxy_fit.json).

    .venv/bin/python benchmarks/bench_proxy_fit.py --rows 2000 --repeats 3
    .venv/bin/python benchmarks/bench_proxy_fit.py --store results.sqlite --target vexriscv-full --op conv2d

Importing this module has no side effects; run it as a script.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "proxy_fit.json"
MODELS = ("linear", "rf", "gbrt")


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", help="results store to read (default: synthetic data)")
    ap.add_argument("--target", help="target name or fingerprint prefix in --store")
    ap.add_argument("--op", default="matmul", choices=("matmul", "conv2d"))
    ap.add_argument("--rows", type=int, default=1600, help="synthetic kernels (16 bit-width pairs per shape)")
    ap.add_argument("--noise", type=float, default=0.03, help="synthetic per-kernel log-noise")
    ap.add_argument("--shape-effect", type=float, default=0.3, help="synthetic per-shape log-effect")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--features", default="cbops", choices=("raw", "bops", "cbops", "cbops+", "analytic"))
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of linear,rf,gbrt")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT)
    args = ap.parse_args(argv)
    if bool(args.store) != bool(args.target):
        ap.error("--store and --target go together")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in models if m not in MODELS]
    if bad or not models:
        ap.error(f"unknown model(s) {', '.join(bad) or '(none)'}; use {', '.join(MODELS)}")
    args.models = models
    if args.repeats < 1 or args.rows < 32:
        ap.error("--repeats must be >= 1 and --rows >= 32")
    return args


def load_data(args):
    """(specs, values, description) from the store or the synthetic generator."""
    if args.store:
        import numpy as np

        from harness.store import Store

        with Store(args.store, readonly=True) as st:
            rows = [m for m in st.rows(args.target, args.op) if m.median is not None]
        if not rows:
            raise SystemExit(f"store {args.store} has no ok {args.op} measurements for target {args.target!r}")
        source = {"kind": "store", "store": str(args.store), "target": args.target,
                  "unit": sorted({str(m.unit) for m in rows if m.unit is not None})}
        return [m.spec for m in rows], np.asarray([m.median for m in rows], dtype=float), source
    from proxy.synthetic import synthetic_dataset

    n_shapes = max(2, math.ceil(args.rows / 16))
    specs, y = synthetic_dataset(args.op, n_shapes=n_shapes, seed=args.seed, noise=args.noise,
                                 shape_effect=args.shape_effect)
    source = {"kind": "synthetic", "noise": args.noise, "shape_effect": args.shape_effect, "seed": args.seed,
              "formula": "(0.05*CBOPs + 2000) * exp(shape_effect*z_shape + noise*z_row)"}
    return specs, y, source


def bench_model(specs, y, op: str, features: str, model: str, repeats: int) -> dict:
    from proxy.cv import cross_validate
    from proxy.model import LatencyProxy

    times = []
    proxy = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        proxy = LatencyProxy(op, features=features, model=model).fit(specs, y)  # grouped CV + final fit
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    proxy.predict(specs)
    predict_s = time.perf_counter() - t0
    shuffled = cross_validate(LatencyProxy(op, features=features, model=model), specs, y, scheme="shuffled")
    return {
        "model": model, "features": features,
        "fit_cv_s_median": statistics.median(times), "fit_cv_s": times,
        "predict_all_s": predict_s,
        "grouped_cv": proxy.cv_, "shuffled_cv": shuffled,
        "mape_overstatement": proxy.cv_["mape"] - shuffled["mape"],
    }


def run(args) -> dict:
    import numpy as np
    import sklearn

    specs, y, source = load_data(args)
    n_shapes = len({s.shape_str for s in specs})
    results = [bench_model(specs, y, args.op, args.features, m, args.repeats) for m in args.models]
    # the case where shuffled K-fold misleads most: a flexible model given the shape fields
    if "rf" in args.models and args.features != "cbops+":
        results.append(bench_model(specs, y, args.op, "cbops+", "rf", 1))
    return {
        "benchmark": "proxy_fit", "op": args.op, "n": len(specs), "n_shapes": n_shapes, "repeats": args.repeats,
        "source": source, "results": results,
        "grouped_vs_shuffled_mape": {f"{r['model']}/{r['features']}": {"grouped": r["grouped_cv"]["mape"],
                                                                      "shuffled": r["shuffled_cv"]["mape"]}
                                     for r in results},
        "env": {"python": platform.python_version(), "scikit-learn": sklearn.__version__, "numpy": np.__version__,
                "cpus": os.cpu_count(), "machine": platform.machine()},
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    report = run(args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    for r in report["results"]:
        g, s = r["grouped_cv"], r["shuffled_cv"]
        print(f"{r['model']:>6}/{r['features']:<6} fit+CV {r['fit_cv_s_median']:.3f}s  "
              f"grouped MAPE {g['mape']:.2f}%  shuffled MAPE {s['mape']:.2f}%  rho {g['spearman'] or float('nan'):.4f}")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
