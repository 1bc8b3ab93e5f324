"""Transformer ops and models: approximation errors against float, float vs integer accuracy.

    .venv/bin/python benchmarks/bench_transformer.py [--seeds 0 1 2] [--epochs 30] \
        [-o benchmarks/results/transformer.json]

Ops (docs/formats.md, "Transformer ops"): the exp2 of the softmax exhaustively over its
Q16 exponent; softmax, LayerNorm and GELU outputs (dequantised) against float on random
codes at several input scales.  Models (vit_tiny, kws_transformer on digits, the 1-D view
for kws_transformer): per seed, float training (mpq.train.train_float), float test accuracy,
then uniform 8x8 PTQ (mpq.train.quantize) and the integer model's test accuracy.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def op_errors() -> dict:
    from scipy.special import erf

    from kernels import ir
    from kernels.ir import attention

    rng = np.random.default_rng(0)
    out = {}
    z = np.arange(0, 17 << 16, dtype=np.int64)
    out["exp2_q15_max_abs_err"] = float(np.abs(attention.exp2_neg_q15(z) / 32768 - 2.0 ** (-z / 65536)).max())
    sm = {}
    for s in (0.02, 0.05, 0.1, 0.2):
        op = ir.Softmax.from_scale("sm", s)
        for L in (5, 16, 64):
            x = rng.integers(-128, 128, size=(2000, L))
            p = np.exp(s * (x - x.max(1, keepdims=True)))
            p /= p.sum(1, keepdims=True)
            sm[f"s={s},L={L}"] = float(np.abs(op.run([x]) / 127 - p).max())
    out["softmax_max_abs_err"] = sm
    out["softmax_worst"] = max(sm.values())
    ln = {}
    for D in (32, 64, 128):
        gamma, beta = rng.uniform(-1.5, 1.5, D), rng.uniform(-0.5, 0.5, D)
        s_out = 6.0 / 127
        op = ir.LayerNorm.from_params("ln", gamma, beta, s_out, 8)
        x = rng.integers(-128, 128, size=(500, 4, D))
        xf = x.astype(np.float64)
        ref = (xf - xf.mean(-1, keepdims=True)) / xf.std(-1, keepdims=True) * gamma + beta
        ok = np.abs(ref) < 127 * s_out
        ln[f"D={D}"] = {"max_abs_err": float(np.abs(op.run([x]) * s_out - ref)[ok].max()), "out_scale": s_out}
    out["layernorm"] = ln
    ge = {}
    for s in (0.01, 0.03, 0.06):
        s_out = s * 128 / 127
        op = ir.GELU.from_scales("g", s, s_out, 8)
        x = np.arange(-128, 128)[None]
        xf = x[0] * s
        ref = 0.5 * xf * (1 + erf(xf / math.sqrt(2)))
        ge[f"s={s}"] = {"max_abs_err": float(np.abs(op.run([x])[0] * s_out - ref).max()), "out_scale": s_out}
    u = np.linspace(-4, 4, 80001)
    r = u / math.sqrt(2)
    ierf = np.sign(r) * (1 - 0.2888 * (np.minimum(np.abs(r), 1.769) - 1.769) ** 2)
    out["gelu"] = ge
    out["gelu_float_i_erf_max_abs_err"] = float(np.abs(0.5 * u * (1 + ierf) - 0.5 * u * (1 + erf(u / math.sqrt(2)))).max())
    return out


def models(seeds, epochs) -> list[dict]:
    import torch

    from mpq.datasets import load_dataset
    from mpq.integer import build_integer_model
    from mpq.models import get_model
    from mpq.train import accuracy, quantize, set_seed, train_float

    torch.set_num_threads(1)
    d = load_dataset("digits")
    rows = []
    for name in ("vit_tiny", "kws_transformer"):
        for seed in seeds:
            set_seed(seed)
            m = get_model(name, "digits")
            t0 = time.perf_counter()
            train_float(m, d.x_train, d.y_train, epochs=epochs, seed=seed)
            row = {"model": name, "seed": seed, "epochs": epochs, "train_s": time.perf_counter() - t0,
                   "params": int(sum(p.numel() for p in m.parameters())), "float_acc": accuracy(m, d.x_test, d.y_test)}
            q = quantize(m, [(8, 8)] * len(m.layer_names), d.x_train, seed=seed)
            im = build_integer_model(q)
            with torch.no_grad():
                fq = q(d.x_test).argmax(1)
            ip = im.predict(d.x_test)
            row.update({"fakequant8x8_acc": float((fq == d.y_test).float().mean()),
                        "integer8x8_acc": float((ip == d.y_test).float().mean()),
                        "agreement": float((fq == ip).float().mean())})
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary = {}
    for name in ("vit_tiny", "kws_transformer"):
        r = [x for x in rows if x["model"] == name]
        for k in ("float_acc", "integer8x8_acc"):
            v = np.array([x[k] for x in r])
            summary[f"{name}.{k}"] = {"mean": float(v.mean()), "spread": float(v.max() - v.min()), "n": len(v)}
    return rows, summary


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("-o", "--out", default=str(ROOT / "benchmarks/results/transformer.json"))
    a = ap.parse_args()
    ops = op_errors()
    print(json.dumps(ops), flush=True)
    rows, summary = models(a.seeds, a.epochs)
    doc = {"benchmark": "transformer", "dataset": "digits (kws_transformer: its 1-D row-by-row view)",
           "ops": ops, "rows": rows, "summary": summary}
    Path(a.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
