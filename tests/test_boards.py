"""boards/ without the emulator: profiles, the port lock, SFL framing, the serial
transport over a real pseudo-terminal and a real TCP stream (to the host bench
firmware), and the board client on a damaged byte stream (the fault proxy).
"""

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from harness.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from boards import lock, profiles, sfl  # noqa: E402
from boards.client import BoardClient  # noqa: E402
from boards.faults import FaultConfig, FaultProxy  # noqa: E402
from boards.link import BoardLink  # noqa: E402


@pytest.fixture(autouse=True)
def _locks(tmp_path, monkeypatch):
    monkeypatch.setenv("MICO_LOCK_DIR", str(tmp_path / "locks"))
    yield
    lock.release_all()


# ---- profiles ---------------------------------------------------------------------------------
def test_builtin_profiles_parse():
    profs = profiles.all_profiles()
    for name in ("litex-sim", "arty-a7", "icebreaker"):
        assert isinstance(profs[name], profiles.Profile), profs[name]
    sim = profs["litex-sim"]
    assert sim.emulated and sim.url.startswith("socket://127.0.0.1:") and sim.load == "serialboot"
    assert profs["arty-a7"].clock_hz == 100_000_000 and not profs["arty-a7"].deterministic


@pytest.mark.parametrize("body, words", [
    ('name = "x"\n[soc]\nkind = "quartus"\n', "soc.kind"),
    ('name = "x"\n[soc]\nkind = "litex-sim"\n[serial]\nurl = "socket://10.0.0.5:1234"\n', "127.0.0.1"),
    ('name = "x"\n[serial]\nspeed = 9600\n', "unknown key serial.speed"),
    ('name = "x"\n[load]\nmethod = "flash"\n', "flash_command"),
    ('name = "x"\n[soc]\nkind = "litex"\n', "build_dir"),
    ('name = "x"\n[soc\n', "cannot read"),
])
def test_bad_profiles_are_one_sentence(tmp_path, body, words):
    f = tmp_path / "x.toml"
    f.write_text(body)
    with pytest.raises(UserError) as e:
        profiles.parse(f)
    msg = str(e.value)
    assert words in msg and msg.count("\n") == 0


def test_profile_search_path_and_unknown_board(tmp_path, monkeypatch):
    (tmp_path / "mine.toml").write_text('name = "mine"\n[soc]\nkind = "litex-sim"\n'
                                         '[serial]\nurl = "socket://127.0.0.1:23000"\n')
    monkeypatch.setenv(profiles.PATH_ENV, str(tmp_path))
    assert profiles.find("mine").tcp_port() == 23000
    with pytest.raises(UserError, match="no board profile 'nope'; known: .*litex-sim"):
        profiles.find("nope")


# ---- the port lock -------------------------------------------------------------------------------
HOLD = """
import sys, time
sys.path.insert(0, {root!r})
from boards import lock
lock.acquire({url!r}, what="test holder")
print("held", flush=True)
time.sleep(60)
"""


def test_port_lock_refuses_a_second_holder_and_frees_on_death():
    url = "socket://127.0.0.1:24999"
    p = subprocess.Popen([sys.executable, "-c", HOLD.format(root=str(ROOT), url=url)], stdout=subprocess.PIPE,
                         text=True, env=dict(os.environ))
    try:
        assert p.stdout.readline().strip() == "held"
        with pytest.raises(lock.PortBusy) as e:
            lock.acquire(url)
        msg = str(e.value)
        assert f"in use by process {p.pid}" in msg and "test holder" in msg and "\n" not in msg
        assert lock.holder(url)["pid"] == p.pid
    finally:
        p.kill()
        p.wait()
    assert lock.holder(url) is None
    assert lock.acquire(url)          # the kernel dropped the dead holder's flock


def test_port_keys():
    assert lock.port_key("socket://127.0.0.1:21450") == "tcp-127.0.0.1-21450"
    assert lock.port_key("rfc2217://lab-pc.invalid:4000?ign_set_control") == "tcp-lab-pc.invalid-4000"
    assert "dev" in lock.port_key("/dev/ttyUSB1")


