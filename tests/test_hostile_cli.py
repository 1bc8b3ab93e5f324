"""The CLI against careless and hostile input (issue 9): every bad option or
parameter is one sentence on stderr and exit 2, never a traceback; a huge
random plan starts measuring at once in bounded memory.  Real `mico` processes.
"""

import json
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from mico_cli import mico

ROOT = Path(__file__).resolve().parents[1]


def one_line_error(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [l for l in r.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


SWEEP = ["sweep", "--target", "host", "--plan", "smoke", "--store", "/tmp/mico-hostile-unused.db"]
MEASURE = ["measure", "--op", "matmul", "--shape", "4,4,4", "--qa", "8", "--qw", "8"]


@pytest.mark.parametrize("args,needle", [
    ([*SWEEP, "--budget", "-1"], "--budget"),
    ([*SWEEP, "--budget", "nan"], "not a finite number"),
    ([*SWEEP, "--budget", "inf"], "not a finite number"),
    ([*SWEEP, "--jobs", "0"], "--jobs"),
    ([*SWEEP, "--jobs", "-3"], "--jobs"),
    ([*SWEEP, "--jobs", "many"], "--jobs"),
    ([*MEASURE, "--repeats", "0"], "--repeats"),
    (["boards", "proxy", "--to", "127.0.0.1:9", "--drop", "5", "--corrupt", "-1"], "--drop"),
    (["boards", "proxy", "--to", "127.0.0.1:9", "--corrupt", "-1"], "--corrupt"),
    (["boards", "proxy", "--to", "127.0.0.1:9", "--duplicate", "nan"], "--duplicate"),
    (["boards", "proxy", "--to", "127.0.0.1:9", "--delay-ms", "-5"], "--delay-ms"),
    (["boards", "build-emulator", "--main-ram-size", "zzz"], "'zzz' is not an integer"),
    (["boards", "build-emulator", "--main-ram-size", "16"], "--main-ram-size"),
    (["boards", "build-emulator", "--main-ram-size", "0x100000000000"], "--main-ram-size"),
])
def test_out_of_range_options_are_one_sentence(args, needle):
    assert needle in one_line_error(mico(*args, check=False))


@pytest.mark.parametrize("args,needle", [
    ([*MEASURE, "--param", "colour=blue"], "target host has no parameter 'colour'; it takes none."),
    ([*SWEEP, "--param", "x=1"], "target host has no parameter 'x'; it takes none."),
    ([*MEASURE, "--param", "novalue"], "'novalue' must look like KEY=VALUE"),
    ([*MEASURE, "--param", "=3"], "must look like KEY=VALUE"),
    ([*MEASURE, "--target", "vexriscv-full", "--param", "mem_kib=1", "--param", "mem_kib=2"], "given twice"),
    ([*MEASURE, "--target", "vexriscv-full", "--param", "mem_kib=lots"], "mem_kib='lots' must be an integer"),
    ([*MEASURE, "--target", "vexriscv-full", "--param", "mem_kib=16"], "mem_kib=16 is out of range"),
    ([*MEASURE, "--target", "vexriscv-full", "--param", "timeout_s=nan"], "must be a finite number"),
    ([*MEASURE, "--target", "vexriscv-full", "--param", "colour=blue"],
     "no parameter 'colour'; it takes cycle_limit, mem_kib, timeout_s, wait_states."),
    ([*MEASURE, "--target", "bitfusion-model", "--param", "rows=3"], "powers of two"),
    ([*MEASURE, "--target", "bitfusion-model", "--param", "dram_mib=0"], "dram_mib=0 is out of range"),
    ([*MEASURE, "--target", "board:litex-sim", "--param", "sim_port=70000"], "sim_port=70000 is out of range"),
    ([*MEASURE, "--target", "board:litex-sim", "--param", "reply_timeout_s=-1"], "must be positive"),
    ([*MEASURE, "--target", "board:litex-sim", "--param", "banana=1"], "no parameter 'banana'"),
    (["boards", "probe", "litex-sim", "--param", "quarantine_after=0"], "quarantine_after=0 must be at least 1"),
])
def test_bad_params_are_one_sentence_on_every_target(args, needle):
    assert needle in one_line_error(mico(*args, check=False))


def test_plan_is_checked_before_the_target(tmp_path):
    """A malformed plan is reported as such even for a target that could not even be built here."""
    r = mico("sweep", "--target", "board:arty-a7", "--plan", "random:many", "--store", tmp_path / "s.db", check=False)
    assert "plan 'random:many' is malformed" in one_line_error(r)
    assert not (tmp_path / "s.db").exists()


def test_targets_json_lists_each_targets_params_and_capabilities():
    rows = {r["name"]: r for r in json.loads(mico("targets", "--json").stdout)}
    assert rows["host"]["params"] == []
    assert rows["host"]["capabilities"]["model_images"] is True
    mem = {p["name"]: p for p in rows["vexriscv-full"]["params"]}["mem_kib"]
    assert mem["default"] == 4096 and mem["type"] == "int" and mem["in_fingerprint"] is True and mem["help"]
    assert rows["bitfusion-rtl"]["capabilities"]["ir_models"] is True
    assert not rows["bitfusion-model"]["capabilities"]["ir_models"]
    board = rows["board:<name>"]
    assert {p["name"] for p in board["params"]} >= {"url", "sim_port", "timeout_s"}
    assert all(p["help"] for r in rows.values() for p in r["params"])


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_huge_random_plan_starts_at_once_in_bounded_memory(tmp_path):
    """random:100000000 (1.6e9 specs): the first rows are stored within seconds and the
    coordinator's memory stays flat while it streams; SIGTERM then ends it."""
    import shutil
    import sys

    db = tmp_path / "big.db"
    exe = shutil.which("mico", path=str(Path(sys.executable).parent))
    p = subprocess.Popen([exe, "sweep", "--target", "host", "--plan", "random:100000000", "--store", str(db),
                          "--jobs", "2", "--budget", "0.01", "--json"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        def stored() -> int:
            try:
                with sqlite3.connect(db) as con:
                    return con.execute("SELECT COUNT(*) FROM measurements").fetchone()[0]
            except sqlite3.Error:
                return 0

        deadline = time.monotonic() + 120
        while stored() < 20 and time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.1)
        assert p.poll() is None and stored() >= 20, p.stderr.read() if p.poll() is not None else "no rows"
        rss0, n0 = _rss_kib(p.pid), stored()
        while stored() < n0 + 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        rss1 = _rss_kib(p.pid)
        assert stored() >= n0 + 200
        assert rss1 < 400 * 1024 and rss1 - rss0 < 32 * 1024, (rss0, rss1)
    finally:
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=30)
    assert p.returncode == 143 and "Traceback" not in err, err


def test_huge_plan_is_sized_and_started_without_drawing_it():
    from harness.plans import parse_plan

    plan = parse_plan("random:100000000")
    assert plan.size() == 100_000_000 * 16 and plan.size(ops=["conv2d"]) == 50_000_000 * 16
    first = list(zip(range(40), plan.specs()))
    assert len(first) == 40 and first[0][1].op == "matmul"
