"""One lock file per board endpoint: two sweeps never share a board.

``acquire(url)`` takes an exclusive ``flock`` on ``<lock dir>/<key>.lock`` and
keeps it until the process exits (the kernel drops a flock when its holder
dies, so a killed sweep never leaves a stale lock).  The holder writes its pid
into the file.

The key is the endpoint the URL resolves to, not its spelling: a serial
device is its device node's identity (``st_rdev``; any symlink or second node
for the same device gives the same key), a TCP endpoint its canonical address
and numeric port (``socket://localhost:5555``, ``SOCKET://127.0.0.1:5555``,
``socket://127.1:05555`` and ``rfc2217://127.0.0.1:5555`` are one board).

The lock folder (``MICO_LOCK_DIR``, default ``$TMPDIR/mico-hil-locks-<uid>``)
is private: created with mode 0700, and refused if it is a symlink, not a
folder, owned by someone else or writable by others.  Files in it are opened
with ``O_NOFOLLOW`` and checked to be regular files of this user, so a planted
symlink can never make a lock (or a state note) write somewhere else.

A sweep is one coordinator process plus the worker processes it spawned: the
coordinator takes the lock when it probes the board, and a worker whose
parent holds the lock may use the board (``use`` lock below).  Anyone else is
refused with one sentence naming the holder.

Inside one sweep, a board still serves one connection at a time: the
``<key>.use`` flock is held while a session is open; a second worker of the
same sweep is told to run boards with ``--jobs 1``.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import re
import socket
import stat
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from harness.errors import UserError

ENV = "MICO_LOCK_DIR"
TCP_SCHEMES = ("socket", "rfc2217")


class PortBusy(UserError):
    """The board's port is locked by another sweep (one sentence, exit 2)."""


class LockDirUnsafe(UserError):
    """The lock folder or a file in it is not this user's private one."""


# ---- the folder ------------------------------------------------------------------------------
def lock_dir() -> Path:
    """The private lock folder, created if missing; refused if anyone else could plant files in it."""
    env = os.environ.get(ENV)
    d = Path(env) if env else Path(tempfile.gettempdir()) / f"mico-hil-locks-{os.getuid()}"
    d = Path(os.path.abspath(d))
    try:
        d.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(d, 0o700)
    except FileExistsError:
        pass
    except OSError as e:
        raise LockDirUnsafe(f"cannot create the lock folder {d}: {e.strerror}; set {ENV} to a folder of yours.") \
            from None
    try:
        st = os.lstat(d)
    except OSError as e:
        raise LockDirUnsafe(f"cannot inspect the lock folder {d}: {e.strerror}.") from None
    if stat.S_ISLNK(st.st_mode):
        raise LockDirUnsafe(f"the lock folder {d} is a symbolic link; remove it or set {ENV} to a private folder.")
    if not stat.S_ISDIR(st.st_mode):
        raise LockDirUnsafe(f"the lock folder {d} is not a folder; remove it or set {ENV} to a private folder.")
    if st.st_uid != os.getuid():
        raise LockDirUnsafe(f"the lock folder {d} belongs to user id {st.st_uid}, not to you; "
                            f"set {ENV} to a folder of yours.")
    if st.st_mode & 0o077:
        try:
            os.chmod(d, 0o700, follow_symlinks=False)   # ours, but too open (an older mico made it 0755)
        except OSError as e:
            raise LockDirUnsafe(f"the lock folder {d} is open to other users and cannot be made private "
                                f"({e.strerror}).") from None
    return d


def _open(path: Path, create: bool) -> int | None:
    """A file of the lock folder: never through a symlink, always a regular file of this user."""
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_CREAT if create else 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileNotFoundError:
        return None
    except OSError as e:
        if os.path.islink(path):
            raise LockDirUnsafe(f"lock file {path} is a symbolic link (planted?); remove it.") from None
        raise LockDirUnsafe(f"cannot open lock file {path}: {e.strerror}.") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_nlink != 1:
        os.close(fd)
        raise LockDirUnsafe(f"lock file {path} is not a plain file of yours (planted?); remove it.")
    return fd


def _same_file(fd: int, path: Path) -> bool:
    """After flock: the path still names the file we locked (nobody swapped it meanwhile)."""
    try:
        a, b = os.fstat(fd), os.lstat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


