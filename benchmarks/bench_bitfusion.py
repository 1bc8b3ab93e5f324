"""BitFusion: RTL simulation speed, precision scaling with the output unit, model accuracy.

    .venv/bin/python benchmarks/bench_bitfusion.py [--quick] [-o benchmarks/results/bitfusion.json]

Figures (one JSON file):

- ``sim_speed``: accelerator cycles per wall second of the Verilated RTL (published
  16 x 32 configuration) on a compute-bound (8x8) and a memory-bound (2x2) GEMM;
- ``scaling``: cycles of one GEMM (default N=256, K=1024, M=1024) at 8x8, 4x4, 2x2
  on the RTL, for the published 128-bit DRAM port (and wider ports), two ways:
  ``layer`` = with the output unit on (bias, requantisation to qa bits, packed
  rows out: ``layer.compile_layer``, as a deployed layer runs) and ``kernel`` =
  int32 partial sums out (``RUN_KERNEL``, as sweeps measure); both checked
  bit-exact, with the ratios 8x8/4x4 and 8x8/2x2 and the model's prediction;
- ``model_vs_rtl``: >= 256 seeded specs (the shapes of the sweep plans
  ``random:8`` and ``random:8:1``, each with 16 seeded (qa, qw) in 1..8 x 1..8,
  half of them int32 kernels, half layers through the output unit with random
  out_bits / signedness / ReLU / pooling), every one checked bit-exact on the
  RTL; the model's error: median, p90, max, worst spec, by mode and width class;
- ``sweep``: ``mico sweep`` throughput of both targets on ``random:8`` (full run only).

All cycle figures are deterministic; wall-clock figures come from this
(shared, noisy) machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import random
import tempfile
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("bench_bitfusion")


def _session(params: dict):
    from harness import registry

    t = registry.get("bitfusion-rtl", **params)
    t0 = time.monotonic()
    b = t.build()
    build_s = time.monotonic() - t0
    return t, b, t.open(b), build_s


def _vals(rng: np.random.Generator, b: int, shape, signed: bool = True) -> np.ndarray:
    from rtl_sims.bitfusion.outunit import value_range

    lo, hi = value_range(b, signed)
    if b == 1:
        return rng.choice(np.array([-1, 1]), size=shape)
    return rng.integers(lo, hi + 1, size=shape)


def _requant_params(rng: np.random.Generator, acc: np.ndarray, nch: int, out_bits: int, signed: bool = True):
    """bias, mult, shift that spread the outputs over the out_bits range (channels on axis 1)."""
    mean = np.moveaxis(acc, 1, 0).reshape(nch, -1).mean(axis=1)
    bias = -np.round(mean).astype(np.int64) + rng.integers(-4, 5, nch)
    if not signed:
        bias += int(np.std(acc))                # unsigned codes: centre on the range
    mult = rng.integers(1 << 30, 1 << 31, nch)
    sd = max(1.0, float(np.std(acc)))
    span = 2.0 ** (max(out_bits, 2) - (1 if signed else 0))
    # mult averages 0.75 * 2^31: y = acc * mult / 2^shift then has a spread of about span / 2
    shift = np.full(nch, int(np.clip(31 + np.round(np.log2(1.5 * sd / span)), 1, 62)))
    return bias, mult, shift


def _gemm_acc(op: str, shape, x, w) -> np.ndarray:
    from kernels import reference

    if op == "matmul":
        return reference.matmul(x, w)
    return reference.conv2d(x, w, shape[6], shape[7], shape[8])


def run_layer(s, op: str, shape, qa: int, qw: int, x, w, out_bits: int, out_signed: bool, relu: bool, pool,
              rng: np.random.Generator, a_signed: bool = True) -> dict:
    """One layer with the output unit on the RTL session `s`: cycles, prediction, bit-exactness."""
    from rtl_sims.bitfusion import layer as L
    from rtl_sims.bitfusion.model import predict

    nch = w.shape[0]
    bias, mult, shift = _requant_params(rng, _gemm_acc(op, shape, x, w), nch, out_bits, out_signed)
    lp = L.compile_layer(s.cfg, op, shape, qa, qw, w, bias, mult, shift, relu, out_bits, out_signed, pool, 0,
                         a_signed=a_signed)
    L.load_rtl(s.client, lp)
    t0 = time.monotonic()
    r = L.run_rtl(s.client, s.cfg, lp, lp.input_image(x))
    wall = time.monotonic() - t0
    got = lp.outputs(np.frombuffer(r.out, dtype="<u4"))
    want = L.reference_output(op, shape, x, w, bias, mult, shift, relu, out_bits, out_signed, pool)
    p = predict(lp.plan)
    return {"cycles": r.cycles[0], "model_cycles": p.cycles, "bit_exact": bool(np.array_equal(got, want)),
            "distinct_outputs": int(len(np.unique(got))), "plan": lp.plan.describe(), "perf": r.perf,
            "dram_bytes": p.dram_bytes, "model_bound": p.bound, "wall_s": round(wall, 2),
            "model_breakdown": {k: round(v, 1) for k, v in p.breakdown.items()}}


def run_kernel(s, op: str, shape, qa: int, qw: int, x, w) -> dict:
    """One int32 kernel (RUN_KERNEL's path: per-tile operand images, int32 outputs) on the RTL."""
    from rtl_sims.bitfusion.compiler import compile_kernel
    from rtl_sims.bitfusion.model import predict

    c = compile_kernel(s.cfg, op, shape, qa, qw, x, w)
    t0 = time.monotonic()
    cycles, y = s.execute(c, 1)
    wall = time.monotonic() - t0
    p = predict(c.plan)
    return {"cycles": cycles[0], "model_cycles": p.cycles,
            "bit_exact": bool(np.array_equal(y, _gemm_acc(op, shape, x, w))), "plan": c.plan.describe(),
            "perf": s.last["perf"], "dram_bytes": p.dram_bytes, "model_bound": p.bound, "wall_s": round(wall, 2),
            "model_breakdown": {k: round(v, 1) for k, v in p.breakdown.items()}}


def sim_speed(params: dict, shape=(256, 512, 1024)) -> dict:
    t, b, s, build_s = _session(params)
    out = {"config": t.cfg.to_dict(), "build_s": round(build_s, 1), "build_cached": b.cached, "runs": []}
    rng = np.random.default_rng(1)
    try:
        for q in (8, 2):
            N, M, K = shape
            r = run_kernel(s, "matmul", shape, q, q, _vals(rng, q, (N, K)), _vals(rng, q, (M, K)))
            out["runs"].append({"spec": f"matmul{list(shape)} {q}x{q}", "cycles": r["cycles"], "wall_s": r["wall_s"],
                                "cycles_per_s": round(r["cycles"] / r["wall_s"]), "perf": r["perf"],
                                "fu_cycles_per_s": round(r["cycles"] * t.cfg.rows * t.cfg.cols / r["wall_s"])})
    finally:
        s.close()
    return out


def scaling(params: dict, shape=(256, 1024, 1024), kernels: bool = True) -> dict:
    t, b, s, build_s = _session(params)
    N, M, K = shape
    res: dict = {"config": t.cfg.to_dict(), "shape_NMK": list(shape), "build_s": round(build_s, 1),
                 "layer": {}, "kernel": {}}
    rng = np.random.default_rng(5)
    try:
        for q in (8, 4, 2):
            x, w = _vals(rng, q, (N, K)), _vals(rng, q, (M, K))
            ideal = N * M * K // (t.cfg.rows * t.cfg.cols * (16 // (q // 2) ** 2))
            r = run_layer(s, "matmul", shape, q, q, x, w, q, True, False, None, rng)
            res["layer"][f"{q}x{q}"] = dict(r, ideal_compute_cycles=ideal, utilisation=round(ideal / r["cycles"], 4))
            if kernels:
                r = run_kernel(s, "matmul", shape, q, q, x, w)
                res["kernel"][f"{q}x{q}"] = dict(r, ideal_compute_cycles=ideal,
                                                 utilisation=round(ideal / r["cycles"], 4))
            log.info("scaling %s bits/cycle %dx%d done", t.cfg.dram_bits, q, q)
    finally:
        s.close()
    for mode in ("layer", "kernel"):
        c = {k: v["cycles"] for k, v in res[mode].items()}
        if c:
            res[mode]["ratio_8x8_over_4x4"] = round(c["8x8"] / c["4x4"], 3)
            res[mode]["ratio_8x8_over_2x2"] = round(c["8x8"] / c["2x2"], 3)
    return res


def cross_specs(plans: list[str], per_shape: int = 16, seed: int = 7) -> list[dict]:
    """Seeded specs: the plans' shapes x per_shape random (qa, qw) in 1..8, alternating int32
    kernels and layers through the output unit (random out_bits, signedness, ReLU, pooling)."""
    from harness.plans import plan_shapes
    from rtl_sims.bitfusion.layer import conv_out_hw

    rng = random.Random(seed)
    specs = []
    for plan in plans:
        for op, shapes in plan_shapes(plan).items():
            for shape in shapes:
                for i in range(per_shape):
                    d = {"op": op, "shape": tuple(shape), "qa": rng.randint(1, 8), "qw": rng.randint(1, 8),
                         "layer": i % 2 == 1, "seed": rng.getrandbits(31)}
                    if d["layer"]:
                        ob = rng.randint(0, 8)
                        d.update(out_bits=ob, out_signed=ob <= 1 or rng.random() < 0.5,
                                 a_signed=d["qa"] == 1 or rng.random() < 0.5, relu=ob > 0 and rng.random() < 0.5,
                                 pool=None)
                        if op == "conv2d" and ob > 0 and rng.random() < 0.5:
                            OH, OW, _, _ = conv_out_hw(shape, None)
                            if min(OH, OW) >= 2:
                                d["pool"] = ("avg" if ob > 1 and rng.random() < 0.5 else "max", 2, 2)
                    specs.append(d)
    return specs


def model_vs_rtl(plans: list[str], params: dict, per_shape: int = 16) -> dict:
    from rtl_sims.bitfusion.compiler import CompileError

    t, b, s, build_s = _session(params)
    rows, skipped = [], []
    t0 = time.monotonic()
    try:
        for d in cross_specs(plans, per_shape):
            rng = np.random.default_rng(d["seed"])
            op, shape, qa, qw = d["op"], d["shape"], d["qa"], d["qw"]
            asg = d.get("a_signed", True)
            if op == "matmul":
                x, w = _vals(rng, qa, (shape[0], shape[2]), asg), _vals(rng, qw, (shape[1], shape[2]))
            else:
                x = _vals(rng, qa, shape[:4], asg)
                w = _vals(rng, qw, (shape[4], shape[1] // shape[8], shape[5], shape[5]))
            try:
                if d["layer"]:
                    r = run_layer(s, op, shape, qa, qw, x, w, d["out_bits"], d["out_signed"], d["relu"], d["pool"],
                                  rng, asg)
                else:
                    r = run_kernel(s, op, shape, qa, qw, x, w)
            except CompileError as e:
                skipped.append({"spec": _spec_str(d), "why": str(e)})
                continue
            rows.append((d, r["cycles"], r["model_cycles"], (r["model_cycles"] - r["cycles"]) / r["cycles"],
                         r["bit_exact"], r["plan"]))
    finally:
        s.close()
    wall = time.monotonic() - t0

    def stats(sel) -> dict:
        e = np.array([abs(r[3]) for r in sel])
        if not len(e):
            return {"n": 0}
        return {"n": int(len(e)), "median_abs_error": round(float(np.median(e)), 4),
                "mean_abs_error": round(float(np.mean(e)), 4), "p90_abs_error": round(float(np.percentile(e, 90)), 4),
                "max_abs_error": round(float(e.max()), 4), "within_5pct": round(float(np.mean(e <= 0.05)), 3)}

    def odd(d) -> bool:
        return d["qa"] not in (1, 2, 4, 8) or d["qw"] not in (1, 2, 4, 8)

    worst = max(rows, key=lambda r: abs(r[3]))
    return {"config": t.cfg.to_dict(), "plans": plans, "specs": len(rows) + len(skipped), "skipped": skipped,
            "all_bit_exact": all(r[4] for r in rows), "wall_s": round(wall, 1),
            **stats(rows), "by_mode": {"kernel": stats([r for r in rows if not r[0]["layer"]]),
                                       "layer": stats([r for r in rows if r[0]["layer"]])},
            "by_width": {"odd": stats([r for r in rows if odd(r[0])]),
                         "even": stats([r for r in rows if not odd(r[0])])},
            "worst": {"spec": _spec_str(worst[0]), "rtl_cycles": worst[1], "model_cycles": worst[2],
                      "error": round(worst[3], 4), "plan": worst[5]},
            "largest_errors": [{"spec": _spec_str(r[0]), "rtl": r[1], "model": r[2], "error": round(r[3], 4)}
                               for r in sorted(rows, key=lambda r: -abs(r[3]))[:10]]}


def _spec_str(d: dict) -> str:
    s = f"{d['op']}{list(d['shape'])} {d['qa']}x{d['qw']}"
    if d["layer"]:
        s += (f" -> {d['out_bits']}b {'s' if d['out_signed'] else 'u'}{' relu' if d['relu'] else ''}"
              f"{' ' + d['pool'][0] + 'pool' if d['pool'] else ''}")
    return s


def sweep_throughput(params: dict, jobs: int) -> list[dict]:
    from harness.sweep import run_sweep

    out = []
    with tempfile.TemporaryDirectory() as d:
        db = str(Path(d) / "bf.db")
        for target in ("bitfusion-rtl", "bitfusion-model"):
            s = run_sweep(target, "random:8", db, jobs=jobs if target == "bitfusion-rtl" else 1, params=params,
                          progress=False)
            out.append({"target": target, "plan": "random:8", "specs": s.total, "measured": s.measured,
                        "by_status": s.by_status, "wall_s": round(s.wall_s, 2), "specs_per_s": round(s.per_second, 3)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller GEMMs, fewer specs, no wide ports (minutes)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("-o", "--output", default=str(Path(__file__).resolve().parent / "results" / "bitfusion.json"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    t0 = time.monotonic()
    published: dict = {}
    result = {"machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
              "quick": args.quick}
    result["sim_speed"] = sim_speed(published, (128, 256, 512) if args.quick else (256, 512, 1024))
    shape = (128, 512, 512) if args.quick else (256, 1024, 1024)
    result["scaling"] = [scaling(published, shape)]
    if not args.quick:
        for bits in (512, 1024):
            result["scaling"].append(scaling({"dram_bits": bits}, shape, kernels=bits == 512))
    plans = ["random:8"] if args.quick else ["random:8", "random:8:1"]
    result["model_vs_rtl"] = model_vs_rtl(plans, published, 8 if args.quick else 16)
    if not args.quick:
        result["sweep"] = sweep_throughput(published, args.jobs)
    result["wall_s"] = round(time.monotonic() - t0, 1)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    mv = result["model_vs_rtl"]
    print(json.dumps({"sim_cycles_per_s": [r["cycles_per_s"] for r in result["sim_speed"]["runs"]],
                      "ratios": [(sc["config"]["dram_bits"], mode, sc[mode].get("ratio_8x8_over_4x4"),
                                  sc[mode].get("ratio_8x8_over_2x2")) for sc in result["scaling"]
                                 for mode in ("layer", "kernel") if sc[mode]],
                      "model_vs_rtl": {k: mv.get(k) for k in ("specs", "all_bit_exact", "median_abs_error",
                                                               "p90_abs_error", "max_abs_error")},
                      "wall_s": result["wall_s"]}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
