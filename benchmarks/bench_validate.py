"""Whole-model latency validation table: predicted vs measured on every target that runs models.

    .venv/bin/python benchmarks/bench_validate.py [--targets host vexriscv-mico ...] [--models lenet mlp]
                                                  [--schemes 16] [-o benchmarks/results/validation.json]

Per (target, model), into one fresh store per target:
  1. `mico sweep --plan model:M --mode layer` -- every layer at every bit-width a scheme can give it;
  2. `mico fit --mode layer --op all --features analytic --model linear`;
  3. `mico validate --schemes N` -- N random schemes + all-lowest + all-8x8 deployed, each bit-exact;
and records the uncalibrated MAPE / max |error| / Spearman rho next to MiCo's two-point
calibration, the per-layer errors and the wall time of each step.  No whole-model calibration
enters the uncalibrated figures.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ["host", "vexriscv-small", "vexriscv-full", "vexriscv-mico"]
MODELS = ["lenet", "mlp"]


def mico(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", "import sys; from harness.cli import main; sys.argv[0] = 'mico'; sys.exit(main())",
           *map(str, args)]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=str(ROOT))
    if r.returncode != 0:
        raise SystemExit(f"mico {' '.join(map(str, args))} failed (exit {r.returncode}): {r.stderr.strip()[-800:]}")
    return r


def one(target: str, model: str, schemes: int, work: Path, jobs: int) -> dict:
    store, proxy, out = work / f"{target}.db", work / f"{target}-{model}-proxy.json", work / f"{target}-{model}.json"
    t = {}
    t0 = time.monotonic()
    mico("sweep", "--target", target, "--plan", f"model:{model}", "--mode", "layer", "--store", store,
         "--jobs", jobs, "--no-progress")
    t["sweep_s"] = round(time.monotonic() - t0, 1)
    t0 = time.monotonic()
    mico("fit", "--store", store, "--target", target, "--op", "all", "--mode", "layer", "--features", "analytic",
         "--model", "linear", "-o", proxy)
    t["fit_s"] = round(time.monotonic() - t0, 1)
    t0 = time.monotonic()
    mico("validate", "--model", model, "--target", target, "--proxy", proxy, "--schemes", schemes, "--images", "1",
         "--no-progress", "-o", out, "--store", store)
    t["validate_s"] = round(time.monotonic() - t0, 1)
    doc = json.loads(out.read_text())
    s = doc["summary"]
    return {"target": target, "model": model, "unit": doc["unit"], "schemes": len(doc["schemes"]),
            "bit_exact": s["bit_exact"], "uncalibrated": s["uncalibrated"],
            "uncalibrated_random": s["uncalibrated_random"], "two_point": s.get("two_point"),
            "layers": s["layers"], "wall": t,
            "points": [{"label": x["label"], "predicted": x["predicted"], "measured": x["measured"]}
                       for x in doc["schemes"]]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--targets", nargs="+", default=TARGETS)
    ap.add_argument("--models", nargs="+", default=MODELS)
    ap.add_argument("--schemes", type=int, default=16)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("-o", "--output", default=str(ROOT / "benchmarks" / "results" / "validation.json"))
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="mico-validate-") as d:
        for target in a.targets:
            for model in a.models:
                r = one(target, model, a.schemes, Path(d), a.jobs)
                u, tp = r["uncalibrated"], r["two_point"] or {}
                print(f"{target:<16} {model:<6} uncalibrated MAPE {u['mape']:.2f}% max {u['max_abs_pct']:.2f}% "
                      f"rho {u['spearman']:.3f} | two-point MAPE {tp.get('mape', float('nan')):.2f}% "
                      f"max {tp.get('max_abs_pct', float('nan')):.2f}%", flush=True)
                rows.append(r)
    doc = {"benchmark": "validation", "machine": platform.platform(), "python": platform.python_version(),
           "schemes": a.schemes, "rows": rows}
    Path(a.output).write_text(json.dumps(doc, indent=2))
    print(f"wrote {a.output}")


if __name__ == "__main__":
    main()
