"""Cost terms per target family, monotone boosting, grouped-CV selection, transfer."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from harness.errors import UserError
from harness.spec import KernelSpec
from harness.store import Measurement, Store
from proxy.cli import fit as fit_cmd
from proxy.document import TrainingSet
from proxy.features import features
from proxy.model import LatencyProxy, load_proxies
from proxy.select import select
from proxy.synthetic import synthetic_dataset
from proxy.terms import CPU_NAMES, family_of, rows_alias
from proxy.transfer import transfer_curve
from rtl_sims.bitfusion.compiler import ArrayConfig, compile_kernel
from rtl_sims.bitfusion.model import predict

MM_SHAPES = [(1, 64, 256), (4, 128, 512), (16, 32, 96), (2, 256, 64), (8, 16, 1024), (1, 200, 300), (3, 48, 160),
             (32, 64, 64), (1, 512, 128), (6, 24, 700)]


def bf_data(cfg: ArrayConfig, shapes=MM_SHAPES, bits=(2, 4, 8)) -> tuple[list[KernelSpec], np.ndarray]:
    specs = [KernelSpec("matmul", s, a, w) for s in shapes for a in bits for w in bits]
    y = [predict(compile_kernel(cfg, "matmul", s.shape, s.qa, s.qw).plan).cycles for s in specs]
    return specs, np.asarray(y, dtype=np.float64)


def col(X, names, name):
    return X[0, names.index(name)]


def test_cpu_terms_hand_computed():
    s = KernelSpec("matmul", (2, 10, 33), 2, 4)
    X, names = features([s], "terms", log=False, family="cpu")
    assert names == CPU_NAMES
    # words of the wider operand: ceil(33 * 4 / 32) = 5 per dot, 2 rows x 10 weight rows
    assert col(X, names, "iter_2x4") == 100 and col(X, names, "iter_4x2") == 0
    assert col(X, names, "word_tail") == 100          # 5 words < one block of 8
    assert col(X, names, "row_tail") == 2 * 2 * 5     # 10 % 4 = 2 rows outside four-row blocks
    assert col(X, names, "prep_2b") == 66 and col(X, names, "outputs") == 20
    assert col(X, names, "rows") == 2 and col(X, names, "row_blocks") == 6
    assert col(X, names, "restream_4k") == 0 and col(X, names, "alias_iters") == 0
    # 8-bit rows of 2048 codes are 2 KiB apart: rows 0 and 2 of a block share the sets of 4 KiB
    assert rows_alias(2048) and not rows_alias(3072) and not rows_alias(512)
    big = KernelSpec("matmul", (1, 64, 2048), 8, 8)
    Xb, _ = features([big], "terms", log=False, family="cpu")
    assert col(Xb, names, "alias_iters") == col(Xb, names, "iter_8x8") == 64 * 512
    assert col(Xb, names, "restream_4k") > 0 and col(Xb, names, "restream_1m") == 0


def test_cpu_terms_refuse_odd_widths_and_family_inference():
    odd = KernelSpec("matmul", (1, 8, 64), 3, 8)
    with pytest.raises(UserError, match="cpu cost terms cover the bit-packed widths"):
        features([odd], "terms", family="cpu")
    assert family_of(None, [odd]) == "bitfusion"
    assert family_of("bitfusion-rtl", [KernelSpec("matmul", (1, 8, 64), 8, 8)]) == "bitfusion"
    assert family_of("vexriscv-mico", [KernelSpec("matmul", (1, 8, 64), 8, 8)]) == "cpu"
    with pytest.raises(UserError, match="unknown target family"):
        LatencyProxy("matmul", "terms", family="gpu").fit(*synthetic_dataset("matmul", 3), cv=False)


def test_bitfusion_terms_extrapolate_to_larger_shapes():
    specs, y = bf_data(ArrayConfig())
    small = [i for i, s in enumerate(specs) if s.macs < 100_000]
    large = [i for i, s in enumerate(specs) if s.macs >= 100_000]
    assert len(small) >= 45 and len(large) >= 27
    errs = {}
    for f in ("terms", "cbops"):
        p = LatencyProxy("matmul", f, "linear", family="bitfusion", lookup=False)
        p.fit([specs[i] for i in small], y[small], cv=False)
        errs[f] = float(np.mean(np.abs(p.predict([specs[i] for i in large]) / y[large] - 1)))
    assert errs["terms"] < 0.10 and errs["terms"] < errs["cbops"], errs


def test_mgbrt_is_monotone_in_the_counts():
    specs, y = synthetic_dataset("matmul", n_shapes=25, seed=3)
    p = LatencyProxy("matmul", "raw", "mgbrt", lookup=False).fit(specs, y, cv=False)
    line = [KernelSpec("matmul", (4, 64, k), 4, 4) for k in range(8, 2048, 40)]
    pred = p.predict(line)
    assert np.all(np.diff(pred) >= -1e-9)
    line_s = [KernelSpec("conv2d", (1, 16, 16, 16, 16, 3, st, 1, 1), 8, 8) for st in (1, 2, 3)]
    pc = LatencyProxy("conv2d", "raw", "mgbrt", lookup=False).fit(*synthetic_dataset("conv2d", 20, seed=4), cv=False)
    assert np.all(np.diff(pc.predict(line_s)) <= 1e-9)    # a larger stride never costs more


def test_auto_selection_records_its_choice_and_round_trips(tmp_path):
    specs, y = synthetic_dataset("matmul", n_shapes=12, seed=5, noise=0.01)
    data = TrainingSet("matmul", specs, list(y), unit="cycles", target="tgt")
    p = select(data, features="auto", model="linear")
    sel = p.cv_["selection"]
    cands = [c for c in sel["candidates"] if "mape" in c]
    assert len(sel["candidates"]) == 6 and sel["chosen"] == {"features": p.features, "model": "linear"}
    assert p.cv_["mape"] == min(c["mape"] for c in cands)
    path = p.to_json(tmp_path / "auto.json")
    q = load_proxies(path).proxies["matmul"]
    assert q.cv_["selection"]["chosen"] == sel["chosen"]
    np.testing.assert_allclose(q.predict(specs[:20]), p.predict(specs[:20]))


def test_cli_auto_and_transfer(tmp_path):
    db = tmp_path / "s.db"
    src_specs, src_y = bf_data(ArrayConfig())
    tgt_specs, tgt_y = bf_data(ArrayConfig(dram_bits=64, dram_latency=40))
    with Store(db) as st:
        for name, specs, y in (("bf-src", src_specs, src_y), ("bf-tgt", tgt_specs, tgt_y)):
            st.add_target(f"fp-{name}", name, {"test": True})
            st.put_many([Measurement(spec=s, fingerprint=f"fp-{name}", status="ok", unit="cycles", raw=[v],
                                     median=v, iqr=0.0, min=v, checksum_ok=True) for s, v in zip(specs, y.tolist())])
    run = CliRunner()
    r = run.invoke(fit_cmd, ["--store", db, "--target", "bf-src", "--op", "matmul", "--features", "auto", "--model",
                             "linear", "--family", "bitfusion", "-o", tmp_path / "src.json", "--json"])
    assert r.exit_code == 0, r.output
    m = json.loads(r.output)
    assert m["selection"]["family"] == "bitfusion" and m["features"] == m["selection"]["chosen"]["features"]
    for method in ("ratio", "residual", "cascade"):
        r = run.invoke(fit_cmd, ["--store", db, "--target", "bf-tgt", "--op", "matmul", "--features", "terms",
                                 "--family", "bitfusion", "--from", tmp_path / "src.json", "--transfer", method,
                                 "-o", tmp_path / f"t_{method}.json", "--json"])
        assert r.exit_code == 0, r.output
        t = json.loads(r.output)["transfer"]
        assert t["method"] == method and [c["n_shapes"] for c in t["curve"]][:3] == [1, 2, 3]
        assert all(c["mape"] >= 0 for c in t["curve"])
        # the file refits: source embedded, digest checked
        q = load_proxies(tmp_path / f"t_{method}.json").proxies["matmul"]
        assert q.transfer["method"] == method
    r = run.invoke(fit_cmd, ["--store", db, "--target", "bf-tgt", "--op", "matmul", "--from", tmp_path / "nope.json",
                             "-o", tmp_path / "x.json"])
    assert r.exit_code != 0 and "source proxy file" in str(r.exception or r.output)


def test_transfer_ratio_recovers_a_uniform_scale():
    specs, y = bf_data(ArrayConfig())
    src = LatencyProxy("matmul", "terms", "linear", family="bitfusion").fit(specs, y, cv=False)
    data = TrainingSet("matmul", specs, list(1.7 * y))
    curve = transfer_curve(src.to_entry().to_dict(), data, "ratio", [1, 3], features="terms", family="bitfusion")
    assert [c["n_shapes"] for c in curve] == [1, 3]
    assert all(c["mape"] < 1e-6 for c in curve)      # lookup: the source measured these kernels itself
