"""BitFusion: RTL simulation speed, sweep throughput, precision scaling, model accuracy.

    .venv/bin/python benchmarks/bench_bitfusion.py [--quick] [-o benchmarks/results/bitfusion.json]

Figures (one JSON file):

- ``sim_speed``: accelerator cycles per wall second of the Verilated RTL (published
  16 x 32 configuration) on a compute-bound (8x8) and a memory-bound (2x2) GEMM;
- ``scaling``: cycles of one GEMM (default N=256, K=1024, M=1024) at 8x8, 4x4, 2x2
  on the RTL, for the published 128-bit DRAM port and for wider ports, with the
  ratios 8x8/4x4 and 8x8/2x2 and the analytical model's breakdown;
- ``model_vs_rtl``: a seeded random sweep (``mico sweep`` machinery, both
  targets, same store) and the model's error per spec: median, max and the
  worst spec with its plan;
- ``sweep``: sweep throughput (specs per second) of both targets.

All cycle figures are deterministic; wall-clock figures come from this
(shared, noisy) machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path


def _session(params: dict):
    from harness import registry

    t = registry.get("bitfusion-rtl", **params)
    t0 = time.monotonic()
    b = t.build()
    build_s = time.monotonic() - t0
    return t, b, t.open(b), build_s


def sim_speed(params: dict, shape=(256, 512, 1024)) -> dict:
    from harness.spec import KernelSpec

    t, b, s, build_s = _session(params)
    out = {"config": t.cfg.to_dict(), "build_s": round(build_s, 1), "build_cached": b.cached, "runs": []}
    try:
        for q in (8, 2):
            spec = KernelSpec("matmul", shape, q, q)
            c = s.compile(spec, 1)
            t0 = time.monotonic()
            cycles, _ = s.execute(c, 1)
            wall = time.monotonic() - t0
            out["runs"].append({"spec": str(spec), "cycles": cycles[0], "wall_s": round(wall, 3),
                                "cycles_per_s": round(cycles[0] / wall), "perf": s.last["perf"],
                                "fu_cycles_per_s": round(cycles[0] * t.cfg.rows * t.cfg.cols / wall)})
    finally:
        s.close()
    return out


def scaling(params: dict, shape=(256, 1024, 1024)) -> dict:
    from harness.spec import KernelSpec
    from rtl_sims.bitfusion.model import predict

    t, b, s, build_s = _session(params)
    res = {"config": t.cfg.to_dict(), "shape_NMK": list(shape), "build_s": round(build_s, 1), "by_bits": {}}
    try:
        for q in (8, 4, 2):
            spec = KernelSpec("matmul", shape, q, q)
            c = s.compile(spec, 1)
            t0 = time.monotonic()
            cycles, y = s.execute(c, 1)
            wall = time.monotonic() - t0
            from kernels import reference

            ok = int(reference.checksum(y)) == int(reference.expected_checksum("matmul", shape, q, q, 1))
            p = predict(c.plan)
            ideal = spec.macs // (t.cfg.rows * t.cfg.cols * c.plan.geo.P)
            res["by_bits"][f"{q}x{q}"] = {
                "cycles": cycles[0], "bit_exact": ok, "ideal_compute_cycles": ideal,
                "utilisation": round(ideal / cycles[0], 4), "plan": c.plan.describe(), "perf": s.last["perf"],
                "dram_bytes": p.dram_bytes, "model_cycles": p.cycles, "model_bound": p.bound,
                "model_breakdown": {k: round(v, 1) for k, v in p.breakdown.items()}, "wall_s": round(wall, 2)}
    finally:
        s.close()
    c = {k: v["cycles"] for k, v in res["by_bits"].items()}
    res["ratio_8x8_over_4x4"] = round(c["8x8"] / c["4x4"], 3)
    res["ratio_8x8_over_2x2"] = round(c["8x8"] / c["2x2"], 3)
    return res


def model_vs_rtl(plans: list[str], params: dict, jobs: int) -> dict:
    import numpy as np

    from harness.store import Store
    from harness.sweep import run_sweep
    from rtl_sims.bitfusion.compiler import compile_kernel
    from rtl_sims.bitfusion.model import predict
    from rtl_sims.bitfusion.targets import config_from_params

    out = {"plans": plans, "jobs": jobs, "sweeps": []}
    with tempfile.TemporaryDirectory() as d:
        db = str(Path(d) / "bf.db")
        fps = {}
        for target in ("bitfusion-rtl", "bitfusion-model"):
            for plan in plans:
                s = run_sweep(target, plan, db, jobs=jobs if target == "bitfusion-rtl" else 1, params=params,
                              progress=False)
                fps[target] = s.fingerprint
                out["sweeps"].append({"target": target, "plan": plan, "specs": s.total, "measured": s.measured,
                                      "by_status": s.by_status, "wall_s": round(s.wall_s, 2),
                                      "specs_per_s": round(s.per_second, 3)})
        store = Store(db, readonly=True)
        vals = {}
        for m in store.iter_measurements([fps["bitfusion-rtl"], fps["bitfusion-model"]]):
            if m.status == "ok":
                vals.setdefault(m.spec, {})[m.fingerprint] = m.median
        store.close()
    cfg = config_from_params(params)
    rows = []
    for spec, v in vals.items():
        if len(v) != 2:
            continue
        rtl, mdl = v[fps["bitfusion-rtl"]], v[fps["bitfusion-model"]]
        rows.append((spec, rtl, mdl, (mdl - rtl) / rtl))
    err = np.array([abs(r[3]) for r in rows])
    worst = max(rows, key=lambda r: abs(r[3]))
    wplan = compile_kernel(cfg, worst[0].op, worst[0].shape, worst[0].qa, worst[0].qw).plan
    wp = predict(wplan)
    out.update({
        "n_specs": len(rows), "median_abs_error": round(float(np.median(err)), 4),
        "mean_abs_error": round(float(np.mean(err)), 4), "p90_abs_error": round(float(np.percentile(err, 90)), 4),
        "max_abs_error": round(float(err.max()), 4), "within_5pct": round(float(np.mean(err <= 0.05)), 3),
        "worst": {"spec": str(worst[0]), "rtl_cycles": worst[1], "model_cycles": worst[2],
                  "error": round(worst[3], 4), "plan": wplan.describe(), "model_bound": wp.bound,
                  "model_breakdown": {k: round(x, 1) for k, x in wp.breakdown.items()}},
        "largest_errors": [{"spec": str(r[0]), "rtl": r[1], "model": r[2], "error": round(r[3], 4)}
                           for r in sorted(rows, key=lambda r: -abs(r[3]))[:10]],
    })
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller GEMMs and sweeps (a few minutes)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("-o", "--output", default=str(Path(__file__).resolve().parent / "results" / "bitfusion.json"))
    args = ap.parse_args()
    t0 = time.monotonic()
    published: dict = {}
    result = {"machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
              "quick": args.quick}
    result["sim_speed"] = sim_speed(published, (128, 256, 512) if args.quick else (256, 512, 1024))
    shape = (128, 512, 512) if args.quick else (256, 1024, 1024)
    result["scaling"] = [scaling(published, shape)]
    for bits in ((512,) if args.quick else (512, 1024)):
        result["scaling"].append(scaling({"dram_bits": bits}, shape))
    plans = ["random:8"] if args.quick else ["random:8", "random:8:1"]
    result["model_vs_rtl"] = model_vs_rtl(plans, published, args.jobs)
    result["sweep"] = [{k: s[k] for k in ("target", "plan", "specs", "measured", "wall_s", "specs_per_s")}
                       for s in result["model_vs_rtl"]["sweeps"]]
    result["wall_s"] = round(time.monotonic() - t0, 1)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    sc = result["scaling"]
    print(json.dumps({"sim_cycles_per_s": [r["cycles_per_s"] for r in result["sim_speed"]["runs"]],
                      "ratios": [(s["config"]["dram_bits"], s["ratio_8x8_over_4x4"], s["ratio_8x8_over_2x2"])
                                 for s in sc],
                      "model_median_err": result["model_vs_rtl"]["median_abs_error"],
                      "model_max_err": result["model_vs_rtl"]["max_abs_error"],
                      "sweep": result["sweep"], "wall_s": result["wall_s"]}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
