"""The byte stream to a board: a pyserial URL, plus the emulator process when
the board is emulated.

``BoardLink`` is a harness ``Transport`` (write / read(max, timeout) / close /
describe_failure) over ``serial.serial_for_url``: ``/dev/ttyUSB1``,
``socket://127.0.0.1:PORT``, ``rfc2217://HOST:PORT``, ``loop://``.  On top of
that it can drop and re-open the connection (``reconnect``) and power-cycle
the board (``power_cycle``: restart the emulator, or run the profile's reset
command), which the board session uses to recover from a dead link.

Host -> board writes can be paced (profile ``serial.chunk`` bytes, then
``serial.chunk_gap_s``) for boards whose UART has neither flow control nor a
deep buffer.  The emulated board needs none: its UART module only takes bytes
from the socket while its 2 KiB receive ring has room.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import serial

from harness.errors import CrashError, UserError
from harness.transports import die_with_parent

from .profiles import Profile

log = logging.getLogger(__name__)

SIM_FILES = ("sim_rom.init", "sim_sram.init", "sim_main_ram.init", "sim_mem.init")
SIM_MODULES = ("clocker.so", "mico_uart_tcp.so")


RUNDIR_PREFIX = "mico-litex-sim-"


def _clean_stale_rundirs() -> None:
    """Run folders of emulators whose driving process is gone (a sweep worker is not
    asked to close its board when the pool shuts down; the emulator itself dies with it)."""
    import shutil

    for d in Path(tempfile.gettempdir()).glob(f"{RUNDIR_PREFIX}*-*"):
        try:
            pid = int(d.name[len(RUNDIR_PREFIX):].split("-", 1)[0])
        except ValueError:
            continue
        try:
            os.kill(pid, 0)
            continue          # still running
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        shutil.rmtree(d, ignore_errors=True)


class Emulator:
    """One litex_sim process (the cached Verilator model) listening on 127.0.0.1:port."""

    def __init__(self, soc_dir: Path, port: int):
        self.soc_dir = Path(soc_dir)
        self.port = port
        self.proc: subprocess.Popen | None = None
        self.rundir: Path | None = None
        self._out = None

    def start(self, timeout: float = 30.0) -> None:
        gw = self.soc_dir / "gateware"
        vsim = gw / "obj_dir" / "Vsim"
        if not vsim.exists():
            raise CrashError(f"the emulator model {vsim} is gone from the build cache; build again")
        _clean_stale_rundirs()
        self.rundir = Path(tempfile.mkdtemp(prefix=f"{RUNDIR_PREFIX}{os.getpid()}-"))
        for f in SIM_FILES:
            if (gw / f).exists():
                os.symlink(gw / f, self.rundir / f)
        (self.rundir / "modules").mkdir()
        for m in SIM_MODULES:
            os.symlink(gw / "modules" / m, self.rundir / "modules" / m)
        cfg = (gw / "sim_config.js").read_text().replace('"port": 1\n', f'"port": {self.port}\n')
        if f'"port": {self.port}' not in cfg:
            raise CrashError("sim_config.js of the emulator has no port placeholder")
        (self.rundir / "sim_config.js").write_text(cfg)
        self._out = open(self.rundir / "sim.log", "w+b")
        self.proc = subprocess.Popen([str(vsim)], cwd=self.rundir, stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=die_with_parent)   # not outliving a SIGKILLed sweep
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_tail()
                if "cannot listen" in tail:
                    raise UserError(f"127.0.0.1:{self.port} is taken by another program: free it or give the "
                                    "emulated board another port (--param url=socket://127.0.0.1:PORT).")
                raise CrashError(f"the emulator exited at start ({self.state()})", tail)
            if f"listening on 127.0.0.1:{self.port}".encode() in self._read_log():
                return
            time.sleep(0.02)
        raise CrashError(f"the emulator did not listen on 127.0.0.1:{self.port} within {timeout:.0f} s",
                         self.log_tail())

    def _read_log(self) -> bytes:
        try:
            return (self.rundir / "sim.log").read_bytes()
        except OSError:
            return b""

    def log_tail(self, n: int = 600) -> str:
        return self._read_log()[-n:].decode(errors="replace")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def state(self) -> str:
        if self.proc is None:
            return "not started"
        rc = self.proc.poll()
        if rc is None:
            return "running"
        if rc < 0:
            return f"killed by signal {signal.Signals(-rc).name}"
        return f"exited with status {rc}"

    def stop(self, timeout: float = 2.0) -> None:
        p = self.proc
        if p is not None and p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(timeout=timeout)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(timeout=5)
        if self._out is not None:
            self._out.close()
            self._out = None
        if self.rundir is not None:
            for f in list(self.rundir.rglob("*"))[::-1]:
                try:
                    f.rmdir() if f.is_dir() and not f.is_symlink() else f.unlink()
                except OSError:
                    pass
            try:
                self.rundir.rmdir()
            except OSError:
                pass


class BoardLink:
    """A Transport to a board (and, for the emulated board, its simulator)."""

    def __init__(self, profile: Profile, soc_dir: Path | None = None):
        self.profile = profile
        self.url = profile.url
        self.ser = None
        self.emulator: Emulator | None = None
        if profile.emulated:
            port = profile.sim_port or profile.tcp_port()
            if not port:
                raise UserError(f"board {profile.name}: no TCP port for the emulator in {profile.url}.")
            self.emulator = Emulator(soc_dir, port)
        self.last_bytes = bytearray()
        self._timeout: float | None = -1.0
        self.closed = False

    # ---- board power -------------------------------------------------------------------
    def power_on(self) -> None:
        if self.emulator is not None and not self.emulator.alive():
            self.emulator.start()

    def power_cycle(self) -> None:
        """Reset the board hard: restart the emulator / run the profile's reset command."""
        self.disconnect()
        if self.emulator is not None:
            self.emulator.stop(timeout=1.0)
            self.emulator.start()
        elif self.profile.reset == "command":
            argv = [a.replace("{url}", self.url) for a in self.profile.reset_command]
            try:
                res = subprocess.run(argv, capture_output=True, text=True, timeout=120)
            except (OSError, subprocess.TimeoutExpired) as e:
                raise CrashError(f"reset command {argv[0]} failed: {e}") from None
            if res.returncode != 0:
                raise CrashError(f"reset command {argv[0]} exited with {res.returncode}", res.stderr[-400:])

    # ---- the serial connection ------------------------------------------------------------
    def connect(self, timeout: float = 10.0) -> None:
        self.disconnect()
        deadline = time.monotonic() + timeout
        err: Exception | None = None
        while True:
            try:
                self.ser = serial.serial_for_url(self.url, baudrate=self.profile.baud, timeout=0,
                                                 write_timeout=30, exclusive=True if self.url.startswith("/") else None)
                self._timeout = 0
                self.closed = False
                if self.url.startswith("socket://"):
                    try:
                        self.ser._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    except (AttributeError, OSError):
                        pass
                return
            except (serial.SerialException, OSError, ValueError) as e:
                err = e
            if self.emulator is not None and not self.emulator.alive():
                raise CrashError(f"the emulator died ({self.emulator.state()})", self.emulator.log_tail())
            if time.monotonic() >= deadline:
                raise CrashError(f"cannot open {self.url}: {err}")
            time.sleep(0.05)

    def disconnect(self) -> None:
        if self.ser is not None:
            try:
                self.ser.close()
            except (serial.SerialException, OSError):
                pass
            self.ser = None

    def reconnect(self, timeout: float = 10.0) -> None:
        self.disconnect()
        self.connect(timeout)

    # ---- Transport ------------------------------------------------------------------------------
    def _set_timeout(self, t: float) -> None:
        if self._timeout != t:
            self.ser.timeout = t
            self._timeout = t

    def write(self, data: bytes) -> None:
        if self.ser is None:
            raise EOFError("the link is down")
        step = self.profile.chunk or len(data) or 1
        try:
            for i in range(0, len(data), step):
                self.ser.write(data[i:i + step])
                if self.profile.chunk and self.profile.chunk_gap_s:
                    self.ser.flush()
                    time.sleep(self.profile.chunk_gap_s)
        except (serial.SerialException, OSError) as e:
            raise EOFError(f"write to {self.url} failed: {e}") from None

    def read(self, max_bytes: int, timeout: float) -> bytes:
        if self.ser is None:
            raise EOFError("the link is down")
        try:
            self._set_timeout(max(timeout, 0.0))
            first = self.ser.read(1)
            if not first:
                if self.emulator is not None and not self.emulator.alive():
                    raise EOFError("the emulator exited")
                return b""
            self._set_timeout(0)
            data = first + (self.ser.read(max_bytes - 1) if max_bytes > 1 else b"")
        except (serial.SerialException, OSError) as e:
            raise EOFError(f"read from {self.url} failed: {e}") from None
        self.last_bytes += data
        del self.last_bytes[:-256]
        return data

    def drain(self, quiet: float = 0.05, limit: float = 2.0) -> bytes:
        """Read until nothing arrives for `quiet` seconds (at most `limit`)."""
        out = bytearray()
        end = time.monotonic() + limit
        while time.monotonic() < end:
            d = self.read(4096, quiet)
            if not d:
                break
            out += d
        return bytes(out)

    def describe_failure(self) -> str:
        parts = [f"link {self.url}"]
        if self.emulator is not None:
            parts.append(f"emulator {self.emulator.state()}")
            tail = self.emulator.log_tail(300).strip()
            if tail and not self.emulator.alive():
                parts.append(f"emulator log: {tail}")
        if self.last_bytes:
            parts.append(f"last bytes: {bytes(self.last_bytes[-64:]).hex()}")
        return "; ".join(parts)

    def close(self, timeout: float = 2.0) -> None:
        self.disconnect()
        if self.emulator is not None:
            self.emulator.stop(timeout=timeout)
        self.closed = True
