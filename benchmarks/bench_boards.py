"""Figures for the boards/ package, written to benchmarks/results/boards.{json,md}.

- the emulated board: SoC build (cached or cold), boot (serialboot) time, smoke
  sweep wall time, and that a second sweep repeats every cycle count exactly;
- the same sweep through the fault proxy (1% corrupted bytes, drops,
  duplicates, a link cut every 8 s): statuses, retries, reconnects, and that
  every stored value equals the clean run's;
- board:litex-sim cycles next to vexriscv-small (the same VexRiscv.v core in
  the lean testbench) at 0, 1, 2 and 4 bus wait states, for the smoke kernels
  and a few that miss the 4 KiB caches.

Run: .venv/bin/python benchmarks/bench_boards.py [--quick]  (not a test)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import registry, sweep  # noqa: E402
from harness.measure import measure  # noqa: E402
from harness.spec import KernelSpec  # noqa: E402
from harness.store import Store  # noqa: E402

import boards.targets  # noqa: E402,F401  (registers board:)
from boards import lock  # noqa: E402
from boards.faults import FaultConfig, FaultProxy  # noqa: E402

OUT = ROOT / "benchmarks" / "results"
BIG = [KernelSpec("matmul", (16, 64, 288), 8, 8), KernelSpec("matmul", (16, 64, 288), 2, 2),
       KernelSpec("matmul", (16, 256, 96), 4, 4), KernelSpec("conv2d", (1, 16, 16, 16, 32, 3, 1, 1, 1), 8, 8),
       KernelSpec("conv2d", (1, 16, 16, 16, 32, 3, 1, 1, 1), 1, 1)]


def rows(db: str) -> dict:
    with Store(db, readonly=True) as st:
        return {(m.spec.op, m.spec.shape, m.spec.qa, m.spec.qw): (m.status, m.median, m.retries, m.reconnects)
                for m in st.iter_measurements()}


def cycles(target_name: str, params: dict, specs: list[KernelSpec]) -> dict:
    t = registry.get(target_name, **params)
    b = t.build()
    s = t.open(b)
    out = {}
    try:
        for sp in specs:
            m = measure(s, sp, b.fingerprint, True)
            out[str(sp)] = int(m.median)
    finally:
        s.close()
        lock.release_all()
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="skip the fault sweep and the large kernels")
    a = ap.parse_args()
    import os

    from harness.host import cpu_model

    res: dict = {"machine": f"{cpu_model()}, {os.cpu_count()} cores"}
    tmp = Path(tempfile.mkdtemp(prefix="bench-boards-"))
    url = "socket://127.0.0.1:21480"

    t0 = time.monotonic()
    t = registry.get("board:litex-sim", url=url)
    b = t.build()
    res["build_s"] = round(time.monotonic() - t0, 1)
    res["build_cached"] = b.cached
    cold = Path(b.artifacts["soc_dir"]) / "build-seconds.txt"
    res["soc_cold_build_s_recorded"] = float(cold.read_text()) if cold.exists() else None
    t0 = time.monotonic()
    s = t.open(b)
    res["boot_s"] = round(time.monotonic() - t0, 1)
    s.close()
    lock.release_all()

    walls = []
    for i in (1, 2):
        t0 = time.monotonic()
        sm = sweep.run_sweep("board:litex-sim", "smoke", str(tmp / f"clean{i}.db"), params={"url": url},
                             progress=False)
        walls.append(round(time.monotonic() - t0, 1))
        lock.release_all()
    r1, r2 = rows(str(tmp / "clean1.db")), rows(str(tmp / "clean2.db"))
    res["smoke"] = {"specs": len(r1), "ok": sum(v[0] == "ok" for v in r1.values()), "wall_s": walls,
                    "sweep_wall_s": sm.wall_s, "identical_second_run": r1 == r2}

    if not a.quick:
        cfg = FaultConfig(corrupt=0.012, drop=0.0005, duplicate=0.0005, cut_every_s=8, seed=11, spare_boot=True)
        with FaultProxy(("127.0.0.1", 21481), cfg) as px:
            t0 = time.monotonic()
            sweep.run_sweep("board:litex-sim", "smoke", str(tmp / "faults.db"),
                            params={"url": f"socket://127.0.0.1:{px.port}", "sim_port": 21481, "reply_timeout_s": 2},
                            progress=False)
            wall = time.monotonic() - t0
            lock.release_all()
            rf = rows(str(tmp / "faults.db"))
            wrong = sum(1 for k, v in rf.items() if v[0] == "ok" and v[1] != r1[k][1])
            res["faults"] = {"config": str(cfg), "wall_s": round(wall, 1), "proxy": px.stats.to_dict(),
                             "statuses": {st: sum(v[0] == st for v in rf.values()) for st in {v[0] for v in rf.values()}},
                             "retries": sum(v[2] for v in rf.values()), "reconnects": sum(v[3] for v in rf.values()),
                             "wrong_values": wrong,
                             "corrupted_fraction": round(px.stats.corrupted / max(1, px.stats.bytes_to_board
                                                                                 + px.stats.bytes_to_host), 4)}

    specs = [KernelSpec(op, shape, qa, qw) for (op, shape, qa, qw) in sorted(r1)]
    specs = [sp for sp in specs if (sp.qa, sp.qw) in ((1, 1), (2, 2), (4, 4), (8, 8), (2, 8))]
    if not a.quick:
        specs += BIG
    table = {"board:litex-sim": cycles("board:litex-sim", {"url": url}, specs)}
    for ws in (0, 1, 2, 4):
        table[f"vexriscv-small ws={ws}"] = cycles("vexriscv-small", {"wait_states": ws}, specs)
    res["cycles"] = table
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "boards.json").write_text(json.dumps(res, indent=1))
    cols = list(table)
    lines = ["| kernel | " + " | ".join(cols) + " | litex / ws=0 |", "|---" * (len(cols) + 2) + "|"]
    for k in table["board:litex-sim"]:
        vals = [table[c][k] for c in cols]
        lines.append(f"| {k} | " + " | ".join(str(v) for v in vals) + f" | {vals[0] / vals[1]:.3f} |")
    summary = {k: v for k, v in res.items() if k != "cycles"}
    (OUT / "boards.md").write_text("# boards benchmark\n\n```\n" + json.dumps(summary, indent=1) + "\n```\n\n"
                                   + "\n".join(lines) + "\n")
    print((OUT / "boards.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
