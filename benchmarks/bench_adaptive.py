"""Benchmark: adaptive sampling vs random shapes (issue 13: ``adaptive:N`` should reach
``random:N``'s error with at most N/2 measured shapes).

On one target, for every seed, three plans of N shapes (half matmul, half
conv2d, each shape at every (qa, qw) pair) are swept into one store:

- ``random:N:SEED``     -- the default random plan (log-uniform sizes, N 1..64);
- ``zoo-random:N:SEED`` -- random shapes within the model zoo's layer ranges
  (the adaptive plan's own candidate pool, taken in its order: what adaptive
  does without its committee);
- ``adaptive:N:SEED``   -- shapes chosen where the proxy committee disagrees.

Each plan's first k shapes per op (its order of measuring) train the plan's
proxy (``terms`` features, non-negative linear); the error is measured on
fixed held-out shapes that no plan of any seed measured:

- ``zoo``: ``zoo-random:H:1000`` shapes (the layer ranges the proxy serves);
- ``random``: ``random:H:1000`` shapes (the random plan's own distribution).

It also reports each plan's shape-grouped CV MAPE on its own k shapes (what
``--target-mape`` watches).  ``reaches_random_with_half``: per op and held-out
set, the smallest k whose mean held-out MAPE is at most random:N's at its full
N/2 shapes per op, and whether k <= N/4 per op (N/2 of the N shapes).

Writes JSON (default benchmarks/results/adaptive.json; a run updates only its
target's entry)::

    .venv/bin/python benchmarks/bench_adaptive.py --target host --n 32 --seeds 0,1 --heldout 16 \\
        --store /tmp/adaptive_bench/host.db --jobs 2

Importing this module has no side effects; run it as a script.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "adaptive.json"
OPS = ("matmul", "conv2d")
HELDOUT_SEED = 1000


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", default="host")
    ap.add_argument("--n", type=int, default=32, help="shapes per plan (half matmul, half conv2d)")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--heldout", type=int, default=16, help="held-out shapes per set (half per op)")
    ap.add_argument("--store", type=Path, required=True, help="store the sweeps share (cached: reruns resume)")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--ops", default="matmul,conv2d", help="ops to sweep (an RTL target: matmul alone is cheap)")
    ap.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT)
    a = ap.parse_args(argv)
    a.seeds = [int(s) for s in a.seeds.split(",")]
    a.ops = tuple(a.ops.split(","))
    return a


def _sweep(target, plan, store, jobs, ops):
    from harness.sweep import run_sweep

    t = time.monotonic()
    s = run_sweep(target, plan, str(store), jobs=jobs, progress=False, ops=list(ops))
    print(f"  {plan}: {s.measured} measured, {s.skipped_existing} stored, {time.monotonic() - t:.0f} s", flush=True)
    return s


def _curve(op, order, values, pairs, heldout, counts):
    """[{k, heldout: {set: metrics}, cv_mape}] of the terms/linear proxy on the first k shapes."""
    from harness.errors import MicoError
    from harness.spec import KernelSpec
    from proxy.cv import cross_validate, metrics
    from proxy.model import LatencyProxy

    def rows(shapes):
        sp = [KernelSpec(op, tuple(sh), a, w) for sh in shapes for a, w in pairs]
        sp = [s for s in sp if s.key() in values]
        return sp, [values[s.key()] for s in sp]

    test = {name: rows(shs) for name, shs in heldout.items()}
    out = []
    for k in counts:
        if k > len(order):
            continue
        sp, y = rows(order[:k])
        if len({s.shape for s in sp}) < 2:
            continue
        p = LatencyProxy(op, "terms", "linear", lookup=False).fit(sp, y, cv=False)
        row = {"k": k, "kernels": len(sp), "heldout": {}}
        for name, (tsp, ty) in test.items():
            m = metrics(ty, p.predict(tsp))
            row["heldout"][name] = {key: m[key] for key in ("mape", "within10", "spearman")}
        try:
            row["cv_mape"] = cross_validate(LatencyProxy(op, "terms", "linear"), sp, y)["mape"] if k >= 5 else None
        except MicoError:
            row["cv_mape"] = None
        out.append(row)
    return out


def main(argv=None) -> dict:
    import numpy as np

    from harness.plans import random_shapes
    from harness.store import Store
    from harness.zoo_ranges import candidates

    a = parse_args(argv)
    OPS = a.ops
    a.store.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    print(f"{a.target}: held-out sets", flush=True)
    _sweep(a.target, f"zoo-random:{a.heldout}:{HELDOUT_SEED}", a.store, a.jobs, a.ops)
    _sweep(a.target, f"random:{a.heldout}:{HELDOUT_SEED}", a.store, a.jobs, a.ops)
    orders: dict = {}          # plan kind -> seed -> op -> [shape] in measuring order
    fp = None
    for seed in a.seeds:
        print(f"{a.target}: seed {seed}", flush=True)
        for kind in ("random", "zoo-random", "adaptive"):
            s = _sweep(a.target, f"{kind}:{a.n}:{seed}", a.store, a.jobs, a.ops)
            fp = s.fingerprint
            if kind == "random":
                o = {op: [sh for p, sh in random_shapes(a.n, seed) if p == op] for op in OPS}
            elif kind == "zoo-random":
                o = {op: candidates(op, (a.n + 1) // 2 if op == "matmul" else a.n // 2, seed) for op in OPS}
            else:
                o = {op: [tuple(sh) for sh in r["chosen"]] for op, r in s.adaptive.items()}
                orders.setdefault("adaptive_report", {})[seed] = {
                    op: {k: v for k, v in r.items() if k != "chosen"} for op, r in s.adaptive.items()}
            orders.setdefault(kind, {})[seed] = o
    with Store(a.store, readonly=True) as st:
        ms = [m for m in st.iter_measurements([fp], status="ok") if m.median]
    values = {m.spec.key(): float(m.median) for m in ms}
    pairs = sorted({(m.spec.qa, m.spec.qw) for m in ms})
    measured = {op: set() for op in OPS}
    for kind in ("random", "zoo-random", "adaptive"):
        for seed in a.seeds:
            for op in OPS:
                measured[op] |= {tuple(sh) for sh in orders[kind][seed][op]}
    h_mm = (a.heldout + 1) // 2
    heldout = {op: {"zoo": [sh for sh in candidates(op, h_mm if op == "matmul" else a.heldout - h_mm, HELDOUT_SEED)
                            if tuple(sh) not in measured[op]],
                    "random": [sh for p, sh in random_shapes(a.heldout, HELDOUT_SEED)
                               if p == op and tuple(sh) not in measured[op]]} for op in OPS}
    per_op = {op: (a.n + 1) // 2 if op == "matmul" else a.n // 2 for op in OPS}
    result = {"target": a.target, "n": a.n, "seeds": a.seeds, "pairs": [list(p) for p in pairs],
              "proxy": "terms features, non-negative linear (the adaptive plan's own)",
              "heldout": {op: {k: len(v) for k, v in h.items()} for op, h in heldout.items()},
              "heldout_note": ("error on fixed held-out shapes that no plan of any seed measured: "
                               f"zoo = zoo-random:{a.heldout}:{HELDOUT_SEED}, random = random:{a.heldout}:"
                               f"{HELDOUT_SEED}, minus any shape a plan measured"),
              "store": str(a.store), "ops": {}}
    for op in OPS:
        n_op = per_op[op]
        counts = sorted({k for k in (2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 48, 64) if k <= n_op} | {n_op})
        curves = {kind: {seed: _curve(op, orders[kind][seed][op], values, pairs, heldout[op], counts)
                         for seed in a.seeds} for kind in ("random", "zoo-random", "adaptive")}
        summary = {}
        for kind, by_seed in curves.items():
            rows = []
            for k in counts:
                pts = [r for c in by_seed.values() for r in c if r["k"] == k]
                if len(pts) < len(a.seeds):
                    continue
                row = {"k": k}
                for hs in ("zoo", "random"):
                    v = [p["heldout"][hs]["mape"] for p in pts]
                    row[f"{hs}_mape"] = float(np.mean(v))
                    row[f"{hs}_mape_sd"] = float(np.std(v))
                cv = [p["cv_mape"] for p in pts if p["cv_mape"] is not None]
                row["cv_mape"] = float(np.mean(cv)) if len(cv) == len(pts) else None
                rows.append(row)
            summary[kind] = rows
        reach = {}
        for hs in ("zoo", "random"):
            goal = next(r[f"{hs}_mape"] for r in summary["random"] if r["k"] == n_op)
            hit = next((r["k"] for r in summary["adaptive"] if r[f"{hs}_mape"] <= goal), None)
            reach[hs] = {"random_full_mape": goal, "adaptive_k_reaching_it": hit, "half": n_op / 2,
                         "reached_with_half": hit is not None and hit <= n_op / 2}
        result["ops"][op] = {"shapes_per_op": n_op, "curve": summary, "per_seed": curves,
                             "reaches_random_with_half": reach}
        for kind in ("random", "zoo-random", "adaptive"):
            print(f"{op} {kind:10s} " + "  ".join(
                f"k={r['k']}: zoo {r['zoo_mape']:.1f}% rnd {r['random_mape']:.1f}%" for r in summary[kind]), flush=True)
        print(f"{op} reach: {json.dumps(reach)}", flush=True)
    result["adaptive_reports"] = orders.get("adaptive_report", {})
    result["wall_s"] = time.monotonic() - t0
    doc = json.loads(a.output.read_text()) if a.output.exists() else {"benchmark": "adaptive", "targets": {}}
    doc["targets"][a.target] = result
    a.output.parent.mkdir(parents=True, exist_ok=True)
    a.output.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    print(f"wrote {a.output}")
    return result


if __name__ == "__main__":
    main()
