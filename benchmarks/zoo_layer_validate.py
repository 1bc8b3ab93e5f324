"""Whole-model latency of zoo models from layer-mode measurements alone (issue 10).

For each (model, target): `mico sweep --plan model:M --mode layer` (resumes: a
store that holds the plan already is not measured again), `mico fit --op all
--mode layer --features analytic`, `mico validate --schemes N`; writes the
summary (MAPE, max |error|, Spearman rho, uncalibrated and MiCo's two-point)
and the error of each op kind summed over the schemes to
benchmarks/results/zoo_layer_validate.json.

    python benchmarks/zoo_layer_validate.py --model resnet8 --target vexriscv-mico --schemes 8 \
        --store-dir /tmp/zoo-layer
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "zoo_layer_validate.json"


def mico(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=ROOT, check=True)


def by_kind(doc: dict) -> dict:
    """Measured time share and summed prediction error of each op kind over every scheme."""
    agg = collections.defaultdict(lambda: [0.0, 0.0, 0.0])
    for s in doc["schemes"]:
        for lay in s["layers"]:
            a = agg[lay["kind"]]
            a[0] += lay["measured"]
            a[1] += lay["predicted"] if lay["predicted"] is not None else float("nan")
            a[2] = max(a[2], abs(lay["error_pct"] or 0.0))
    total = sum(a[0] for a in agg.values())
    return {k: {"share_pct": round(100 * m / total, 2), "sum_error_pct": round(100 * (p - m) / m, 2),
                "max_layer_abs_error_pct": round(mx, 2)} for k, (m, p, mx) in agg.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True)
    ap.add_argument("--target", action="append", required=True)
    ap.add_argument("--schemes", type=int, default=8)
    ap.add_argument("--images", type=int, default=1)
    ap.add_argument("--store-dir", type=Path, default=ROOT / "benchmarks" / "results" / "zoo_layer")
    args = ap.parse_args()
    args.store_dir.mkdir(parents=True, exist_ok=True)
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    for model in args.model:
        for target in args.target:
            base = args.store_dir / f"{model}_{target}"
            t0 = time.monotonic()
            mico("sweep", "--target", target, "--plan", f"model:{model}", "--mode", "layer", "--store",
                 f"{base}.db", "--jobs", "1", "--no-progress")
            mico("fit", "--store", f"{base}.db", "--target", target, "--op", "all", "--mode", "layer",
                 "--features", "analytic", "--model", "linear", "-o", f"{base}_proxy.json")
            mico("validate", "--model", model, "--target", target, "--proxy", f"{base}_proxy.json", "--schemes",
                 str(args.schemes), "--images", str(args.images), "--no-progress", "-o", f"{base}_validate.json")
            doc = json.loads(Path(f"{base}_validate.json").read_text())
            results[f"{model}@{target}"] = {"summary": doc["summary"], "by_kind": by_kind(doc),
                                            "n_schemes": len(doc["schemes"]), "wall_s": round(time.monotonic() - t0, 1)}
    OUT.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