# ---- the key: the endpoint a URL resolves to -----------------------------------------------
def _canonical_host(host: str, port: int) -> str:
    """The address a TCP client connects to first (pyserial uses the same lookup order)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return host.lower()
    addr = ipaddress.ip_address(infos[0][4][0].split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return str(addr)


def _tcp_key(url: str) -> str:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise UserError(f"board URL {url} has a port that is not a number in 1 .. 65535.") from None
    host = parts.hostname
    if not host or port is None or port < 1:
        raise UserError(f"board URL {url} must look like {parts.scheme}://HOST:PORT.")
    return f"tcp-{_canonical_host(host, port)}-{port}"


def _device_key(path: str) -> str:
    try:
        st = os.stat(path)              # follows /dev/serial/by-id/... links to the node itself
    except OSError:
        return "path-" + os.path.realpath(path)
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        return f"dev-{os.major(st.st_rdev)}.{os.minor(st.st_rdev)}"
    return f"file-{st.st_dev}.{st.st_ino}"


def port_key(url: str) -> str:
    """A file-name-safe key for the endpoint a URL names; two spellings of one board give one key."""
    u = url.strip()
    scheme = u.split("://", 1)[0].lower() if "://" in u else ""
    if not scheme:
        key = _device_key(u)
    elif scheme in TCP_SCHEMES:
        key = _tcp_key(u)
    else:       # loop://, spy://, hwgrep://...: no shared endpoint to resolve
        key = f"{scheme}-{u.split('://', 1)[1].split('?', 1)[0]}"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", key).strip("_") or "port"


# ---- the locks -----------------------------------------------------------------------------------
_held: dict[str, int] = {}        # key -> fd of the port lock this process holds
_used: dict[str, int] = {}        # key -> fd of the use lock


def _holder(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return json.loads(os.read(fd, 4096) or b"{}")
    except (OSError, ValueError):
        return {}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _flock(path: Path) -> int | None:
    """An exclusive flock on `path` (created if need be): its fd, or None while someone else holds it."""
    for _ in range(5):
        fd = _open(path, create=True)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        if _same_file(fd, path):
            return fd
        os.close(fd)            # replaced between open and flock: lock the file that is there now
    raise LockDirUnsafe(f"lock file {path} keeps being replaced; is another program deleting it?")


def acquire(url: str, what: str = "") -> str:
    """Lock the board for this process (or share the parent's lock); raise PortBusy if another sweep has it."""
    key = port_key(url)
    if key in _held:
        return key
    path = lock_dir() / f"{key}.lock"
    fd = _flock(path)
    if fd is None:
        peek = _open(path, create=False)
        info = _holder(peek) if peek is not None else {}
        if peek is not None:
            os.close(peek)
        pid = int(info.get("pid", 0) or 0)
        if pid and pid == os.getppid():
            return key      # our coordinator holds it: we are one of its workers
        who = f"process {pid}" if pid else "another process"
        cmd = f" ({info['cmd']})" if info.get("cmd") else ""
        raise PortBusy(f"board port {url} is in use by {who}{cmd}: wait for that sweep to finish "
                       f"or give this one another board.")
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps({"pid": os.getpid(), "since": time.time(), "cmd": what, "url": url}).encode())
    _held[key] = fd
    return key


def use(url: str) -> str:
    """One open session per board: the `.use` flock (held until ``unuse``)."""
    key = port_key(url)
    if key in _used:
        return key
    fd = _flock(lock_dir() / f"{key}.use")
    if fd is None:
        raise PortBusy(f"board port {url} is already driven by another worker of this sweep: "
                       "a board serves one worker, run board sweeps with --jobs 1.")
    _used[key] = fd
    return key


def unuse(key: str) -> None:
    fd = _used.pop(key, None)
    if fd is not None:
        os.close(fd)


def release(url: str) -> None:
    key = port_key(url)
    unuse(key)
    fd = _held.pop(key, None)
    if fd is not None:
        os.close(fd)


def release_all() -> None:
    for k in list(_used):
        unuse(k)
    for k in list(_held):
        os.close(_held.pop(k))


def holder(url: str) -> dict | None:
    """Who holds the board's lock right now (None if free)."""
    path = lock_dir() / f"{port_key(url)}.lock"
    fd = _open(path, create=False)
    if fd is None:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            info = _holder(fd)
            pid = int(info.get("pid", 0) or 0)
            return info if (not pid or _pid_alive(pid)) else None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


# ---- small state notes beside the lock (quarantine, what was flashed) ----------------------------
def read_state(url: str, name: str) -> str | None:
    """The note `name` of a board (``<key>.<name>``), or None."""
    fd = _open(lock_dir() / f"{port_key(url)}.{name}", create=False)
    if fd is None:
        return None
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")
    finally:
        os.close(fd)


def write_state(url: str, name: str, text: str | None) -> None:
    """Replace (or with None remove) a board's note atomically: a new file renamed over the old name."""
    d = lock_dir()
    path = d / f"{port_key(url)}.{name}"
    if text is None:
        try:
            os.unlink(path)         # unlink removes a planted symlink itself, never its target
        except FileNotFoundError:
            pass
        return
    fd, tmp = tempfile.mkstemp(dir=d, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)       # replaces a symlink at `path`, never writes through it
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
