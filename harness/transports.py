"""Byte-stream transports to a running device.

`ProcessTransport` drives a firmware process (host build, RTL testbench)
through its stdin/stdout pipes; stderr goes to a file so a crash record can
quote its tail without a pipe ever filling up and blocking the device.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Sequence


class ProcessTransport:
    def __init__(self, argv: Sequence[str], cwd: Path | None = None, env: dict | None = None):
        self.argv = [str(a) for a in argv]
        self._err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err,
            cwd=cwd, env=env, bufsize=0, start_new_session=True,
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
        p = self.proc
        try:
            if p.stdin and not p.stdin.closed:
                p.stdin.close()
        except OSError:
            pass
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(timeout=5)
        try:
            self._sel.close()
            p.stdout.close()
        except OSError:
            pass
        self._err.close()
