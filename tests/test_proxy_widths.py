"""Bit-widths 2..8 (BitFusion) through specs, MiCo CSV import, the store and `mico fit`.

The CSVs are written here from the BitFusion cycle model (rtl_sims/bitfusion/model.py),
in MiCo's layouts, with every width 2..8 for activations and weights.
"""

from __future__ import annotations

import json

import pytest

from harness.errors import UserError
from harness.mico_csv import read_mico_csv
from harness.spec import KernelSpec, check_target_bits
from harness.store import Store
from kernels import reference
from mico_cli import mico
from rtl_sims.bitfusion.compiler import ArrayConfig, compile_kernel
from rtl_sims.bitfusion.model import predict

WIDTHS = tuple(range(2, 9))
MM_SHAPES = [(1, 64, 256), (4, 128, 512), (16, 32, 96), (2, 256, 64), (8, 16, 1024), (1, 200, 300)]
# MiCo's conv2d layout: H, W, C, K, KS, S (batch 1, no padding, groups 1)
CONV_SHAPES = [(16, 16, 16, 32, 3, 1), (8, 8, 64, 64, 3, 1), (32, 32, 3, 16, 3, 2), (14, 14, 32, 32, 1, 1),
               (10, 10, 8, 24, 5, 1)]


def bitfusion_cycles(op: str, shape, qa: int, qw: int) -> int:
    return predict(compile_kernel(ArrayConfig(), op, shape, qa, qw).plan).cycles


def write_bitfusion_csvs(tmp_path):
    mm = ["N,M,K,QA,QW,Time"]
    for shape in MM_SHAPES:
        for a in WIDTHS:
            for w in WIDTHS:
                mm.append(",".join(map(str, (*shape, a, w, bitfusion_cycles("matmul", shape, a, w)))))
    conv = ["H,W,C,K,Ks,S,QA,QW,Time"]
    for h, w_, c, k, ks, s in CONV_SHAPES:
        for a in WIDTHS:
            for w in WIDTHS:
                t = bitfusion_cycles("conv2d", (1, c, h, w_, k, ks, s, 0, 1), a, w)
                conv.append(",".join(map(str, (h, w_, c, k, ks, s, a, w, t))))
    (tmp_path / "bf_matmul.csv").write_text("\n".join(mm) + "\n")
    (tmp_path / "bf_conv2d.csv").write_text("\n".join(conv) + "\n")
    return tmp_path / "bf_matmul.csv", tmp_path / "bf_conv2d.csv"


def test_odd_widths_change_the_cycle_model_only_through_containers():
    # 3 bits run on 4-bit bricks: same cycles as 4; 5..7 on 8-bit bricks
    assert bitfusion_cycles("matmul", (4, 128, 512), 3, 8) == bitfusion_cycles("matmul", (4, 128, 512), 4, 8)
    assert bitfusion_cycles("matmul", (4, 128, 512), 5, 5) == bitfusion_cycles("matmul", (4, 128, 512), 8, 8)
    assert bitfusion_cycles("matmul", (4, 128, 512), 2, 2) < bitfusion_cycles("matmul", (4, 128, 512), 3, 3)


