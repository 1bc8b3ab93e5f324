"""MiCo CSV import/export: layouts, round trips, one-sentence errors with file and line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness.errors import UserError
from harness.mico_csv import measurements_from_mico_csv, read_mico_csv, write_mico_csv
from harness.spec import KernelSpec
from harness.store import Measurement, Store


def one_sentence(msg: str) -> bool:
    return "\n" not in msg and msg.endswith(".") and ". " not in msg and "Traceback" not in msg


MM_ROWS = [
    (KernelSpec("matmul", (1, 64, 128), 8, 8), 12345.0),
    (KernelSpec("matmul", (16, 10, 33), 1, 2), 987.25),
    (KernelSpec("matmul", (4, 4, 4), 4, 1), 0.1 + 0.2),  # a float that needs full repr to round-trip
]
CONV_ROWS = [
    (KernelSpec("conv2d", (1, 3, 32, 32, 16, 3, 1, 0, 1), 8, 4), 1_000_000.0),
    (KernelSpec("conv2d", (1, 16, 9, 7, 8, 1, 2, 0, 1), 2, 2), 4321.5),
]


def test_matmul_roundtrip(tmp_path):
    p = write_mico_csv(MM_ROWS, "matmul", tmp_path / "mm.csv")
    assert p.read_text().splitlines()[0] == "N,M,K,QA,QW,Time"
    assert p.read_text().splitlines()[1] == "1,64,128,8,8,12345"
    assert read_mico_csv(p, "matmul") == MM_ROWS


def test_conv2d_roundtrip(tmp_path):
    p = write_mico_csv(CONV_ROWS, "conv2d", tmp_path / "conv.csv")
    lines = p.read_text().splitlines()
    assert lines[0] == "H,W,C,K,Ks,S,QA,QW,Time"
    assert lines[2] == "9,7,16,8,1,2,2,2,4321.5"
    assert read_mico_csv(p, "conv2d") == CONV_ROWS


def test_write_from_measurements_uses_median(tmp_path):
    s = KernelSpec("matmul", (2, 2, 2), 2, 2)
    m = Measurement(spec=s, fingerprint="fp", unit="cycles", raw=[10, 11, 30], median=11.0)
    p = write_mico_csv([m], "matmul", tmp_path / "m.csv")
    assert read_mico_csv(p, "matmul") == [(s, 11.0)]


def test_headers_case_whitespace_order_and_extra_columns(tmp_path):
    p = tmp_path / "mico.csv"
    p.write_text(" ks , h,W ,c,K,s,qa,Qw, time ,Comment\n"
                 "3, 8, 8, 4, 6, 1, 2, 8, 1500 ,warm\n"
                 "\n"
                 "1,5,5,4,6,2,1,1,10.5,\n")
    rows = read_mico_csv(p, "conv2d")
    assert rows == [(KernelSpec("conv2d", (1, 4, 8, 8, 6, 3, 1, 0, 1), 2, 8), 1500.0),
                    (KernelSpec("conv2d", (1, 4, 5, 5, 6, 1, 2, 0, 1), 1, 1), 10.5)]


def test_conv2d_optional_padding_column_is_honoured(tmp_path):
    p = tmp_path / "pad.csv"
    p.write_text("H,W,C,K,KS,S,P,QA,QW,Time\n8,8,4,4,3,1,1,8,8,100\n")
    (spec, t), = read_mico_csv(p, "conv2d")
    assert spec.dims["P"] == 1 and spec.out_hw == (8, 8)


def test_import_into_store(tmp_path):
    p = write_mico_csv(MM_ROWS, "matmul", tmp_path / "mm.csv")
    ms = measurements_from_mico_csv(p, "matmul", fingerprint="fp", unit="cycles")
    with Store(tmp_path / "s.sqlite") as st:
        st.add_target("fp", "imported-target", {})
        assert st.put_many(ms) == 3
        df = st.frame("imported-target", "matmul")
    assert sorted(df["value"]) == sorted(t for _, t in MM_ROWS)
    assert set(df["source"]) == {"imported"}


MM_HEADER = "N,M,K,QA,QW,Time\n"


@pytest.mark.parametrize("content,op,match,line", [
    ("", "matmul", "is empty", None),
    ("\n\n", "matmul", "is empty", None),
    (MM_HEADER, "matmul", "has a header but no rows", None),
    ("N,M,QA,QW,Time\n1,2,8,8,5\n", "matmul", "lacks column(s) K", 1),
    ("H,W,C,K,S,QA,QW,Time\n1,2,3,4,5,6,7,8\n", "conv2d", "lacks column(s) KS", 1),
    (MM_HEADER + "1,2,3,8,8,10\n1,2,abc,8,8,10\n", "matmul", "K='abc' is not an integer", 3),
    (MM_HEADER + "1,2,3.5,8,8,10\n", "matmul", "K='3.5' is not an integer", 2),
    (MM_HEADER + "1,2,3,8,8,10\n\n1,2,4,9,8,10\n", "matmul", "QA=9 is not a supported bit-width", 4),
    (MM_HEADER + "1,2,3,8,16,10\n", "matmul", "QW=16 is not a supported bit-width", 2),
    (MM_HEADER + "1,0,3,8,8,10\n", "matmul", "impossible", 2),
    ("H,W,C,K,KS,S,QA,QW,Time\n2,2,3,8,3,1,8,8,10\n", "conv2d", "kernel does not fit", 2),
    (MM_HEADER + "1,2,3,8,8,-4\n", "matmul", "Time=-4 is not a positive latency", 2),
    (MM_HEADER + "1,2,3,8,8,0\n", "matmul", "not a positive latency", 2),
    (MM_HEADER + "1,2,3,8,8,fast\n", "matmul", "Time='fast' is not a number", 2),
    (MM_HEADER + "1,2,3,8,8,nan\n", "matmul", "not a positive latency", 2),
    (MM_HEADER + "1,2,3,8\n", "matmul", "has 4 cells but the header has 6", 2),
    (MM_HEADER + "1,2,3,8,8,\n", "matmul", "Time='(empty)' is not a number", 2),
    (MM_HEADER + "1,2,3,8,8,10\n1,2,3,8,8,11\n", "matmul", "repeats the kernel", 3),
    ("N,M,K,K,QA,QW,Time\n1,2,3,3,8,8,1\n", "matmul", "appears twice", 1),
])
def test_malformed_csv_one_sentence_with_line(tmp_path, content, op, match, line):
    p = tmp_path / "x.csv"
    p.write_text(content)
    with pytest.raises(UserError) as e:
        read_mico_csv(p, op)
    msg = str(e.value)
    assert match in msg, msg
    assert str(p) in msg
    if line is not None:
        assert msg.startswith(f"line {line} of {p}: "), msg
    assert one_sentence(msg), msg


def test_missing_file_binary_file_and_unknown_op(tmp_path):
    with pytest.raises(UserError, match="does not exist") as e:
        read_mico_csv(tmp_path / "nope.csv", "matmul")
    assert one_sentence(str(e.value))
    b = tmp_path / "b.csv"
    b.write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(UserError) as e:
        read_mico_csv(b, "matmul")
    assert one_sentence(str(e.value))
    with pytest.raises(UserError, match="unknown op"):
        read_mico_csv(b, "gemm")
    with pytest.raises(UserError, match="directory"):
        read_mico_csv(tmp_path, "matmul")


def test_write_rejects_what_mico_cannot_express(tmp_path):
    out = tmp_path / "c.csv"
    padded = KernelSpec("conv2d", (1, 3, 8, 8, 4, 3, 1, 1, 1), 8, 8)
    with pytest.raises(UserError, match="only batch 1, no padding, groups 1") as e:
        write_mico_csv([(padded, 5.0)], "conv2d", out)
    assert one_sentence(str(e.value))
    with pytest.raises(UserError, match="one file per op"):
        write_mico_csv(MM_ROWS, "conv2d", out)
    with pytest.raises(UserError, match="no positive measured time"):
        write_mico_csv([(MM_ROWS[0][0], None)], "matmul", out)
    assert not out.exists()


def test_mico_csv_imports_nothing_from_proxy_or_mpq():
    code = ("import sys, harness.mico_csv; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('proxy', 'mpq')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
