"""Which zoo model fits which target at which mem_kib (verified by running it).

    .venv/bin/python benchmarks/zoo_fit.py [--models resnet8 ...] [--schemes 8x8 4x4] [-o benchmarks/results/zoo_fit.json]

Per model (digits input, random-BN calibrated weights, uniform scheme):
  - flash (model image bytes for rv32), activation peak, scratch and arena bytes (mpq/memory.py);
  - the smallest vexriscv mem_kib that holds it (``mem_kib_needed`` from the HELLO of a
    4096 KiB vexriscv-mico), then a vexriscv-mico booted at that mem_kib runs one
    test image: ``fits_at_min`` true only if the memory check passes and the logits
    are bit-exact there (and the check refuses 64 KiB less);
  - bitfusion-rtl: one test image through the array (GEMM nodes) and the host side,
    bit-exact, or the reason it does not map.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    from harness import registry
    from harness.errors import MeasureError, UserError
    from helpers.models import calibrated_integer_model
    from kernels.ir import codegen
    from mpq.datasets import load_dataset
    from mpq.deploy import run_on_device
    from mpq.memory import check_fits, mem_kib_needed, model_memory
    from mpq.models import MODELS

    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--schemes", nargs="+", default=["8x8", "4x4"])
    ap.add_argument("-o", "--out", default=str(ROOT / "benchmarks/results/zoo_fit.json"))
    a = ap.parse_args()
    d = load_dataset("digits")
    vex = registry.get("vexriscv-mico")
    base = vex.open(vex.build())
    code0, ram0 = base.hello.code_bytes, base.hello.ram_bytes
    base.close()
    bf = registry.get("bitfusion-rtl")
    bfs = bf.open(bf.build())
    rows = []
    try:
        for name in a.models:
            for sch in a.schemes:
                qa, qw = (int(v) for v in sch.split("x"))
                t0 = time.perf_counter()
                m, im = calibrated_integer_model(name, 11, d.x_train, uniform=(qa, qw))
                gen = codegen.generate(im.graph, {"model": name})
                image = codegen.compile_image(gen, vex.model_toolchain())
                need = model_memory(gen, image)
                xq = im.quantize_input(d.x_test[:1]).numpy()
                ref = np.asarray(im.forward_int(xq), dtype=np.int64)
                row = {"model": name, "scheme": sch, "params": int(sum(p.numel() for p in m.parameters())),
                       "mac_layers": len(m.layer_names), "ops": len(im.graph), **need.to_dict()}
                want = mem_kib_needed(need, code0, ram0, 4096)
                row["vexriscv_min_mem_kib"] = want
                if want is not None:
                    t = registry.get("vexriscv-mico", mem_kib=max(want, 256))
                    s = t.open(t.build())
                    try:
                        check_fits(need, s.hello, t.name, want)
                        run = run_on_device(s, im.graph, xq, image)
                        row["fits_at_min"] = bool((run.outputs == ref).all())
                        row["vexriscv_mico_cycles"] = float(run.totals[0])
                    except (UserError, MeasureError) as e:
                        row["fits_at_min"], row["vexriscv_error"] = False, str(e)
                    finally:
                        s.close()
                    if want - 64 >= 256:
                        t = registry.get("vexriscv-mico", mem_kib=want - 64)
                        s = t.open(t.build())
                        try:
                            check_fits(need, s.hello, t.name, want - 64)
                            row["refused_below_min"] = False
                        except UserError:
                            row["refused_below_min"] = True
                        finally:
                            s.close()
                try:
                    run = run_on_device(bfs, im.graph, xq)
                    row["bitfusion_rtl_bit_exact"] = bool((run.outputs == ref).all())
                    row["bitfusion_rtl_cycles"] = float(run.totals[0])
                except (UserError, MeasureError) as e:
                    row["bitfusion_rtl_bit_exact"], row["bitfusion_error"] = False, str(e)
                row["wall_s"] = time.perf_counter() - t0
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        bfs.close()
    Path(a.out).write_text(json.dumps({"benchmark": "zoo_fit", "vexriscv_hello_at_4096": [code0, ram0],
                                       "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
