"""Whole-model latency of the transformers on a core: layer-mode sweep of the model's own
layers, a layer-mode proxy, then `mico validate` (random schemes + all-lowest + all-8x8,
each deployed bit-exact, predicted vs measured cycles).

    .venv/bin/python benchmarks/bench_transformer_latency.py [--models vit_tiny kws_transformer] \
        [--target vexriscv-mico] [--schemes 4] [-o benchmarks/results/transformer_latency.json]

The weightless transformer steps are measured at the one shape the model runs each at,
so the proxy prices them by lookup (no cross-shape generalisation is tested here).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def mico(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "harness.cli", *args], check=True, cwd=ROOT)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["vit_tiny", "kws_transformer"])
    ap.add_argument("--target", default="vexriscv-mico")
    ap.add_argument("--mem-kib", type=int, default=1024)
    ap.add_argument("--schemes", type=int, default=4)
    ap.add_argument("-o", "--out", default=str(ROOT / "benchmarks/results/transformer_latency.json"))
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        param = ["--param", f"mem_kib={a.mem_kib}"]
        for name in a.models:
            t0 = time.perf_counter()
            store = str(Path(tmp) / f"{name}-store.db")        # one build per store: no fingerprint to pick
            mico("sweep", "--target", a.target, *param, "--plan", f"model:{name}", "--mode", "layer", "--store", store,
                 "--jobs", "2", "--no-progress")
            proxy = str(Path(tmp) / f"{name}-proxy.json")
            mico("fit", "--store", store, "--target", a.target, "--op", "all", "--mode", "layer", "--features",
                 "analytic", "--model", "linear", "-o", proxy)
            out = Path(tmp) / f"{name}-validation.json"
            mico("validate", "--model", name, "--target", a.target, *param, "--proxy", proxy, "--schemes",
                 str(a.schemes), "--images", "1", "--no-progress", "-o", str(out))
            rows.append({"model": name, "target": a.target, "wall_s": time.perf_counter() - t0,
                         "validation": json.loads(out.read_text())})
    Path(a.out).write_text(json.dumps({"benchmark": "transformer_latency", "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
