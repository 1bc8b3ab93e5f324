"""Board locks against hostile neighbours (issue 9): a private lock folder, files
that cannot be swapped for symlinks, and one key per endpoint whatever its
spelling.  Real files, real pseudo-terminals, real holder processes.
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from boards import lock  # noqa: E402

HOLD = """
import sys, time
sys.path.insert(0, {root!r})
from boards import lock
lock.acquire({url!r}, what="test holder")
print("held", flush=True)
time.sleep(120)
"""


@pytest.fixture
def locks(tmp_path, monkeypatch):
    d = tmp_path / "locks"
    monkeypatch.setenv("MICO_LOCK_DIR", str(d))
    yield d
    lock.release_all()


class Holder:
    """Another process holding a board lock (as a second `mico sweep` would)."""

    def __init__(self, url: str):
        self.p = subprocess.Popen([sys.executable, "-c", HOLD.format(root=str(ROOT), url=url)],
                                  stdout=subprocess.PIPE, text=True, env=dict(os.environ))
        assert self.p.stdout.readline().strip() == "held"

    def close(self):
        self.p.kill()
        self.p.wait()


def one_sentence(e: Exception) -> str:
    msg = str(e)
    assert "\n" not in msg and msg.endswith(".")
    return msg


# ---- the folder ------------------------------------------------------------------------------------
def test_lock_folder_is_created_private(locks):
    lock.acquire("loop://")
    st = os.lstat(locks)
    assert st.st_mode & 0o777 == 0o700 and st.st_uid == os.getuid()
    f = next(locks.glob("*.lock"))
    assert os.stat(f).st_mode & 0o077 == 0


def test_default_lock_folder_is_per_user(monkeypatch, tmp_path):
    monkeypatch.delenv("MICO_LOCK_DIR", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    d = lock.lock_dir()
    assert d.name == f"mico-hil-locks-{os.getuid()}" and os.lstat(d).st_mode & 0o777 == 0o700


def test_own_folder_that_is_too_open_is_made_private(locks):
    locks.mkdir(mode=0o755)
    os.chmod(locks, 0o777)
    lock.lock_dir()
    assert os.lstat(locks).st_mode & 0o777 == 0o700


def test_lock_folder_that_is_a_symlink_is_refused(locks, tmp_path):
    real = tmp_path / "elsewhere"
    real.mkdir(mode=0o700)
    locks.symlink_to(real)
    with pytest.raises(lock.LockDirUnsafe) as e:
        lock.acquire("loop://")
    assert "symbolic link" in one_sentence(e.value)
    assert not list(real.iterdir())


def test_lock_folder_that_is_a_file_is_refused(locks):
    locks.write_text("not a folder")
    with pytest.raises(UserError, match="not a folder"):
        lock.acquire("loop://")


def test_lock_folder_owned_by_someone_else_is_refused(locks, monkeypatch):
    if os.getuid() == 0:
        locks.mkdir(mode=0o700)
        os.chown(locks, 65534, 65534)
    else:
        root_owned = next((p for p in ("/", "/usr", "/etc") if os.stat(p).st_uid != os.getuid()), None)
        if root_owned is None:
            pytest.skip("no folder owned by another user to point the lock folder at")
        monkeypatch.setenv("MICO_LOCK_DIR", root_owned)
    with pytest.raises(lock.LockDirUnsafe) as e:
        lock.acquire("loop://")
    assert "not to you" in one_sentence(e.value)


# ---- files in it -------------------------------------------------------------------------------------
@pytest.fixture
def victim(locks, tmp_path):
    """A file of the user's that a planted link points at; the (private) lock folder exists."""
    v = tmp_path / "victim.txt"
    v.write_text("precious")
    lock.lock_dir()
    yield v
    assert v.read_text() == "precious"


def test_planted_symlink_lock_file_is_refused_and_its_target_untouched(locks, victim):
    url = "socket://127.0.0.1:5555"
    (locks / f"{lock.port_key(url)}.lock").symlink_to(victim)
    with pytest.raises(lock.LockDirUnsafe) as e:
        lock.acquire(url, what="mico sweep")
    assert "symbolic link" in one_sentence(e.value)
    assert victim.read_text() == "precious"
    (locks / f"{lock.port_key(url)}.use").symlink_to(victim)
    with pytest.raises(lock.LockDirUnsafe):
        lock.use(url)
    with pytest.raises(lock.LockDirUnsafe):
        lock.holder(url)
    assert victim.read_text() == "precious"


