"""Sweeps on a Dask cluster (harness/cluster.py): same rows as the local pool, one writer,
a worker killed mid-spec loses and duplicates nothing, a missing resource is one sentence.

One LocalCluster of 2 worker processes serves the module (joined by address, as a
lab's scheduler would be); the CLI test starts its own ``--cluster local:2``.
"""

from __future__ import annotations

import os
import signal
import sqlite3

import pytest

from harness import registry
from harness.errors import UserError
from harness.measure import StatsPolicy
from harness.store import Store
from harness.sweep import run_sweep
from tests.mico_cli import mico

distributed = pytest.importorskip("distributed")

HOST_POLICY = StatsPolicy(fixed_repeats=3, warmup=1)
VEX = "vexriscv-small"


def _vex_available() -> bool:
    return registry.get(VEX).available()[0]


needs_vex = pytest.mark.skipif(not _vex_available(), reason=f"{VEX} is not available here (make setup)")


@pytest.fixture(scope="module")
def cluster():
    """(scheduler address, client) of a LocalCluster with 2 single-thread worker processes."""
    lc = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  memory_limit=0)
    client = distributed.Client(lc)
    try:
        yield lc.scheduler_address, client
    finally:
        client.close()
        lc.close()


def _rows(path) -> dict[tuple, object]:
    with Store(path, readonly=True) as s:
        return {m.spec.key(): m for m in s.iter_measurements()}


def _raw_counts(path) -> list[tuple]:
    """Rows per key straight from SQLite: a duplicate would show as a count of 2."""
    con = sqlite3.connect(path)
    try:
        return con.execute("SELECT op, shape, qa, qw, COUNT(*) FROM measurements GROUP BY op, shape, qa, qw, mode,"
                           " out_bits HAVING COUNT(*) > 1").fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def vex_local(tmp_path_factory):
    """The local pool's rows of the vexriscv smoke plan (matmul): the reference for cycles."""
    db = tmp_path_factory.mktemp("vexlocal") / "local.db"
    s = run_sweep(VEX, "smoke", str(db), jobs=2, progress=False, ops=["matmul"])
    assert s.by_status == {"ok": s.total}
    return _rows(db)


def test_host_sweep_cli_local_cluster(tmp_path, cluster):
    """`mico sweep --cluster local:2`: every row of the host plan, checksum-verified, like the pool's."""
    local, clustered = tmp_path / "local.db", tmp_path / "cluster.db"
    run_sweep("host", "smoke", str(local), jobs=2, policy=HOST_POLICY, progress=False)
    r = mico("sweep", "--target", "host", "--plan", "smoke", "--store", clustered, "--cluster", "local:2",
             "--budget", "0.05", "--no-progress", timeout=300)
    assert "measured (ok" in r.stdout and "Traceback" not in r.stderr
    a, b = _rows(local), _rows(clustered)
    assert a and set(a) == set(b)
    for k, m in b.items():
        assert m.status == "ok" and m.checksum_ok is True, (k, m.error)
        assert (m.seed, m.unit, m.fingerprint) == (a[k].seed, a[k].unit, a[k].fingerprint)
    # resumed on another cluster: nothing is measured again
    r = mico("sweep", "--target", "host", "--plan", "smoke", "--store", clustered, "--cluster", cluster[0],
             "--no-progress", "--json", timeout=300)
    assert '"measured": 0' in r.stdout


@needs_vex
def test_vexriscv_sweep_same_cycles_as_local(tmp_path, cluster, vex_local):
    address, _ = cluster
    db = tmp_path / "cluster.db"
    s = run_sweep(VEX, "smoke", str(db), cluster=address, progress=False, ops=["matmul"])
    assert s.measured == s.total == len(vex_local) and s.by_status == {"ok": s.total}
    got = _rows(db)
    assert set(got) == set(vex_local)
    for k, m in got.items():
        ref = vex_local[k]
        assert m.checksum_ok is True
        assert (m.median, m.raw, m.fingerprint) == (ref.median, ref.raw, ref.fingerprint), k


@needs_vex
def test_worker_killed_mid_sweep(tmp_path, cluster, vex_local):
    """SIGKILL one worker process while it measures: its spec runs again elsewhere, one row each."""
    from harness.cluster import spec_token, task_token

    address, client = cluster
    db = tmp_path / "killed.db"
    seen: list[tuple] = []
    killed: dict = {}

    def on_row(m):
        seen.append(m.spec.key())
        if len(seen) == 3 and not killed:
            busy = {w: ks for w, ks in client.processing().items() if ks}
            assert busy, "no worker was measuring when the third row arrived"
            victim, keys = sorted(busy.items())[0]
            pid = client.run(os.getpid, workers=[victim])[victim]
            os.kill(pid, signal.SIGKILL)
            killed.update(worker=victim, tokens={task_token(k) for k in keys})

    s = run_sweep(VEX, "smoke", str(db), cluster=address, progress=False, ops=["matmul"], on_row=on_row)
    assert killed and killed["tokens"]
    assert len(seen) == len(set(seen)) == s.measured == s.total == len(vex_local)
    assert _raw_counts(db) == []
    got = _rows(db)
    assert set(got) == set(vex_local)
    by_token = {spec_token(m.spec): m for m in got.values()}
    for t in killed["tokens"]:          # the specs on the killed worker: stored once, measured right
        m = by_token[t]
        assert m.status == "ok" and m.median == vex_local[m.spec.key()].median
    assert all(m.status == "ok" and m.checksum_ok for m in got.values())
    client.wait_for_workers(2, timeout=120)     # the nanny restarts it for the next test


