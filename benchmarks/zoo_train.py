"""Train every zoo model on its default dataset (digits) and record size, time, accuracy.

    .venv/bin/python benchmarks/zoo_train.py [--models resnet8 ...] [--epochs 30] [-o benchmarks/results/zoo_train.json]

Per model: parameters, MAC layers, IR ops, float training wall time (one torch
thread, ``mpq.train.train_float`` at the CLI's default epochs), float test
accuracy, and for uniform 8x8 and 4x4 PTQ schemes (``mpq.train.quantize``, no
QAT) the fake-quant and integer accuracies and how often their predictions
agree.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    import torch

    from mpq.datasets import load_dataset
    from mpq.integer import build_integer_model
    from mpq.models import MODELS, get_model
    from mpq.train import DEFAULT_EPOCHS, accuracy, quantize, set_seed, train_float

    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=[m for m in MODELS])
    ap.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS["digits"])
    ap.add_argument("-o", "--out", default=str(ROOT / "benchmarks/results/zoo_train.json"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    d = load_dataset("digits")
    rows = []
    for name in a.models:
        set_seed(0)
        m = get_model(name, "digits")
        t0 = time.perf_counter()
        train_float(m, d.x_train, d.y_train, epochs=a.epochs, seed=0)
        row = {"model": name, "params": int(sum(p.numel() for p in m.parameters())),
               "mac_layers": len(m.layer_names), "ir_ops": len(m.lower()), "epochs": a.epochs,
               "train_s": time.perf_counter() - t0, "float_acc": accuracy(m, d.x_test, d.y_test),
               "load_avg": os.getloadavg()[0]}
        n = len(m.layer_names)
        for qa, qw in ((8, 8), (4, 4)):
            q = quantize(m, [(qa, qw)] * n, d.x_train, seed=0)
            im = build_integer_model(q)
            with torch.no_grad():
                fq = q(d.x_test).argmax(1)
            ip = im.predict(d.x_test)
            row[f"ptq{qa}x{qw}"] = {"fakequant_acc": float((fq == d.y_test).float().mean()),
                                    "integer_acc": float((ip == d.y_test).float().mean()),
                                    "agreement": float((fq == ip).float().mean())}
        rows.append(row)
        print(json.dumps(row), flush=True)
    Path(a.out).write_text(json.dumps({"benchmark": "zoo_train", "dataset": "digits", "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