# ---- SFL -------------------------------------------------------------------------------------------
def test_sfl_frames_match_litex_term():
    pytest.importorskip("litex")
    from litex.tools import litex_term as lt

    payload = bytes(range(4)) + b"bench firmware bytes"
    f = sfl.frame(sfl.CMD_LOAD, payload)
    ref = lt.SFLFrame()
    ref.cmd = lt.sfl_cmd_load
    ref.payload = payload
    assert f == ref.encode()
    assert sfl.crc16(b"123456789") == 0x31C3    # CRC-16/XMODEM check value


# ---- the transport over a pty and TCP, to the real host firmware ---------------------------------
@pytest.fixture(scope="module")
def host_fw():
    from harness import registry

    t = registry.get("host")
    return t.build().artifacts["firmware"]


def _prof(url: str) -> profiles.Profile:
    return profiles.Profile(name="test", description="", source="test", soc_kind="litex", build_dir="/nonexistent",
                            url=url, reset="none")


def test_bench_protocol_over_a_pseudo_terminal(host_fw):
    master, slave = os.openpty()
    fw = subprocess.Popen([host_fw], stdin=master, stdout=master, stderr=subprocess.DEVNULL)
    link = BoardLink(_prof(os.ttyname(slave)))
    try:
        link.connect()
        c = BoardClient(link, timeout=5)
        h = c.hello()
        assert h.target_id == "host"
        r = c.run_kernel("matmul", (2, 8, 40), 4, 2, 7, 0, 2)
        from kernels import reference

        assert r.checksum == reference.expected_checksum("matmul", (2, 8, 40), 4, 2, 7)
    finally:
        link.close()
        fw.kill()
        fw.wait()
        os.close(master)
        os.close(slave)


class _TcpBridge:
    """127.0.0.1 TCP server whose one client talks to a bench-host process (a stand-in board)."""

    def __init__(self, argv):
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(4)
        self.port = self.srv.getsockname()[1]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        self.conn = None
        self.stop = False
        threading.Thread(target=self._accept, daemon=True).start()
        threading.Thread(target=self._out, daemon=True).start()

    def _accept(self):
        while not self.stop:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            self.conn = c
            threading.Thread(target=self._in, args=(c,), daemon=True).start()

    def _in(self, c):
        while True:
            try:
                d = c.recv(4096)
            except OSError:
                return
            if not d:
                return
            self.proc.stdin.write(d)

    def _out(self):
        while True:
            d = self.proc.stdout.read1(4096) if hasattr(self.proc.stdout, "read1") else os.read(self.proc.stdout.fileno(), 4096)
            if not d:
                return
            c = self.conn
            if c is not None:
                try:
                    c.sendall(d)
                except OSError:
                    pass

    def close(self):
        self.stop = True
        self.srv.close()
        self.proc.kill()
        self.proc.wait()


def test_damaged_stream_gives_only_crc_checked_values(host_fw):
    """1-2 % of the bytes corrupted both ways: every value the client returns is right, retries are counted."""
    from kernels import reference

    bridge = _TcpBridge([host_fw])
    cfg = FaultConfig(corrupt=0.02, duplicate=0.002, seed=5)
    with FaultProxy(("127.0.0.1", bridge.port), cfg) as px:
        link = BoardLink(_prof(f"socket://127.0.0.1:{px.port}"))
        try:
            link.connect()
            c = BoardClient(link, timeout=0.5, retries=200)
            c.max_timeouts = 50
            for seed in range(1, 41):
                r = c.run_kernel("matmul", (2, 4, 64), 2, 4, seed, 0, 1)
                assert r.checksum == reference.expected_checksum("matmul", (2, 4, 64), 2, 4, seed)
                assert r.out_count == 8
        finally:
            link.close()
            bridge.close()
    assert px.stats.corrupted > 20
    assert c.stats.retries > 0 and c.stats.bad_frames > 0


def test_loop_url_round_trip():
    link = BoardLink(_prof("loop://"))
    link.connect()
    link.write(b"hello board")
    assert link.read(64, 1.0) == b"hello board"
    link.close()
