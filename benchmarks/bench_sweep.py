"""Host sweep throughput (kernel measurements per second) and measurement stability.

    .venv/bin/python benchmarks/bench_sweep.py [--plan random:16] [--jobs 1 2] [-o benchmarks/results/sweep.json]

Writes one JSON file.  Each configuration runs into a fresh temporary store,
so nothing is skipped by resume; the figures are wall-clock medians over
--rounds runs on this (shared, noisy) machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path


def sweep_throughput(plan: str, jobs: int, rounds: int, budget: float) -> dict:
    from harness.measure import StatsPolicy
    from harness.sweep import run_sweep

    rates, walls = [], []
    n = 0
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as d:
            s = run_sweep("host", plan, str(Path(d) / "s.db"), jobs=jobs, policy=StatsPolicy(budget_s=budget),
                          progress=False)
            rates.append(s.per_second)
            walls.append(s.wall_s)
            n = s.measured
            assert s.by_status == {"ok": n}, s.by_status
    return {"plan": plan, "jobs": jobs, "specs": n, "budget_s": budget, "rounds": rounds,
            "median_wall_s": statistics.median(walls), "median_measurements_per_s": statistics.median(rates),
            "all_measurements_per_s": rates}


def measure_stability(shape=(64, 256, 256), rounds: int = 5) -> dict:
    from harness.spec import KernelSpec
    from harness.sweep import measure_single

    spec = KernelSpec("matmul", shape, 8, 8)
    rel = []
    med = []
    for _ in range(rounds):
        m, _ = measure_single("host", spec)
        rel.append(m.rel_iqr)
        med.append(m.median)
    return {"spec": str(spec), "rounds": rounds, "rel_iqr": rel, "median_rel_iqr": statistics.median(rel),
            "max_rel_iqr": max(rel), "median_ns": statistics.median(med)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plan", default="random:16")
    ap.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--budget", type=float, default=0.5)
    ap.add_argument("-o", "--output", default="benchmarks/results/sweep.json")
    a = ap.parse_args()
    res = {"machine": platform.processor() or platform.machine(), "when": time.strftime("%Y-%m-%d %H:%M:%S"),
           "sweeps": [sweep_throughput(a.plan, j, a.rounds, a.budget) for j in a.jobs],
           "stability": measure_stability()}
    out = Path(a.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    for s in res["sweeps"]:
        print(f"sweep {s['plan']} jobs={s['jobs']}: {s['specs']} specs, median {s['median_wall_s']:.1f} s, "
              f"{s['median_measurements_per_s']:.1f} measurements/s")
    st = res["stability"]
    print(f"measure {st['spec']}: median rel IQR {100 * st['median_rel_iqr']:.2f}% (max {100 * st['max_rel_iqr']:.2f}%)")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
