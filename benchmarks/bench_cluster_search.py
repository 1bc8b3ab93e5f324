"""Search wall time: serial vs candidate evaluations on a Dask cluster, same seed, same evaluations.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_cluster_search.py [--model lenet] [--evals 16]
        [--qat-steps 150] [--rounds 2] [-o benchmarks/results/cluster_search.json]

The workload is `mico search`'s evaluation loop (PTQ + ``--qat-steps`` steps of QAT
per candidate, scored on the validation split) of a float model trained once
beforehand, with the analytic latency (CBOPs) under a 60% budget.  Searchers:
``random`` (the whole budget is one batch) and ``evolution`` with
``round_size`` 4 (an initial population of 10, then rounds of 4 children).

Configurations, run in turn within a round so the shared machine's load falls on
all alike:

- ``serial``: the client process alone, torch with its default threads (intra-op
  parallelism over the cores, as a plain `mico search`);
- ``local-2``: `ClusterEvaluator` starting its own LocalCluster of 2 single-thread
  workers (``--cluster local:2``), the start included;
- ``joined-2``: a standing LocalCluster of 2 workers joined by address (a lab's
  scheduler): the search alone, the evaluator's shipping to the workers included.

Every configuration's candidates (schemes, accuracies, order) are checked equal to
the serial run's.  Medians over --rounds; os.getloadavg() before and after each
run records how busy the shared machine was.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="lenet")
    ap.add_argument("--evals", type=int, default=16)
    ap.add_argument("--qat-steps", type=int, default=150)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-o", "--output", default="benchmarks/results/cluster_search.json")
    a = ap.parse_args()

    import torch

    from harness.cluster import ClusterSpec, connect
    from mpq.datasets import load_dataset
    from mpq.evaluate import cbops_latency
    from mpq.models import get_model
    from mpq.search import PTQEvaluator, run_search
    from mpq.search.parallel import ClusterEvaluator
    from mpq.train import set_seed, train_float

    data = load_dataset("digits", None)
    x_tr, y_tr, x_val, y_val = data.split_validation(0.2, a.seed, 2000)
    set_seed(a.seed)
    model = get_model(a.model, "digits")
    train_float(model, x_tr, y_tr, epochs=5, seed=a.seed)

    def evaluator():
        return PTQEvaluator(model, x_tr, y_tr, x_val, y_val, qat_steps=a.qat_steps, seed=a.seed, lsq=True)

    workloads = {"random": {"searcher": "random"}, "evolution-r4": {"searcher": "evolution", "round_size": 4}}
    client, standing = connect(ClusterSpec(None, 2))
    address = standing.scheduler_address
    client.run(__import__, "mpq.search.parallel")      # a standing cluster's workers have imported torch already

    def run(kind: str, kw: dict) -> tuple[dict, list]:
        load0 = os.getloadavg()
        t0 = time.monotonic()
        if kind == "serial":
            res, _ = run_search(model, evaluator(), cbops_latency, "60%", n_evals=a.evals, seed=a.seed, **kw)
        else:
            with ClusterEvaluator(evaluator(), "local:2" if kind == "local-2" else address) as ev:
                res, _ = run_search(model, ev, cbops_latency, "60%", n_evals=a.evals, seed=a.seed, **kw)
        wall = time.monotonic() - t0
        cands = [(c.bits, c.accuracy) for c in res.candidates]
        return {"wall_s": wall, "evaluations": len(cands), "loadavg_before": load0,
                "loadavg_after": os.getloadavg()}, cands

    configs = ("serial", "local-2", "joined-2")
    out: dict = {"workloads": {}}
    try:
        for name, kw in workloads.items():
            runs: dict[str, list] = {c: [] for c in configs}
            reference = None
            for r in range(a.rounds):
                for c in configs:
                    rec, cands = run(c, kw)
                    if reference is None:
                        reference = cands
                    rec["same_as_serial"] = cands == reference
                    assert rec["same_as_serial"], f"{name} {c}: candidates differ from the serial run"
                    runs[c].append(rec)
                    print(f"{name:<13} round {r} {c:<9} {rec['wall_s']:7.2f} s  load {rec['loadavg_before'][0]:.2f}")
            med = {c: statistics.median(x["wall_s"] for x in runs[c]) for c in configs}
            out["workloads"][name] = {
                "options": kw, "runs": runs, "median_wall_s": med,
                "speedup_vs_serial": {c: med["serial"] / med[c] for c in configs},
                "best": {"bits": [list(p) for p in max(reference, key=lambda t: t[1])[0]]}}
    finally:
        client.close()
        standing.close()
    out.update({"model": a.model, "dataset": "digits", "evaluations": a.evals, "qat_steps": a.qat_steps,
                "rounds": a.rounds, "seed": a.seed, "cpus": os.cpu_count(), "torch_threads_serial":
                torch.get_num_threads(), "worker_torch_threads": 1, "python": platform.python_version(),
                "torch": torch.__version__, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    Path(a.output).parent.mkdir(parents=True, exist_ok=True)
    Path(a.output).write_text(json.dumps(out, indent=1) + "\n")
    for name, w in out["workloads"].items():
        print(name, {c: f"{v:.2f} s (x{w['speedup_vs_serial'][c]:.2f})" for c, v in w["median_wall_s"].items()})
    print(f"wrote {a.output}")


if __name__ == "__main__":
    main()
