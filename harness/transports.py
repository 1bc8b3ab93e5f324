"""Byte-stream transports to a running device.

`ProcessTransport` drives a firmware process (host build, RTL testbench)
through its stdin/stdout pipes; stderr goes to a file so a crash record can
quote its tail without a pipe ever filling up and blocking the device.

The device runs in its own process group (a Ctrl-C meant for mico does not
reach it half-way through a frame) and is tied to its parent: on Linux it gets
SIGKILL when the process that started it dies, however that one dies, so a
killed `mico` never leaves a simulator spinning at 100% CPU.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Sequence

PR_SET_PDEATHSIG = 1


def _load_prctl():
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


# resolved in the parent: a preexec_fn runs in a freshly forked child, where loading
# a library could wait forever on a lock another thread of the parent held at fork time
_prctl = _load_prctl()


def die_with_parent() -> None:
    """Linux: ask for SIGKILL when the parent dies (a child's preexec_fn, a pool worker's initializer).

    Strictly, when the parent *thread* that forked ends: sessions are opened
    from a command's main thread or a pool worker's, which live as long as
    their process."""
    if _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))


def kill_group(proc: subprocess.Popen, wait: float = 5.0) -> None:
    """SIGKILL a child started with start_new_session (and whatever it started) and reap it."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
    try:
        proc.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        pass


class ProcessTransport:
    def __init__(self, argv: Sequence[str], cwd: Path | None = None, env: dict | None = None):
        self.argv = [str(a) for a in argv]
        self._err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err,
            cwd=cwd, env=env, bufsize=0, start_new_session=True, preexec_fn=die_with_parent,
        )
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.proc.stdout, selectors.EVENT_READ)
        self.last_bytes = bytearray()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def write(self, data: bytes) -> None:
        if self.proc.poll() is not None:
            raise EOFError("process exited")
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def read(self, max_bytes: int, timeout: float) -> bytes:
        if not self._sel.select(max(timeout, 0)):
            return b""
        data = os.read(self.proc.stdout.fileno(), max_bytes)
        if not data:
            self.proc.poll()
            raise EOFError("process closed its output")
        self.last_bytes += data
        del self.last_bytes[:-256]
        return data

    def stderr_tail(self, n: int = 600) -> str:
        try:
            self._err.seek(0, os.SEEK_END)
            size = self._err.tell()
            self._err.seek(max(0, size - n))
            return self._err.read().decode(errors="replace")
        except (OSError, ValueError):
            return ""

    def describe_failure(self) -> str:
        try:
            rc = self.proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            rc = None
        if rc is None:
            state = "still running"
        elif rc < 0:
            state = f"killed by signal {signal.Signals(-rc).name}"
        else:
            state = f"exited with status {rc}"
        tail = self.stderr_tail().strip()
        parts = [f"process {state}"]
        if tail:
            parts.append(f"stderr: {tail[-400:]}")
        if self.last_bytes:
            parts.append(f"last bytes: {bytes(self.last_bytes[-64:]).hex()}")
        return "; ".join(parts)

    def close(self, timeout: float = 2.0) -> None:
        """EOF on stdin lets the device exit by itself; after `timeout` it is killed."""
        p = self.proc
        try:
            if p.stdin and not p.stdin.closed:
                p.stdin.close()
        except OSError:
            pass
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(p)
        self._release()

    def abort(self) -> None:
        """Kill the device now (errors, Ctrl-C, SIGTERM): no goodbye, no grace period."""
        kill_group(self.proc)
        try:
            if self.proc.stdin and not self.proc.stdin.closed:
                self.proc.stdin.close()
        except OSError:
            pass
        self._release()

    def _release(self) -> None:
        try:
            self._sel.close()
            self.proc.stdout.close()
        except OSError:
            pass
        self._err.close()
