"""Grouped / depthwise conv: the packed mico_conv2d path vs the direct mico_gconv2d kernel.

    .venv/bin/python benchmarks/bench_zoo_gconv.py [--targets host vexriscv-full] [-o benchmarks/results/zoo_gconv.json]

For each grouped conv shape of the zoo models and a few (qa, qw) pairs, two
one-layer models with the same weights and requantisation are generated:
``kernel="packed"`` (pack the input planes, mico_conv2d, requant: what every
grouped conv ran before) and ``kernel="direct"`` (mico_gconv2d on the int8
values, requant).  Both run on the target through RUN_MODEL in one session;
the layer time of the conv (layer mode: everything the deployed layer does)
is recorded, median over ``--repeats`` runs (the RTL targets are
deterministic: one run), and the ratio packed/direct.  The packed kernel
alone is also measured in kernel mode with ``mico measure``
(RUN_KERNEL conv2d with G groups), the number a sweep records.

Shapes: DS-CNN's depthwise 3x3 (64 channels, 8x8 digits), MobileNetV2-0.35's
depthwise 3x3 (stride 1 and 2), ShuffleNet's grouped 1x1 (g=3, 20 and 80
inputs per group) and a depthwise conv1d after its unfold (1x1, 3 taps per
group).  These numbers set ``kernels.ir.ops.DIRECT_MAX_REDUCTION``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

SHAPES = {   # name: (C, H, W, K, KS, S, P, G)
    "dscnn_dw3x3": (64, 8, 8, 64, 3, 1, 1, 64),
    "mbv2_dw3x3_s1": (48, 8, 8, 48, 3, 1, 1, 48),
    "mbv2_dw3x3_s2": (96, 8, 8, 96, 3, 2, 1, 96),
    "shufflenet_g1x1_r20": (60, 4, 4, 15, 1, 1, 0, 3),
    "shufflenet_g1x1_r80": (240, 2, 2, 60, 1, 1, 0, 3),
    "dwconv1d_unfolded": (96, 1, 62, 32, 1, 1, 0, 32),
}
PAIRS = ((8, 8), (4, 4), (2, 2), (1, 1))


def _graph(shape, qa, qw, kernel, seed):
    from helpers.models import conv, linear
    from kernels import ir

    C, H, W, K, KS, S, P, G = shape
    rng = np.random.default_rng(seed)
    g = ir.Graph(ir.TensorType((C, H, W), qa))
    op = conv(rng, "conv", C, K, qa, qw, 8, ks=KS, stride=S, pad=P, groups=G)
    op.kernel = kernel
    g.add(op)
    g.add(ir.Flatten(name="flat"))
    g.add(linear(rng, "fc", g.output.numel, 2, 8, 8, 0))
    return g


def _layer_time(session, tool, graph, xs, repeats) -> float:
    from kernels.ir import codegen
    from mpq.deploy import run_on_device

    run = run_on_device(session, graph, np.repeat(xs, repeats, axis=0),
                        codegen.compile_image(codegen.generate(graph), tool))
    assert (run.outputs == graph.run(np.repeat(xs, repeats, axis=0))).all(), "not bit-exact"
    return float(np.median(run.times[:, 0]))


def _kernel_mode(target: str, shape, qa, qw) -> float | None:
    C, H, W, K, KS, S, P, G = shape
    cmd = [str(ROOT / ".venv/bin/mico"), "measure", "--target", target, "--op", "conv2d", "--json",
           "--shape", f"1,{C},{H},{W},{K},{KS},{S},{P},{G}", "--qa", str(qa), "--qw", str(qw)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT)
    if out.returncode != 0:
        return None
    doc = json.loads(out.stdout)
    return float(doc.get("median") or doc.get("stats", {}).get("median"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--targets", nargs="+", default=["host", "vexriscv-full"])
    ap.add_argument("--repeats", type=int, default=15, help="runs per model on the host (RTL: 1)")
    ap.add_argument("-o", "--out", default=str(ROOT / "benchmarks/results/zoo_gconv.json"))
    a = ap.parse_args()
    from harness import registry
    from helpers.models import int_values

    rows = []
    for target in a.targets:
        t = registry.get(target)
        s = t.open(t.build())
        tool = t.model_toolchain()
        reps = a.repeats if target == "host" else 1
        try:
            for name, shape in SHAPES.items():
                for qa, qw in PAIRS:
                    xs = int_values(np.random.default_rng(1), qa, (1, *shape[:3]))
                    t0 = time.perf_counter()
                    packed = _layer_time(s, tool, _graph(shape, qa, qw, "packed", 0), xs, reps)
                    direct = _layer_time(s, tool, _graph(shape, qa, qw, "direct", 0), xs, reps)
                    rows.append({"target": target, "unit": s.hello.timer_unit, "shape": name,
                                 "conv2d": [1, *shape], "qa": qa, "qw": qw,
                                 "layer_packed": packed, "layer_direct": direct, "speedup": packed / direct,
                                 "kernel_packed_mico_measure": _kernel_mode(target, shape, qa, qw),
                                 "wall_s": time.perf_counter() - t0})
                    print(json.dumps(rows[-1]), flush=True)
        finally:
            s.close()
    Path(a.out).write_text(json.dumps({"benchmark": "zoo_gconv", "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
