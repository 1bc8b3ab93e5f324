"""The emulated board (board:litex-sim): the real litex_sim model (built once,
cached by content hash), the firmware loaded by BIOS serialboot over a real
TCP byte stream, real `mico sweep` processes, and the fault proxy.
"""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from importlib.metadata import entry_points
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import boards.targets  # noqa: E402,F401  (registers board:)
from boards import emulator, lock  # noqa: E402
from boards.faults import FaultConfig, FaultProxy  # noqa: E402
from harness import registry, sweep  # noqa: E402
from harness.measure import measure  # noqa: E402
from harness.spec import KernelSpec  # noqa: E402
from harness.store import Store  # noqa: E402

pytestmark = pytest.mark.skipif(bool(emulator.missing()), reason=emulator.missing() or "")


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Environment for `mico` subprocesses: this checkout first, and the boards entry points
    (a throw-away dist-info) when the installed package does not declare them yet."""
    paths = [str(ROOT)]
    if not any(ep.name == "boards" for ep in entry_points(group="mico.commands")):
        shim = tmp_path_factory.mktemp("ep")
        d = shim / "mico_boards_entrypoints-0.dist-info"
        d.mkdir()
        (d / "METADATA").write_text("Metadata-Version: 2.1\nName: mico-boards-entrypoints\nVersion: 0\n")
        (d / "entry_points.txt").write_text("[mico.targets]\nboards = boards.targets\n\n"
                                            "[mico.commands]\nboards = boards.cli:boards\n")
        paths.append(str(shim))
        sys.path.append(str(shim))      # spawned sweep workers inherit sys.path
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join(paths + [p for p in e.get("PYTHONPATH", "").split(os.pathsep) if p])
    e["MICO_LOCK_DIR"] = str(tmp_path_factory.mktemp("locks"))
    os.environ["MICO_LOCK_DIR"] = e["MICO_LOCK_DIR"]
    return e


MICO = [sys.executable, "-c", "import sys; from harness.cli import main; sys.argv[0] = 'mico'; sys.exit(main())"]


def mico(env, *args, timeout=600):
    return subprocess.run([*MICO, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=str(ROOT))


def rows(db) -> dict:
    with Store(db, readonly=True) as st:
        return {(m.spec.op, m.spec.shape, m.spec.qa, m.spec.qw): m for m in st.iter_measurements()}


@pytest.fixture(scope="module")
def soc(env):
    t = registry.get("board:litex-sim")
    return t.build()      # cached by content hash after the first run


@pytest.fixture(scope="module")
def clean(env, soc, tmp_path_factory):
    """A smoke sweep on the emulated board; while it runs, a second sweep on the same port is refused."""
    d = tmp_path_factory.mktemp("clean")
    url = f"socket://127.0.0.1:{free_port()}"
    first = subprocess.Popen([*MICO, "sweep", "--target", "board:litex-sim", "--plan", "smoke", "--store",
                              d / "a.db", "--param", f"url={url}", "--no-progress"], env=env, cwd=str(ROOT),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while lock.holder(url) is None and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.05)
    second = mico(env, "sweep", "--target", "board:litex-sim", "--plan", "smoke", "--store", d / "b.db",
                  "--param", f"url={url}", "--no-progress", timeout=300)
    out, err = first.communicate(timeout=600)
    return {"url": url, "dir": d, "first": (first.returncode, out, err), "second": second}


def test_second_sweep_on_the_same_port_is_refused(clean):
    res = clean["second"]
    assert res.returncode == 2, res.stdout + res.stderr
    lines = [l for l in res.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith(f"error: board port {clean['url']} is in use by process ")
    assert "wait for that sweep to finish" in lines[0]


def test_smoke_sweep_is_checksum_verified_and_repeats_exactly(clean, env):
    rc, out, err = clean["first"]
    assert rc == 0, out + err
    assert "64 measured (ok 64)" in out
    a = rows(clean["dir"] / "a.db")
    assert len(a) == 64 and all(m.status == "ok" and m.checksum_ok for m in a.values())
    assert all(m.raw[0] == m.raw[1] > 0 and m.unit == "cycles" for m in a.values())
    res = mico(env, "sweep", "--target", "board:litex-sim", "--plan", "smoke", "--store", clean["dir"] / "c.db",
               "--param", f"url={clean['url']}", "--no-progress")
    assert res.returncode == 0, res.stdout + res.stderr
    c = rows(clean["dir"] / "c.db")
    assert {k: m.raw for k, m in c.items()} == {k: m.raw for k, m in a.items()}
    assert next(iter(a.values())).fingerprint == next(iter(c.values())).fingerprint


def test_fault_injection_stores_no_wrong_value(clean, env, tmp_path):
    """>= 1 % corrupted bytes both ways (1.2 % asked), a few dropped and duplicated, the link cut every 8 s,
    on the firmware's protocol (the BIOS serial boot is spared: see FaultConfig.spare_boot)."""
    sim_port = free_port()
    cfg = FaultConfig(corrupt=0.012, drop=0.0005, duplicate=0.0005, cut_every_s=8, seed=3, spare_boot=True)
    with FaultProxy(("127.0.0.1", sim_port), cfg) as px:
        s = sweep.run_sweep("board:litex-sim", "smoke", str(tmp_path / "f.db"), progress=False,
                            params={"url": f"socket://127.0.0.1:{px.port}", "sim_port": sim_port,
                                    "reply_timeout_s": 2})
    lock.release_all()
    assert s.by_status == {"ok": 64}, s.by_status
    a = rows(clean["dir"] / "a.db")
    f = rows(tmp_path / "f.db")
    assert {k: m.raw for k, m in f.items()} == {k: m.raw for k, m in a.items()}   # zero wrong values
    assert all(m.checksum_ok for m in f.values())
    assert px.stats.corrupted / px.stats.armed_bytes >= 0.01 and px.stats.cuts >= 1
    assert sum(m.retries for m in f.values()) > 0
    assert sum(m.reconnects for m in f.values()) >= 1


