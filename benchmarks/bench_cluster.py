"""Sweep throughput on a Dask cluster vs the local process pool, on the same plan.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_cluster.py [--target vexriscv-small] [--plan smoke]
        [--mode kernel layer] [--rounds 3] [-o benchmarks/results/cluster.json]

Workloads: the plan in each --mode (kernel: 64 short specs, seconds in all, so
the fixed costs of starting workers show; layer: 192 specs that each compile
and load a layer image, tens of seconds).  A first untimed pool run per
workload fills the build and image caches.

Configurations, run side by side (one round measures each once, in turn, so the
shared machine's load falls on all of them alike), each into a fresh store:

- ``pool-2``: the default local process pool, ``--jobs 2``;
- ``local-1`` / ``local-2``: ``--cluster local:N``, the LocalCluster started by the sweep;
- ``joined-2``: a LocalCluster of 2 workers started beforehand and joined by address
  (``--cluster tcp://...``), as a lab's standing scheduler is.

Two rates per run: ``sweep`` is the sweep's own figure (measured specs over the time
from the first submission to the last commit, worker boots included, the cluster's
start and the HELLO probe not), ``end_to_end`` divides by the whole `run_sweep` call.
Medians over --rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path


def one_run(target: str, plan: str, mode: str, ops, jobs: int, cluster: str | None) -> dict:
    from harness.sweep import run_sweep

    with tempfile.TemporaryDirectory() as d:
        t0 = time.monotonic()
        s = run_sweep(target, plan, str(Path(d) / "s.db"), jobs=jobs, cluster=cluster, progress=False, ops=ops,
                      mode=mode)
        wall = time.monotonic() - t0
    assert s.by_status == {"ok": s.measured} and s.measured == s.total, s.by_status
    return {"specs": s.measured, "sweep_s": s.wall_s, "end_to_end_s": wall,
            "sweep_per_s": s.per_second, "end_to_end_per_s": s.measured / wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="vexriscv-small")
    ap.add_argument("--plan", default="smoke")
    ap.add_argument("--mode", nargs="+", default=["kernel", "layer"])
    ap.add_argument("--op", action="append", default=None)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("-o", "--output", default="benchmarks/results/cluster.json")
    a = ap.parse_args()

    import distributed

    standing = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                        dashboard_address=":0", memory_limit=0)
    configs = {"pool-2": (2, None), "local-1": (1, "local:1"), "local-2": (1, "local:2"),
               "joined-2": (1, standing.scheduler_address)}
    workloads = {}
    try:
        for mode in a.mode:
            one_run(a.target, a.plan, mode, a.op, 2, None)          # fills the caches; not counted
            runs: dict[str, list[dict]] = {k: [] for k in configs}
            for r in range(a.rounds):
                for name, (jobs, cluster) in configs.items():
                    runs[name].append(one_run(a.target, a.plan, mode, a.op, jobs, cluster))
                    x = runs[name][-1]
                    print(f"{mode} round {r + 1} {name:9s} {x['specs']} specs: sweep {x['sweep_per_s']:.2f}/s, "
                          f"end to end {x['end_to_end_per_s']:.2f}/s", flush=True)
            workloads[mode] = summarize(runs)
    finally:
        standing.close()
    res = {"machine": platform.processor() or platform.machine(), "cores": os.cpu_count(),
           "load_avg_at_end": os.getloadavg(), "when": time.strftime("%Y-%m-%d %H:%M:%S"),
           "target": a.target, "plan": a.plan, "ops": a.op, "rounds": a.rounds, "workloads": workloads}
    out = Path(a.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    for mode, summary in workloads.items():
        for name, s in summary.items():
            print(f"{mode:6s} {name:9s} sweep {s['median_sweep_specs_per_s']:.2f} specs/s "
                  f"({s['sweep_vs_pool_2']:.2f}x pool-2), end to end {s['median_end_to_end_specs_per_s']:.2f} "
                  f"specs/s ({s['end_to_end_vs_pool_2']:.2f}x)")
    print(f"wrote {out}")


def summarize(runs: dict[str, list[dict]]) -> dict:
    summary = {}
    for name, rs in runs.items():
        summary[name] = {
            "median_sweep_specs_per_s": statistics.median(x["sweep_per_s"] for x in rs),
            "median_end_to_end_specs_per_s": statistics.median(x["end_to_end_per_s"] for x in rs),
            "runs": rs,
        }
    base = summary["pool-2"]
    for s in summary.values():
        s["sweep_vs_pool_2"] = s["median_sweep_specs_per_s"] / base["median_sweep_specs_per_s"]
        s["end_to_end_vs_pool_2"] = s["median_end_to_end_specs_per_s"] / base["median_end_to_end_specs_per_s"]
    return summary


if __name__ == "__main__":
    main()