def test_mico_bitfusion_csv_with_every_width_imports_and_fits(tmp_path):
    mm_csv, conv_csv = write_bitfusion_csvs(tmp_path)
    rows = read_mico_csv(mm_csv, "matmul")
    assert {(s.qa, s.qw) for s, _ in rows} == {(a, w) for a in WIDTHS for w in WIDTHS}
    db = tmp_path / "s.db"
    for op, path in (("matmul", mm_csv), ("conv2d", conv_csv)):
        r = mico("import", path, "--target", "mico-bitfusion", "--op", op, "--store", db, "--unit", "cycles")
        assert "imported" in r.stdout
    with Store(db, readonly=True) as st:
        stored = st.rows("mico-bitfusion", None, status="ok")
    assert len(stored) == (len(MM_SHAPES) + len(CONV_SHAPES)) * 49
    assert {(m.spec.qa, m.spec.qw) for m in stored} == {(a, w) for a in WIDTHS for w in WIDTHS}
    fits = {}
    for features in ("cbops", "terms"):
        out = tmp_path / f"p_{features}.json"
        r = mico("fit", "--store", db, "--target", "mico-bitfusion", "--op", "all", "--features", features,
                 "-o", out, "--json")
        m = fits[features] = json.loads(r.stdout)
        assert set(m) == {"matmul", "conv2d"}
        for op in m:
            assert m[op]["n"] == 49 * (len(MM_SHAPES) if op == "matmul" else len(CONV_SHAPES))
            assert m[op]["mape"] is not None and m[op]["mape"] >= 0
        assert json.loads(out.read_text())["proxies"]["matmul"]["training"]["specs"][0]["qa"] in WIDTHS
    # widths 3 and 5..7 are priced as their containers, so cbops (max width) cannot
    # match a container model, while the BitFusion terms can
    for op in ("matmul", "conv2d"):
        assert fits["terms"][op]["mape"] < fits["cbops"][op]["mape"], (op, fits)


def test_reference_draws_odd_widths_in_range():
    a, w = reference.random_inputs("matmul", (3, 5, 64), 3, 7, seed=11)
    assert a.min() >= -4 and a.max() <= 3 and w.min() >= -64 and w.max() <= 63
    assert len(set(a.ravel().tolist())) == 8


def test_cpu_target_refuses_odd_widths_in_one_sentence():
    spec = KernelSpec("matmul", (4, 4, 4), 3, 8)
    with pytest.raises(UserError) as e:
        check_target_bits(spec, "host", (1, 2, 4, 8))
    assert str(e.value) == "qa=3 is not a supported bit-width of target host; use one of 1, 2, 4, 8."
    r = mico("measure", "--target", "vexriscv-full", "--op", "matmul", "--shape", "4,4,4", "--qa", "8", "--qw", "5",
             check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [
        "error: qw=5 is not a supported bit-width of target vexriscv-full; use one of 1, 2, 4, 8."]


def test_bitfusion_model_measures_odd_widths_when_offered():
    args = ("measure", "--target", "bitfusion-model", "--op", "matmul", "--shape", "4,128,512", "--qa", "3",
            "--qw", "5", "--json")
    r = mico(*args, check=False)
    assert r.returncode == 2 and "qa=3 is not a supported bit-width of target bitfusion-model" in r.stderr
    d = json.loads(mico(*args, "--param", "widths=all").stdout)
    assert d["median"] == bitfusion_cycles("matmul", (4, 128, 512), 3, 5)
    r = mico(*args, "--param", "widths=2,9", check=False)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "widths" in r.stderr


def test_bitfusion_rtl_runs_odd_widths_bit_exact():
    from harness import registry

    ok, why = registry.get("bitfusion-rtl").available()
    if not ok:
        pytest.skip(why)
    for op, shape, qa, qw in (("matmul", "3,17,40", 3, 5), ("conv2d", "1,5,7,7,6,3,1,1,1", 7, 3)):
        d = json.loads(mico("measure", "--target", "bitfusion-rtl", "--param", "widths=all", "--op", op, "--shape",
                            shape, "--qa", qa, "--qw", qw, "--json", timeout=1200).stdout)
        assert d["checksum_ok"] and d["status"] == "ok"      # outputs equal the integer reference


def test_targets_declare_their_widths():
    from harness import registry

    assert registry.get("host").capabilities().bits == (1, 2, 4, 8)
    assert registry.get("bitfusion-model").capabilities().bits == (1, 2, 4, 8)
    assert registry.get("bitfusion-model", widths="all").capabilities().bits == tuple(range(1, 9))
    assert registry.get("bitfusion-rtl", widths="2,3,5").capabilities().bits == (2, 3, 5)