def test_hung_board_is_reset_reloaded_and_counted(soc, env):
    t = registry.get("board:litex-sim", url=f"socket://127.0.0.1:{free_port()}", timeout_s=3, reply_timeout_s=1)
    s = t.open(soc)
    try:
        a = measure(s, KernelSpec("matmul", (3, 5, 64), 4, 4), soc.fingerprint, True)
        assert a.status == "ok" and a.reconnects == 0
        pid = s.link.emulator.proc.pid
        os.kill(pid, signal.SIGSTOP)       # the board hangs
        b = measure(s, KernelSpec("matmul", (3, 5, 64), 2, 8), soc.fingerprint, True)
        assert b.status == "ok" and b.checksum_ok and b.reconnects >= 1
        assert s.link.emulator.proc.pid != pid and s.boots == 2
    finally:
        s.close()
        lock.release_all()


def test_dead_board_is_quarantined_and_the_sweep_carries_on(env, tmp_path):
    sim_port = free_port()
    db = tmp_path / "q.db"
    px = FaultProxy(("127.0.0.1", sim_port)).start()

    def unplug():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                with Store(db, readonly=True) as st:
                    if st.count() >= 5:
                        px.stop()       # the cable is gone for good
                        return
            except Exception:  # noqa: BLE001 -- the store is being created
                pass
            time.sleep(0.05)

    th = threading.Thread(target=unplug, daemon=True)
    th.start()
    try:
        s = sweep.run_sweep("board:litex-sim", "smoke", str(db), progress=False,
                            params={"url": f"socket://127.0.0.1:{px.port}", "sim_port": sim_port,
                                    "timeout_s": 2, "reply_timeout_s": 1, "boot_timeout_s": 20,
                                    "quarantine_after": 1})
    finally:
        px.stop()
        lock.release_all()
    assert s.measured == 64
    assert s.by_status.get("ok", 0) >= 5 and s.by_status.get("crash", 0) >= 50, s.by_status
    r = rows(db)
    crashes = [m for m in r.values() if m.status == "crash"]
    assert sum("quarantined" in (m.error or "") for m in crashes) >= len(crashes) - 2
    assert all(m.checksum_ok for m in r.values() if m.status == "ok")


def test_boards_cli_list_and_probe(env, soc):
    import json

    res = mico(env, "boards", "list", "--json")
    assert res.returncode == 0, res.stderr
    listed = {r["name"]: r for r in json.loads(res.stdout)}
    assert listed["litex-sim"]["available"] is True
    assert listed["arty-a7"]["available"] is False and "csr.h" in listed["arty-a7"]["reason"]
    res = mico(env, "boards", "probe", "litex-sim", "--param", f"url=socket://127.0.0.1:{free_port()}", "--json")
    assert res.returncode == 0, res.stderr
    d = json.loads(res.stdout)
    assert d["hello"]["target_id"].startswith("board:litex-sim img=") and d["hello"]["timer_unit"] == "cycles"
    assert d["hello"]["isa"] == "rv32im" and len(d["hello"]["pairs"]) == 16
    res = mico(env, "boards", "probe", "arty-a7")
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "not available" in res.stderr


def test_flash_command_writes_the_firmware_image(env, soc, tmp_path):
    """A profile whose firmware goes to flash (here the 'flash' is a copy into a file),
    built against a LiteX build folder (the emulated SoC's: its generated headers)."""
    flashed = tmp_path / "flash.bin"
    prof = tmp_path / "fake-board.toml"
    prof.write_text(f'''name = "fake-board"
[soc]
kind = "litex"
build_dir = "{soc.artifacts['soc_dir']}"
[serial]
url = "socket://127.0.0.1:{free_port()}"
[load]
method = "flash"
flash_command = ["cp", "{{firmware_bin}}", "{flashed}"]
''')
    res = mico(env, "boards", "flash", str(prof), "--dry-run")
    assert res.returncode == 0 and res.stdout.startswith("cp ") and str(flashed) in res.stdout, res.stderr
    res = mico(env, "boards", "flash", str(prof))
    assert res.returncode == 0, res.stderr
    img = Path(res.stdout.split()[1]) if res.stdout.startswith("flashed") else None
    data = flashed.read_bytes()
    assert len(data) > 4096 and data[:4] != b"\0\0\0\0"
    if img is not None:
        assert img.read_bytes() == data
