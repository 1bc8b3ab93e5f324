"""The measurement CLI end to end on the host target, including its failure paths."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from mico_cli import mico
from harness.plans import expand


def test_measure_json_fields():
    r = mico("measure", "--target", "host", "--op", "conv2d", "--shape", "1,3,9,9,5,3,2,1",
             "--qa", "2", "--qw", "4", "--json")
    d = json.loads(r.stdout)
    for key in ("target", "op", "shape", "qa", "qw", "value", "unit", "checksum_ok"):
        assert key in d
    assert d["checksum_ok"] is True and d["unit"] == "ns" and d["value"] > 0
    assert d["shape"] == [1, 3, 9, 9, 5, 3, 2, 1, 1]


def test_measure_fixed_repeats():
    d = json.loads(mico("measure", "--op", "matmul", "--shape", "3,17,33", "--qa", "1", "--qw", "8",
                        "--repeats", "7", "--json").stdout)
    assert d["repeats"] == 7 and d["checksum_ok"]


@pytest.mark.parametrize("args,needle", [
    (["measure", "--op", "matmul", "--shape", "4,4,4", "--qa", "3", "--qw", "8"], "qa=3 is not a supported bit-width"),
    (["measure", "--op", "matmul", "--shape", "4,-4,4", "--qa", "8", "--qw", "8"], "impossible"),
    (["measure", "--op", "conv2d", "--shape", "1,3,4,4,8,7,1,0", "--qa", "8", "--qw", "8"], "does not fit the padded input"),
    (["measure", "--op", "conv2d", "--shape", "1,3,8,8,8,3,1,1,2", "--qa", "8", "--qw", "8"], "groups"),
    (["measure", "--op", "matmul", "--shape", "4,x,4", "--qa", "8", "--qw", "8"], "not a comma-separated list"),
    (["measure", "--target", "nosuch", "--op", "matmul", "--shape", "4,4,4", "--qa", "8", "--qw", "8"], "unknown target"),
    (["sweep", "--target", "host", "--plan", "random:x", "--store", "/tmp/unused.db"], "malformed"),
    (["sweep", "--target", "host", "--plan", "smoke", "--store", "/proc/mico/store.db"], "store"),
    (["sweep", "--target", "host", "--plan", "smoke", "--store", "/dev/null/store.db"], "store"),
    (["export", "--store", "/nonexistent/x.db", "--target", "host", "--op", "matmul", "-o", "/tmp/x.csv"], "does not exist"),
])
def test_user_errors_are_one_sentence(args, needle):
    r = mico(*args, check=False)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    lines = [l for l in r.stderr.strip().splitlines() if l]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert needle in lines[0]


def test_unwritable_store_path(tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    os.chmod(d, 0o500)
    try:
        if os.access(d, os.W_OK):
            pytest.skip("running with permissions that ignore mode bits (root)")
        r = mico("sweep", "--target", "host", "--plan", "smoke", "--store", d / "s.db", check=False)
        assert r.returncode == 2 and "Traceback" not in r.stderr and "writ" in r.stderr
    finally:
        os.chmod(d, 0o700)


def test_store_that_is_not_sqlite(tmp_path):
    p = tmp_path / "junk.db"
    p.write_bytes(b"this is not a database" * 100)
    r = mico("sweep", "--target", "host", "--plan", "smoke", "--store", p, check=False)
    assert r.returncode == 2 and "not a mico-hil SQLite store" in r.stderr and "Traceback" not in r.stderr


def _rows(db):
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT op, shape, qa, qw, status FROM measurements").fetchall()
    finally:
        con.close()


def test_sweep_smoke_then_resume_and_export(tmp_path):
    db = tmp_path / "s.db"
    r = mico("sweep", "--target", "host", "--plan", "smoke", "--store", db, "--jobs", "2", "--json", "--no-progress")
    s = json.loads(r.stdout)
    n = len(expand("smoke"))
    assert s["total"] == n and s["measured"] == n and s["by_status"] == {"ok": n}
    r2 = json.loads(mico("sweep", "--target", "host", "--plan", "smoke", "--store", db, "--json", "--no-progress").stdout)
    assert r2["measured"] == 0 and r2["skipped_existing"] == n
    out = tmp_path / "mm.csv"
    mico("export", "--store", db, "--target", "host", "--op", "matmul", "--format", "mico-csv", "-o", out)
    lines = out.read_text().strip().splitlines()
    assert lines[0].replace(" ", "").lower() == "n,m,k,qa,qw,time" and len(lines) == 1 + n // 2
    mico("export", "--store", db, "--target", "host", "--op", "conv2d", "--format", "parquet", "-o", tmp_path / "c.parquet")
    import pandas as pd
    assert len(pd.read_parquet(tmp_path / "c.parquet")) == n // 2


def test_sigkill_mid_sweep_then_resume(tmp_path):
    """Kill the coordinator with SIGKILL mid-run; the re-run leaves no duplicate and no gap."""
    db = tmp_path / "k.db"
    plan = "random:10:3"
    args = ["sweep", "--target", "host", "--plan", plan, "--store", str(db), "--jobs", "2",
            "--budget", "0.05", "--no-progress"]
    exe = os.path.join(os.path.dirname(sys.executable), "mico")
    p = subprocess.Popen([exe, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    total = len(expand(plan))
    deadline = time.monotonic() + 120
    n = 0
    while time.monotonic() < deadline and p.poll() is None:
        if db.exists():
            try:
                n = len(_rows(db))
            except sqlite3.OperationalError:
                n = 0
            if n >= 20:
                break
        time.sleep(0.02)
    assert p.poll() is None, "the sweep finished before it could be killed; make the plan larger"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    partial = _rows(db)
    assert 20 <= len(partial) < total
    r = json.loads(mico(*args, "--json").stdout)
    rows = _rows(db)
    keys = [r_[:4] for r_ in rows]
    assert len(keys) == len(set(keys)) == total
    assert {k for k in keys} == {s.key()[:4] for s in expand(plan)}
    assert all(r_[4] == "ok" for r_ in rows)
    assert r["skipped_existing"] == len(partial)


def test_import_malformed_mico_csv_is_one_sentence_and_leaves_store_intact(tmp_path):
    db = tmp_path / "s.db"
    good = tmp_path / "good.csv"
    good.write_text("N,M,K,QA,QW,Time\n1,16,64,8,8,1000\n1,16,64,4,4,600\n")
    mico("import", good, "--target", "mico-board", "--op", "matmul", "--store", db)
    bad = tmp_path / "bad.csv"
    bad.write_text("N,M,K,QA,QW,Time\n1,32,64,8,8,1000\n1,32,64,9,8,900\n")
    r = mico("import", bad, "--target", "mico-board", "--op", "matmul", "--store", db, check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = [l for l in r.stderr.strip().splitlines() if l]
    assert len(lines) == 1 and "line 3" in lines[0] and "QA=9" in lines[0], r.stderr
    # all or nothing: the good row of the bad file was not stored either
    assert sorted(r_[:4] for r_ in _rows(db)) == [("matmul", "1,16,64", 4, 4), ("matmul", "1,16,64", 8, 8)]
    r = mico("import", tmp_path / "missing.csv", "--target", "x", "--op", "matmul", "--store", db, check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    conv = tmp_path / "conv.csv"
    conv.write_text("H,W,C,K,Ks,S,QA,QW,Time\n8,8,3,16,3,1,8,8,5000\n8,8,3,16,3,1,2,2,1500\n")
    mico("import", conv, "--target", "mico-board", "--op", "conv2d", "--store", db)
    from harness.store import Store
    df = Store(db, readonly=True).frame("mico-board", "conv2d")
    assert sorted(df["shape"].unique()) == ["1,3,8,8,16,3,1,0,1"] and len(df) == 2