def test_missing_resource_is_one_sentence(tmp_path, cluster):
    address, _ = cluster
    r = mico("sweep", "--target", "host", "--plan", "smoke", "--store", tmp_path / "s.db", "--cluster", address,
             "--resource", "board:nowhere=1", "--no-progress", check=False, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr
    assert "no worker of the cluster" in r.stderr and "board:nowhere=1" in r.stderr
    # a board target needs its own resource, which no worker of this cluster offers
    with pytest.raises(UserError, match="board:litex-sim=1"):
        run_sweep("board:litex-sim", "smoke", str(tmp_path / "b.db"), cluster=address, progress=False)


@pytest.mark.parametrize("args, text", [
    (("--cluster", "lokal"), "is malformed"),
    (("--cluster", "local:1", "--resource", "gpu"), "resource 'gpu' is malformed"),
    (("--cluster", "local:2", "--jobs", "2"), "--jobs sizes the local process pool"),
])
def test_bad_cluster_options_cli(tmp_path, args, text):
    r = mico("sweep", "--target", "host", "--plan", "smoke", "--store", tmp_path / "s.db", *args, "--no-progress",
             check=False, timeout=60)
    assert r.returncode == 2 and text in r.stderr and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0
    assert not (tmp_path / "s.db").exists()


@pytest.mark.parametrize("text, why", [
    ("lokal", "is malformed"), ("local:0", "asks for 0 workers"), ("local:x", "is malformed"),
    ("tcp://nohost", "is malformed"), ("http://h:1", "is malformed"),
])
def test_parse_cluster_refuses(text, why):
    from harness.cluster import parse_cluster

    with pytest.raises(UserError, match=why):
        parse_cluster(text)


def test_parse_cluster():
    from harness.cluster import parse_cluster

    assert parse_cluster("local:3").workers == 3 and parse_cluster("local:3").address is None
    assert parse_cluster("local").workers == (os.cpu_count() or 1)
    assert parse_cluster(" tcp://10.0.0.2:8786 ").address == "tcp://10.0.0.2:8786"


@pytest.mark.parametrize("texts", [("gpu",), ("gpu=-1",), ("gpu=0",), ("=1",), ("gpu=nan",), ("a b=1",)])
def test_parse_resources_refuses(texts):
    from harness.commands import parse_resources

    with pytest.raises(UserError, match="is malformed"):
        parse_resources(texts)


def test_resources_need_a_cluster(tmp_path):
    with pytest.raises(UserError, match="only apply to a sweep on a cluster"):
        run_sweep("host", "smoke", str(tmp_path / "s.db"), resources={"gpu": 1}, progress=False)
    assert parse_resources_ok() == {"board:arty-a7": 1.0, "gpu": 2.0}


def parse_resources_ok():
    from harness.commands import parse_resources

    return parse_resources(["board:arty-a7=1", "gpu=2"])


def test_mico_worker_with_a_resource(tmp_path, monkeypatch):
    """`mico worker SCHEDULER --resource ...` joins a bare scheduler; specs that need the
    resource run there; when that worker leaves mid-sweep (SIGTERM), the sweep stops with one
    sentence instead of waiting forever, and keeps the rows it has."""
    import subprocess
    import sys

    from harness import cluster as hc
    from tests.conftest import ROOT

    lc = distributed.LocalCluster(n_workers=0, processes=True, dashboard_address=":0")
    client = distributed.Client(lc)
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "worker", lc.scheduler_address, "--resource",
                             "lab:bench=1", "--name", "w-test"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        client.wait_for_workers(1, timeout=120)
        (info,) = client.scheduler_info(n_workers=-1)["workers"].values()
        assert info["name"] == "w-test" and info["resources"] == {"lab:bench": 1.0}
        s = run_sweep("host", "smoke", str(tmp_path / "s.db"), cluster=lc.scheduler_address,
                      resources={"lab:bench": 1}, policy=HOST_POLICY, progress=False)
        assert s.by_status == {"ok": s.total} and s.total > 0
        assert all(m.checksum_ok for m in _rows(tmp_path / "s.db").values())

        monkeypatch.setattr(hc, "LIVENESS_S", 1.0)
        slow = StatsPolicy(rel_iqr=0.0, budget_s=0.3, min_repeats=3)    # ~0.3 s a spec
        with pytest.raises(UserError, match=r"no worker of the cluster .* lab:bench=1 .* left unmeasured"):
            run_sweep("host", "smoke", str(tmp_path / "t.db"), cluster=lc.scheduler_address,
                      resources={"lab:bench": 1}, policy=slow, progress=False,
                      on_row=lambda m: proc.send_signal(signal.SIGTERM))      # one per row: a worker
        # that is closing ignores the repeats and offers nothing any more
        assert 0 < len(_rows(tmp_path / "t.db")) < s.total
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        client.close()
        lc.close()
    assert proc.returncode == 128 + signal.SIGTERM and "Traceback" not in err, err
