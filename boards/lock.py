"""One lock file per serial port: two sweeps never share a board.

``acquire(url)`` takes an exclusive ``flock`` on ``<lock dir>/<port>.lock``
(``MICO_LOCK_DIR``, default ``$TMPDIR/mico-hil-locks``) and keeps it until the
process exits (the kernel drops a flock when its holder dies, so a killed
sweep never leaves a stale lock).  The holder writes its pid into the file.

A sweep is one coordinator process plus the worker processes it spawned: the
coordinator takes the lock when it probes the board, and a worker whose
parent holds the lock may use the board (``use`` lock below).  Anyone else is
refused with one sentence naming the holder.

Inside one sweep, a board still serves one connection at a time: the
``<port>.use`` flock is held while a session is open; a second worker of the
same sweep is told to run boards with ``--jobs 1``.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import tempfile
import time
from pathlib import Path

from harness.errors import UserError

ENV = "MICO_LOCK_DIR"


class PortBusy(UserError):
    """The board's port is locked by another sweep (one sentence, exit 2)."""


def lock_dir() -> Path:
    d = Path(os.environ.get(ENV) or Path(tempfile.gettempdir()) / "mico-hil-locks")
    d.mkdir(parents=True, exist_ok=True)
    return d


def port_key(url: str) -> str:
    """A file-name-safe key for the port a URL names (a tty's real path, a socket's host:port)."""
    u = url.strip()
    if "://" not in u:
        try:
            u = os.path.realpath(u)
        except OSError:
            pass
    else:
        scheme, rest = u.split("://", 1)
        u = f"{scheme}-{rest.split('?', 1)[0]}"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", u).strip("_") or "port"


_held: dict[str, int] = {}        # key -> fd of the port lock this process holds
_used: dict[str, int] = {}        # key -> fd of the use lock


def _holder(path: Path) -> dict:
    try:
        return json.loads(path.read_text() or "{}")
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


def acquire(url: str, what: str = "") -> str:
    """Lock the port for this process (or share the parent's lock); raise PortBusy if another sweep has it."""
    key = port_key(url)
    if key in _held:
        return key
    path = lock_dir() / f"{key}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        info = _holder(path)
        pid = int(info.get("pid", 0) or 0)
        if pid and pid == os.getppid():
            return key      # our coordinator holds it: we are one of its workers
        who = f"process {pid}" if pid else "another process"
        cmd = f" ({info['cmd']})" if info.get("cmd") else ""
        raise PortBusy(f"board port {url} is in use by {who}{cmd}: wait for that sweep to finish "
                       f"or give this one another board.") from None
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps({"pid": os.getpid(), "since": time.time(), "cmd": what}).encode())
    _held[key] = fd
    return key


def use(url: str) -> str:
    """One open session per board: the `.use` flock (held until ``unuse``)."""
    key = port_key(url)
    if key in _used:
        return key
    fd = os.open(lock_dir() / f"{key}.use", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise PortBusy(f"board port {url} is already driven by another worker of this sweep: "
                       "a board serves one worker, run board sweeps with --jobs 1.") from None
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
    """Who holds the port lock right now (None if free)."""
    path = lock_dir() / f"{port_key(url)}.lock"
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        info = _holder(path)
        pid = int(info.get("pid", 0) or 0)
        return info if (not pid or _pid_alive(pid)) else None
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
