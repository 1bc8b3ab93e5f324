"""Faults on the Verilator targets: a simulator killed mid-sweep, a hung one, a cycle limit.

Each becomes an error record (with the exit state and the stderr tail), the worker
re-boots the target and the sweep goes on.  Real simulators, real signals.
"""

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from harness import registry, sweep
from harness.errors import CrashError, TimeoutMeasureError
from harness.measure import StatsPolicy, measure
from harness.plans import expand
from harness.spec import KernelSpec
from harness.store import Store

TARGET = "vexriscv-full"


@pytest.fixture(scope="module")
def full():
    t = registry.get(TARGET)
    ok, why = t.available()
    if not ok:
        pytest.skip(why)
    return t, t.build()


def _sim_pids(sim_path: str, not_child_of: int | None = None) -> list[int]:
    """PIDs of running simulators started from sim_path (optionally excluding our own children)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv0 = (d / "cmdline").read_bytes().split(b"\0")[0].decode()
            if argv0 != sim_path:
                continue
            stat = (d / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            state = stat.rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError, ValueError):
            continue
        if state == "Z" or (not_child_of is not None and ppid == not_child_of):
            continue
        out.append(int(d.name))
    return out


@pytest.mark.slow
def test_simulator_killed_mid_sweep_is_one_crash_record_and_the_sweep_completes(full, tmp_path):
    t, b = full
    db = tmp_path / "s.db"
    plan = "smoke"
    total = len(expand(plan))
    sim = b.artifacts["simulator"]
    killed: list[int] = []

    def killer():
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not killed:
            pids = _sim_pids(sim, not_child_of=os.getpid())   # the workers' simulator, not the probe's
            if pids and db.exists():
                try:
                    with Store(db, readonly=True) as st:
                        n = st.count()
                except Exception:  # noqa: BLE001 -- the store is being created
                    n = 0
                if n >= 6:
                    os.kill(pids[0], signal.SIGKILL)
                    killed.append(pids[0])
                    return
            time.sleep(0.01)

    th = threading.Thread(target=killer, daemon=True)
    th.start()
    summary = sweep.run_sweep(TARGET, plan, str(db), jobs=1, progress=False)
    th.join(5)
    assert killed, "the sweep finished before the simulator could be killed"
    assert summary.measured == total
    with Store(db, readonly=True) as st:
        rows = list(st.iter_measurements())
    assert len(rows) == total
    bad = [m for m in rows if m.status != "ok"]
    assert len(bad) == 1, [(m.spec, m.status, m.error) for m in bad]
    assert bad[0].status == "crash" and "SIGKILL" in bad[0].error, bad[0].error
    assert all(m.checksum_ok for m in rows if m.status == "ok")


def test_hung_simulator_is_killed_at_the_wall_clock_bound_and_the_worker_reboots(full):
    """A stopped simulator never answers: the request times out after timeout_s, the worker
    kills the process (group) and the next spec boots a fresh one."""
    _, b = full
    params = {"timeout_s": 2}
    t = registry.get(TARGET, **params)
    spec = KernelSpec("matmul", (1, 8, 40), 8, 8).to_dict()
    pol = StatsPolicy()
    try:
        m1 = sweep.measure_one(TARGET, params, b.to_dict(), spec, pol, True, t.kernel_timeout)
        assert m1.status == "ok"
        proc = sweep._worker["session"].transport.proc
        os.kill(proc.pid, signal.SIGSTOP)
        t0 = time.monotonic()
        m2 = sweep.measure_one(TARGET, params, b.to_dict(), spec, pol, True, t.kernel_timeout)
        waited = time.monotonic() - t0
        assert m2.status == "timeout" and "no reply within 2 s" in m2.error, m2.error
        assert 1.5 < waited < 15
        assert proc.poll() is not None, "the hung simulator is still alive"
        m3 = sweep.measure_one(TARGET, params, b.to_dict(), spec, pol, True, t.kernel_timeout)
        assert m3.status == "ok" and m3.raw == m1.raw
        assert sweep._worker["session"].transport.proc.pid != proc.pid
    finally:
        sweep._drop_session()


def test_cycle_limit_stops_a_runaway_kernel_with_status_124(full):
    _, b = full
    t = registry.get(TARGET, cycle_limit=200000)
    b = t.build()
    s = t.open(b)
    try:
        assert measure(s, KernelSpec("matmul", (1, 8, 40), 8, 8), b.fingerprint, True).status == "ok"
        with pytest.raises(CrashError) as ei:
            s.run_kernel(KernelSpec("matmul", (1, 64, 256), 8, 8), 1, 0, 2)
        assert "exited with status 124" in ei.value.detail and "cycle limit reached" in ei.value.detail
    finally:
        s.transport.close(timeout=0.5)
    with t.open(b) as s2:   # a fresh boot works
        assert measure(s2, KernelSpec("matmul", (1, 8, 40), 8, 8), b.fingerprint, True).status == "ok"


def test_simulator_exits_cleanly_on_eof_and_on_bye(full):
    t, b = full
    s = t.open(b)
    s.transport.close()          # stdin closed without BYE: EOF ends the simulation
    assert s.transport.proc.returncode == 0
    s = t.open(b)
    s.close()                    # BYE: the firmware exits with 0
    assert s.transport.proc.returncode == 0


def test_request_to_a_dead_simulator_is_a_crash_not_a_hang(full):
    t, b = full
    s = t.open(b)
    try:
        os.kill(s.transport.pid, signal.SIGKILL)
        s.transport.proc.wait(5)
        t0 = time.monotonic()
        with pytest.raises((CrashError, TimeoutMeasureError)) as ei:
            s.run_kernel(KernelSpec("matmul", (1, 8, 40), 8, 8), 1, 0, 2)
        assert time.monotonic() - t0 < 5
        assert "SIGKILL" in ei.value.detail
    finally:
        s.transport.close(timeout=0.5)