def test_planted_hard_link_is_refused(locks, victim):
    url = "socket://127.0.0.1:5556"
    try:
        os.link(victim, locks / f"{lock.port_key(url)}.lock")
    except OSError as e:
        pytest.skip(f"cannot make a hard link here: {e}")
    with pytest.raises(lock.LockDirUnsafe, match="not a plain file"):
        lock.acquire(url)
    assert victim.read_text() == "precious"


def test_state_notes_replace_a_planted_symlink_instead_of_writing_through_it(locks, victim):
    url = "socket://127.0.0.1:5557"
    note = locks / f"{lock.port_key(url)}.quarantine.json"
    note.symlink_to(victim)
    with pytest.raises(lock.LockDirUnsafe):
        lock.read_state(url, "quarantine.json")
    lock.write_state(url, "quarantine.json", '{"failures": 3}')
    assert victim.read_text() == "precious"
    assert not note.is_symlink() and lock.read_state(url, "quarantine.json") == '{"failures": 3}'
    lock.write_state(url, "quarantine.json", None)
    assert not note.exists() and lock.read_state(url, "quarantine.json") is None


# ---- one key per endpoint ------------------------------------------------------------------------
ALIASES = ["socket://localhost:5555", "socket://127.1:5555", "SOCKET://127.0.0.1:5555",
           "socket://127.0.0.1:05555", "socket://127.0.0.1:5555?logging=debug", "rfc2217://127.0.0.1:5555",
           " socket://0x7f000001:5555 "]


@pytest.mark.parametrize("alias", ALIASES)
def test_socket_aliases_have_one_key(alias):
    assert lock.port_key(alias) == lock.port_key("socket://127.0.0.1:5555") == "tcp-127.0.0.1-5555"


def test_socket_aliases_cannot_take_a_held_board(locks):
    h = Holder("socket://127.0.0.1:5555")
    try:
        for alias in ALIASES:
            with pytest.raises(lock.PortBusy) as e:
                lock.acquire(alias)
            assert f"in use by process {h.p.pid} (test holder)" in one_sentence(e.value)
        assert lock.acquire("socket://127.0.0.1:5554")          # another port is another board
        assert lock.holder("socket://localhost:5555")["pid"] == h.p.pid
    finally:
        h.close()
    assert lock.acquire("socket://localhost:5555")                # the holder died: the kernel freed it


@pytest.mark.parametrize("url,words", [
    ("socket://127.0.0.1:99999", "1 .. 65535"),
    ("socket://127.0.0.1:http", "1 .. 65535"),
    ("socket://127.0.0.1", "HOST:PORT"),
    ("socket://:5555", "HOST:PORT"),
])
def test_malformed_socket_urls_are_one_sentence(url, words):
    with pytest.raises(UserError) as e:
        lock.port_key(url)
    assert words in one_sentence(e.value)


def test_serial_device_key_is_the_device_node_not_its_name(locks, tmp_path):
    master, slave = os.openpty()
    try:
        name = os.ttyname(slave)
        alias = tmp_path / "ttyBOARD"
        alias.symlink_to(name)               # like /dev/serial/by-id/...
        assert lock.port_key(str(alias)) == lock.port_key(name)
        assert lock.port_key(name).startswith("dev-")
        h = Holder(name)
        try:
            with pytest.raises(lock.PortBusy):
                lock.acquire(str(alias))
        finally:
            h.close()
    finally:
        os.close(master)
        os.close(slave)


def test_rfc2217_host_that_does_not_resolve_keeps_its_name():
    assert lock.port_key("rfc2217://no-such-host.invalid:4000?ign_set_control") == "tcp-no-such-host.invalid-4000"


def test_cli_probe_of_an_alias_is_refused_while_the_board_is_held(locks):
    """`mico boards probe` on socket://127.0.0.1:0PORT while socket://localhost:PORT is held."""
    from boards import emulator

    if emulator.missing():
        pytest.skip(emulator.missing())
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    h = Holder(f"socket://localhost:{port}")
    try:
        r = subprocess.run([sys.executable, "-m", "harness.cli", "boards", "probe", "litex-sim", "--param",
                            f"url=socket://127.0.0.1:0{port}"], capture_output=True, text=True, timeout=600,
                           cwd=str(ROOT), env=dict(os.environ))
    finally:
        h.close()
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert f"is in use by process {h.p.pid}" in lines[0]
