"""Verilator targets: simulation speed, build times, zoo sweep wall time, SIMD cycle ratios.

    .venv/bin/python benchmarks/bench_rtl.py [--targets vexriscv-full ...] [--no-sweep] [-o benchmarks/results/rtl.json]

Per target:
  - build_cold_s:   simulator + firmware into an empty cache, ccache disabled (what a
                    fresh CI machine without ccache pays);
  - build_ccache_s: into an empty cache with ccache enabled and warm (only when ccache
                    is installed; what a new MICO_CACHE costs on a machine that built before);
  - build_cached_s: the same build again (content-hash hit: nothing compiles);
  - cycles_per_s:   simulated cycles per wall second on one core (testbench --stats: every
                    cycle of a session running matmul N=1,M=256,K=1024 8x8, input generation
                    and protocol included, over the time not spent waiting for the host);
    kernel_phase_cycles_per_s: the same during the kernel runs alone (difference of two
                    requests that differ by 10 kernel runs); best of 3 rounds each;
  - sweep_zoo:      wall time of `mico sweep --plan zoo --jobs 2` into a fresh store.
For vexriscv-mico: the matmul N=1,M=256,K=1024 cycle ratios 8x8/2x2, 8x8/1x1 and
SIMD 8x8 / vexriscv-full scalar 8x8 (issue targets >= 3.5, >= 6, <= 1/2.5).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ["vexriscv-cacheless", "vexriscv-small", "vexriscv-full", "vexriscv-mico"]
RATIO_SHAPE = (1, 256, 1024)


def _build(name: str, cache: Path, ccache: bool) -> tuple[float, object]:
    env_before = {k: os.environ.get(k) for k in ("MICO_CACHE", "CCACHE_DISABLE")}
    os.environ["MICO_CACHE"] = str(cache)
    if ccache:
        os.environ.pop("CCACHE_DISABLE", None)
    else:
        os.environ["CCACHE_DISABLE"] = "1"
    try:
        from harness import registry

        t = registry.get(name)
        t0 = time.perf_counter()
        b = t.build()
        return time.perf_counter() - t0, b
    finally:
        for k, v in env_before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def build_times(name: str) -> dict:
    out = {}
    with tempfile.TemporaryDirectory() as d:
        out["build_cold_s"], b = _build(name, Path(d) / "cold", ccache=False)
        out["build_cached_s"], b2 = _build(name, Path(d) / "cold", ccache=False)
        assert b2.cached and b2.fingerprint == b.fingerprint
        if shutil.which("ccache"):
            _build(name, Path(d) / "warm-ccache-prime", ccache=True)   # make sure ccache holds it
            out["build_ccache_s"], _ = _build(name, Path(d) / "warm-ccache", ccache=True)
    return out


def sim_speed(name: str, rounds: int = 3) -> dict:
    """Simulated cycles per second of simulating (the testbench's --stats: all cycles, boot and
    protocol included, over wall time minus the time it sat waiting for input); best of rounds."""
    import re

    from harness import registry
    from harness.protocol import Client
    from harness.spec import KernelSpec
    from harness.transports import ProcessTransport

    t = registry.get(name)
    b = t.build()
    spec = KernelSpec("matmul", RATIO_SHAPE, 8, 8)
    speeds, walls_a, walls_b, kernel_cycles = [], [], [], None
    for _ in range(rounds):
        argv = t.command(b)
        tr = ProcessTransport([argv[0], "--stats", *argv[1:]])
        c = Client(tr, timeout=1800, retries=0)
        c.hello()
        t0 = time.perf_counter()
        kernel_cycles = c.run_kernel(spec.op, spec.shape, 8, 8, 1, 0, 2).values[0]
        t1 = time.perf_counter()
        c.run_kernel(spec.op, spec.shape, 8, 8, 1, 0, 12)
        t2 = time.perf_counter()
        walls_a.append(t1 - t0)
        walls_b.append(t2 - t1)
        tr.proc.stdin.close()   # EOF: the testbench prints its statistics and exits
        tr.proc.wait(30)
        text = tr.stderr_tail()
        tr.close()
        m = re.search(r"tb: (\d+) cycles in ([\d.]+) s, ([\d.]+) s waiting for input, (\d+) cycles/s", text)
        if not m:
            raise RuntimeError(f"no statistics from the testbench: {text!r}")
        speeds.append(int(m.group(4)))
    return {"cycles_per_s": max(speeds), "cycles_per_s_rounds": speeds,
            # the second request only adds 10 kernel runs: the speed of the kernel phase alone
            "kernel_phase_cycles_per_s": 10 * kernel_cycles / (min(walls_b) - min(walls_a)),
            "speed_kernel": str(spec),
            "speed_kernel_cycles": kernel_cycles}


def sweep_zoo(name: str, jobs: int) -> dict:
    exe = shutil.which("mico", path=str(Path(sys.executable).parent)) or "mico"
    with tempfile.TemporaryDirectory() as d:
        db = Path(d) / "zoo.db"
        cmd = [exe, "sweep", "--target", name, "--plan", "zoo", "--jobs", str(jobs), "--store", str(db),
               "--no-progress", "--json"]
        t0 = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=7200)
        wall = time.perf_counter() - t0
        if res.returncode != 0:
            return {"sweep_zoo_error": res.stderr.strip()[-500:]}
        s = json.loads(res.stdout)
    return {"sweep_zoo_wall_s": wall, "sweep_zoo_specs": s.get("measured"), "sweep_zoo_by_status": s.get("by_status"),
            "sweep_zoo_engine_wall_s": s.get("wall_s")}


def mico_ratios() -> dict:
    from harness import registry
    from harness.spec import KernelSpec

    cyc = {}
    t = registry.get("vexriscv-mico")
    with t.open(t.build()) as s:
        for q in (8, 2, 1):
            cyc[f"mico_{q}x{q}"] = s.run_kernel(KernelSpec("matmul", RATIO_SHAPE, q, q), 1, 0, 2).values[0]
    f = registry.get("vexriscv-full")
    with f.open(f.build()) as s:
        cyc["full_scalar_8x8"] = s.run_kernel(KernelSpec("matmul", RATIO_SHAPE, 8, 8), 1, 0, 2).values[0]
    r = {
        "shape": list(RATIO_SHAPE), "cycles": cyc,
        "ratio_8x8_over_2x2": cyc["mico_8x8"] / cyc["mico_2x2"],
        "ratio_8x8_over_1x1": cyc["mico_8x8"] / cyc["mico_1x1"],
        "simd_8x8_over_scalar_8x8": cyc["mico_8x8"] / cyc["full_scalar_8x8"],
    }
    r["targets_met"] = {"8x8/2x2>=3.5": r["ratio_8x8_over_2x2"] >= 3.5, "8x8/1x1>=6": r["ratio_8x8_over_1x1"] >= 6,
                        "simd/scalar<=0.4": r["simd_8x8_over_scalar_8x8"] <= 1 / 2.5}
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", nargs="+", default=TARGETS)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--no-sweep", action="store_true", help="skip the zoo sweeps (the slow part)")
    ap.add_argument("-o", "--output", default=str(ROOT / "benchmarks" / "results" / "rtl.json"))
    a = ap.parse_args()
    from harness import registry
    from rtl_sims import verilator as vl

    results: dict = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                                 "python": platform.python_version(), "verilator": vl.find_verilator().version,
                                 "ccache": bool(shutil.which("ccache"))},
                     "targets": {}}
    for name in a.targets:
        ok, why = registry.get(name).available()
        if not ok:
            results["targets"][name] = {"unavailable": why}
            continue
        r = build_times(name)
        r.update(sim_speed(name))
        if not a.no_sweep:
            r.update(sweep_zoo(name, a.jobs))
        results["targets"][name] = r
        print(name, json.dumps(r), flush=True)
    if "vexriscv-mico" in a.targets and registry.get("vexriscv-mico").available()[0]:
        results["mico_simd"] = mico_ratios()
        print("mico_simd", json.dumps(results["mico_simd"]), flush=True)
    out = Path(a.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
