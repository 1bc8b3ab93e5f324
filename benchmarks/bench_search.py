"""Searchers at an equal number of accuracy evaluations: hypervolumes of their fronts.

    .venv/bin/python benchmarks/bench_search.py [--proxy proxy.json] [--budget 70%] [--random-evals 40]
        [--qat-steps 150] [--seeds 1] [-o benchmarks/results/search.json]

LeNet on digits: the float model is trained once per seed, one PTQEvaluator
(calibration + ``--qat-steps`` LSQ steps per candidate, scored on the
validation split held out from TRAIN) is shared by every searcher, so a
scheme two searchers both pick is trained once; each searcher still counts it
as one of its own evaluations.  ``random`` and ``evolution`` get
``--random-evals`` evaluations, ``ilp``, ``surrogate`` and ``nsga2`` a quarter
of that (``nsga2`` also the full count).

Hypervolume of a front (maximise validation accuracy, minimise predicted
latency) in the box from the reference point (latency = the budget, accuracy
= the lowest accuracy any searcher of that seed evaluated) -- latency
normalised by the budget; ``ratio_vs_random`` divides by random's hypervolume
of the same seed.  Without ``--proxy`` latency is the analytic CBOPs count.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--proxy", default=None)
    ap.add_argument("--budget", default="70%")
    ap.add_argument("--random-evals", type=int, default=40)
    ap.add_argument("--qat-steps", type=int, default=150)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("-o", "--output", default=str(ROOT / "benchmarks" / "results" / "search.json"))
    args = ap.parse_args(argv)

    import torch

    from mpq.cli import VAL_FRACTION, VAL_MAX, load_latency
    from mpq.datasets import load_dataset
    from mpq.models import get_model
    from mpq.search import PTQEvaluator, hypervolume, model_budget, run_search
    from mpq.train import set_seed, train_float

    torch.set_num_threads(1)
    latency_fn, unit, proxy = load_latency(args.proxy)
    data = load_dataset("digits")
    n = args.random_evals
    plan = [("random", n), ("evolution", n), ("ilp", max(1, n // 4)), ("surrogate", max(1, n // 4)),
            ("nsga2", max(1, n // 4)), ("nsga2", n)]
    rows = []
    for seed in range(args.seeds):
        x_tr, y_tr, x_val, y_val = data.split_validation(VAL_FRACTION, seed, VAL_MAX)
        set_seed(seed)
        fm = get_model("lenet", "digits")
        train_float(fm, x_tr, y_tr, epochs=args.epochs, seed=seed)
        budget = model_budget(fm, latency_fn, args.budget, 1, unit)
        ev = PTQEvaluator(fm, x_tr, y_tr, x_val, y_val, qat_steps=args.qat_steps, seed=seed, lsq=True)
        results = []
        for name, evals in plan:
            t0 = time.monotonic()
            res, _ = run_search(fm, ev, latency_fn, budget, searcher=name, n_evals=evals, seed=seed, unit=unit)
            results.append((name, evals, res, time.monotonic() - t0))
            print(f"seed {seed} {name:<9} {res.evaluations:>3} evals  best {res.best.accuracy:.4f}  "
                  f"{time.monotonic() - t0:.0f} s", flush=True)
        ref = min(c.accuracy for _, _, r, _ in results for c in r.candidates)
        hv = {}
        for name, evals, res, wall in results:
            hv[(name, evals)] = hypervolume([(c.latency, c.accuracy) for c in res.candidates], ref, budget.value)
        base = hv[("random", n)]
        for name, evals, res, wall in results:
            rows.append({"seed": seed, "searcher": name, "evaluations": res.evaluations, "budget_evals": evals,
                         "hypervolume": hv[(name, evals)], "ratio_vs_random": hv[(name, evals)] / base if base else None,
                         "best_accuracy": res.best.accuracy, "best_bits": [list(p) for p in res.best.bits],
                         "pareto": [c.to_dict() for c in res.pareto], "wall_s": round(wall, 1),
                         "reference": {"accuracy": ref, "latency": budget.value}})
    summary = {}
    for name, evals in plan:
        r = [row["ratio_vs_random"] for row in rows if (row["searcher"], row["budget_evals"]) == (name, evals)]
        summary[f"{name}@{evals}"] = {"ratio_mean": float(np.mean(r)), "ratio_std": float(np.std(r, ddof=1)) if len(r) > 1 else 0.0,
                                      "evaluations": evals}
    doc = {"benchmark": "search", "model": "lenet", "dataset": "digits", "budget": args.budget,
           "latency_unit": unit, "proxy": proxy, "qat_steps_per_candidate": args.qat_steps, "lsq": True,
           "random_evals": n, "seeds": args.seeds, "summary": summary, "rows": rows}
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    for k, v in summary.items():
        print(f"{k:<14} hypervolume / random = {v['ratio_mean']:.3f} ± {v['ratio_std']:.3f}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
