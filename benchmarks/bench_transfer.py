"""Benchmark: transfer of a latency proxy to a new target (issue 13: with 10 % of the
target's measurements, grouped MAPE <= 8 %).

For each ``--pair SRC=STORE:TARGET,DST=STORE:TARGET`` the source proxy
(``terms`` features, non-negative linear, fit on every source kernel) is
transferred with ``ratio`` / ``residual`` / ``cascade`` (proxy/transfer.py,
the code ``mico fit --from`` runs) from n of the destination's shapes and
tested on every other destination shape (whole shapes held out), for n from 1
to a quarter of the shapes, 10 % included; seeded draws of the n shapes.  The
``scratch`` row is the destination's own terms proxy fit on the same n shapes
(no source) for comparison.

The stores are RTL sweeps (``mico sweep --plan zoo-random:30:7 --op matmul``
on every target, 15 matmul shapes x 16 width pairs; see docs/proxies.md for
why only matmul and so few shapes).  Writes benchmarks/results/transfer.json::

    .venv/bin/python benchmarks/bench_transfer.py \\
        --pair /tmp/full.db:vexriscv-full,/tmp/mico.db:vexriscv-mico \\
        --pair /tmp/small.db:vexriscv-small,/tmp/cacheless.db:vexriscv-cacheless

Importing this module has no side effects; run it as a script.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "transfer.json"


def _data(arg: str, op: str):
    from harness.store import Store
    from proxy.document import TrainingSet

    store, _, target = arg.rpartition(":")
    with Store(store, readonly=True) as st:
        rows = [m for m in st.rows(target, op, status="ok", mode="kernel") if m.median is not None]
    return TrainingSet.from_rows(rows, op) if rows else None


def _scratch(data, counts, draws=5, seed=0):
    import numpy as np

    from proxy.cv import metrics
    from proxy.model import LatencyProxy

    shapes = sorted({s.shape for s in data.specs})
    rng = np.random.default_rng(seed)
    y = np.asarray(data.values, dtype=np.float64)
    out = []
    for n in counts:
        if not 2 <= n < len(shapes):
            continue
        ms = []
        for _ in range(draws):
            pick = {shapes[i] for i in rng.choice(len(shapes), size=n, replace=False)}
            tr = [i for i, s in enumerate(data.specs) if s.shape in pick]
            te = [i for i, s in enumerate(data.specs) if s.shape not in pick]
            p = LatencyProxy(data.op, "terms", "linear", lookup=False, family="cpu")
            p.fit([data.specs[i] for i in tr], y[tr], cv=False)
            ms.append(metrics(y[te], p.predict([data.specs[i] for i in te]))["mape"])
        out.append({"n_shapes": n, "share": n / len(shapes), "mape": float(np.mean(ms)),
                    "mape_sd": float(np.std(ms)), "draws": draws})
    return out


def main(argv=None) -> dict:
    from proxy.model import LatencyProxy
    from proxy.transfer import METHODS, transfer_curve

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pair", action="append", required=True, help="SRC_STORE:SRC_TARGET,DST_STORE:DST_TARGET")
    ap.add_argument("--ops", default="matmul,conv2d")
    ap.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT)
    a = ap.parse_args(argv)
    doc = {"benchmark": "transfer", "features": "terms", "family": "cpu",
           "note": ("held-out-shape MAPE of the transferred proxy vs the number of destination shapes it was "
                    "fit on (mean +- sd over 5 seeded draws); every other destination shape is the test set"),
           "pairs": {}}
    for pair in a.pair:
        src, _, dst = pair.partition(",")
        name = f"{src.rpartition(':')[2]}->{dst.rpartition(':')[2]}"
        res = {}
        for op in a.ops.split(","):
            s, d = _data(src, op), _data(dst, op)
            if s is None or d is None or s.n_shapes < 2 or d.n_shapes < 3:
                res[op] = {"skipped": "not enough measured shapes in the source or destination store"}
                continue
            base = LatencyProxy(op, "terms", "linear", family="cpu").fit(s.specs, s.values, target=s.target)
            n = d.n_shapes
            ten = max(1, round(0.1 * n))
            counts = sorted({c for c in (1, 2, 3, ten, 4, 6, max(1, round(0.25 * n))) if c < n})
            r = {"source_shapes": s.n_shapes, "source_cv_mape": base.cv_["mape"], "dest_shapes": n,
                 "dest_kernels": len(d.specs), "ten_percent_shapes": ten, "methods": {}}
            for m in METHODS:
                r["methods"][m] = transfer_curve(base.to_entry().to_dict(), d, m, counts, features="terms",
                                                 family="cpu")
            r["scratch"] = _scratch(d, counts)
            r["at_ten_percent"] = {m: next((x["mape"] for x in c if x["n_shapes"] == ten), None)
                                   for m, c in [*r["methods"].items(), ("scratch", r["scratch"])]}
            res[op] = r
            print(f"{name} {op}: source CV {r['source_cv_mape']:.2f}%, {n} dest shapes, 10% = {ten}: "
                  + ", ".join(f"{m} {v:.2f}%" if v is not None else f"{m} n/a"
                              for m, v in r["at_ten_percent"].items()), flush=True)
            for m, c in [*r["methods"].items(), ("scratch", r["scratch"])]:
                print(f"  {m:9s} " + "  ".join(f"n={x['n_shapes']}: {x['mape']:.2f}+-{x['mape_sd']:.2f}%" for x in c))
        doc["pairs"][name] = res
    a.output.parent.mkdir(parents=True, exist_ok=True)
    a.output.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    print(f"wrote {a.output}")
    return doc


if __name__ == "__main__":
    main()
