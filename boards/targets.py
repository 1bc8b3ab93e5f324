"""Targets ``board:<profile>``: FPGA boards (and the emulated one) behind the
common Target interface.

``build()`` fetches or builds the SoC (the emulated board's litex_sim model,
cached by content hash; a real board's LiteX build folder is the user's) and
the bench firmware against that SoC's generated headers.  ``open()`` locks the
board's port, powers the board (starts the emulator), loads the firmware the
way the profile says (LiteX BIOS serialboot over the link, or flash + reset),
and says HELLO, checking that the image the firmware runs is the one sent.

The session is robust against a bad link:
- a frame with a bad CRC or sequence number is retried with the same sequence
  number (harness.protocol.Client; the firmware answers a duplicate from its
  reply cache, so a kernel never runs twice for one request);
- a reply that does not come within ``timing.reply_timeout_s`` is asked for
  again (same seq), up to ``timing.kernel_timeout_s`` in all;
- a link that is cut, or a board that stops answering, leads to reconnect (if
  the firmware still answers HELLO with the right image, nothing is reloaded)
  and else to reset + reconnect + reload; each counts as a reconnect in
  ``client.stats.reconnects`` (stored with the measurement);
- a board that fails ``timing.quarantine_after`` times in a row is
  quarantined: later opens fail at once with a crash record, so a sweep
  carries on to its end instead of waiting on a dead board.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
import zlib
from pathlib import Path

from dataclasses import replace

from harness import registry
from harness.errors import (CrashError, MeasureError, ProtocolError, TimeoutMeasureError, ToolchainMissing,
                            UserError)
from harness.params import Param, at_least, between, integer, number, positive, text
from harness.protocol import REQ_BYE, ModelInfo, encode_frame
from harness.target import MODEL_IMAGES, BuildResult, Capabilities, DeviceSession, Target, fingerprint_of
from kernels import toolchain as tc
from kernels.ir import generator_digest

from . import emulator, firmware, lock, sfl
from .client import BoardClient, LinkLost
from .link import BoardLink
from .profiles import Profile, find

log = logging.getLogger(__name__)

# none is hashed as given: what changes a number enters through the profile's fingerprint_parts()
PARAMS = (
    Param("profile", text, None, "a board profile name or FILE.toml (default: the name after board:)",
          in_fingerprint=False),
    Param("url", text, None, "the board's pyserial URL, overriding the profile's serial.url", in_fingerprint=False),
    Param("sim_port", integer, None, "TCP port the emulated board listens on when url points at a proxy",
          in_fingerprint=False, check=between(1, 65535)),
    Param("timeout_s", number, None, "seconds one kernel may take (timing.kernel_timeout_s)",
          in_fingerprint=False, check=positive),
    Param("reply_timeout_s", number, None, "seconds to wait for one reply before asking again "
          "(timing.reply_timeout_s)", in_fingerprint=False, check=positive),
    Param("boot_timeout_s", number, None, "seconds a boot may take (timing.boot_timeout_s)",
          in_fingerprint=False, check=positive),
    Param("quarantine_after", integer, None, "consecutive failures before the board is quarantined "
          "(timing.quarantine_after)", in_fingerprint=False, check=at_least(1)),
)
_OVERRIDES = {"url": "url", "sim_port": "sim_port", "timeout_s": "kernel_timeout_s",
              "reply_timeout_s": "reply_timeout_s", "boot_timeout_s": "boot_timeout_s",
              "quarantine_after": "quarantine_after"}
LINK_ERRORS = (TimeoutMeasureError, CrashError, ProtocolError)
HELLO_RETRIES = 12          # HELLO's reply is ~100 bytes: on a noisy line several may be damaged in a row
MAX_RECOVERIES = 2          # per request: reconnect / reset+reload attempts before giving up
IMG_RE = re.compile(r"\bimg=([0-9a-f]{8})\b")

# consecutive failures per port, in this process (a sweep worker keeps its board)
_failures: dict[str, int] = {}
_last_error: dict[str, str] = {}


QUARANTINE = "quarantine.json"
FLASHED = "flashed"


def quarantine_record(url: str) -> dict | None:
    """The quarantine note of a board's port (written by a sweep that gave up on it), or None."""
    try:
        text = lock.read_state(url, QUARANTINE)
        return json.loads(text) if text else None
    except (OSError, ValueError, UserError):
        return None


def _fail(profile: Profile, err: Exception) -> None:
    n = _failures.get(profile.url, 0) + 1
    _failures[profile.url] = n
    _last_error[profile.url] = str(err)
    if n >= profile.quarantine_after:
        try:
            lock.write_state(profile.url, QUARANTINE, json.dumps(
                {"board": profile.name, "url": profile.url, "failures": n, "last_error": str(err), "since": time.time()}))
        except (OSError, UserError):
            pass


def _ok(profile: Profile) -> None:
    if _failures.pop(profile.url, 0):
        try:
            lock.write_state(profile.url, QUARANTINE, None)
        except (OSError, UserError):
            pass


def quarantined(profile: Profile) -> bool:
    return _failures.get(profile.url, 0) >= profile.quarantine_after


def reset_quarantine() -> None:
    _failures.clear()
    _last_error.clear()


class BoardSession(DeviceSession):
    """A booted board; recovers from link trouble by reconnecting, resetting and reloading."""

    def __init__(self, target: "BoardTarget", build: BuildResult, link: BoardLink):
        super().__init__(link, BoardClient(link, timeout=target.profile.reply_timeout_s, retries=3), None)
        self.target = target
        self.profile = target.profile
        self.build_result = build
        self.link = link
        self.image = Path(build.artifacts["image"]).read_bytes()
        self.image_crc = f"{zlib.crc32(self.image):08x}"
        self.boots = 0

    # ---- boot --------------------------------------------------------------------------------
    def _hello(self, timeout: float, retries: int = 3) -> None:
        c = self.client
        old = (c.timeout, c.retries, c.max_timeouts)
        c.timeout, c.retries, c.max_timeouts = timeout, retries, 1
        try:
            hello = c.hello()
        finally:
            c.timeout, c.retries, c.max_timeouts = old
        m = IMG_RE.search(hello.target_id)
        if not m:
            raise CrashError(f"the firmware on {self.profile.name} does not report its image CRC "
                             f"(target id {hello.target_id!r}): not the LiteX bench firmware?")
        if m.group(1) != self.image_crc:
            raise CrashError(f"the firmware image on {self.profile.name} differs from the one sent "
                             f"(CRC {m.group(1)} != {self.image_crc}): damaged on the link")
        self.hello = hello

    def _kick_firmware_to_bios(self) -> None:
        """A real board may still run the bench firmware from before: BYE resets it into the BIOS."""
        try:
            self.link.write(b"\x00" + encode_frame(REQ_BYE, 0xFFFE, b""))
            self.link.drain(quiet=0.3, limit=2.0)
        except EOFError:
            pass

    def boot(self) -> None:
        p = self.profile
        deadline_s = p.boot_timeout_s
        self.link.power_on()
        self.link.connect(timeout=self._connect_timeout())
        self.client._buf.clear()
        if p.load == "serialboot":
            if not p.emulated:
                self._kick_firmware_to_bios()
            try:
                sfl.serialboot(self.link, self.image, p.main_ram_base, deadline_s, chunk=p.sfl_chunk)
            except EOFError as e:
                raise CrashError(f"the link to {p.name} went down during serial boot ({e})",
                                 self.link.describe_failure()) from None
        else:   # flash: the BIOS boots the image from flash after a reset
            self.target.flash_if_needed(self.link)
        for attempt in range(3):
            try:
                self._sync()
                self._hello(timeout=min(5.0, deadline_s), retries=HELLO_RETRIES)
                break
            except LinkLost:
                if attempt == 2:
                    raise
                self.link.reconnect(timeout=self._connect_timeout())    # a cut right after the jump
        self.boots += 1

    def _connect_timeout(self) -> float:
        # the emulator listens before start() returns; a USB serial port may take a while to come back
        return 2.0 if self.profile.emulated else min(20.0, self.profile.boot_timeout_s)

    def _sync(self) -> None:
        """End any half-received frame on the device and drop whatever is in flight."""
        try:
            self.link.write(b"\x00")
            self.link.drain(quiet=0.15, limit=2.0)
        except EOFError:
            pass
        self.client._buf.clear()

    # ---- recovery ------------------------------------------------------------------------------
    def _recover(self, err: Exception) -> None:
        """Reconnect; if the firmware is gone or damaged, reset and reload.  Counts one reconnect."""
        self.client.stats.reconnects += 1
        log.info("board %s: %s; reconnecting", self.profile.name, err)
        try:
            self.link.reconnect(timeout=self._connect_timeout())
            self._sync()
            self._hello(timeout=min(3.0, self.profile.reply_timeout_s), retries=HELLO_RETRIES)
            return
        except (MeasureError, EOFError) as e:
            log.info("board %s: no intact HELLO after reconnect (%s); reset and reload", self.profile.name, e)
        if self.profile.reset == "none" and not self.profile.emulated and self.profile.load == "flash":
            raise CrashError(f"board {self.profile.name} does not answer and has no reset: "
                             "press its reset button or set load.reset in its profile", self.link.describe_failure())
        try:
            self.link.power_cycle()
            self.boot()
        except EOFError as e:
            raise CrashError(f"board {self.profile.name} did not come back ({e})", self.link.describe_failure()) from None

    def _guarded(self, fn):
        last: Exception | None = None
        for attempt in range(MAX_RECOVERIES + 1):
            try:
                out = fn()
                _ok(self.profile)
                return out
            except LINK_ERRORS as e:
                last = e
                if attempt == MAX_RECOVERIES:
                    break
                try:
                    self._recover(e)
                except LINK_ERRORS as e2:
                    last = e2
                    break
        _fail(self.profile, last)
        raise last

    def _retries_for(self, timeout: float | None) -> int:
        total = max(timeout or 0.0, self.profile.kernel_timeout_s)
        return max(3, int(total / self.profile.reply_timeout_s))

    def run_kernel(self, spec, seed: int, warmup: int, repeats: int, timeout: float | None = None):
        # one attempt waits reply_timeout_s; a reply that is late is asked for again (same seq,
        # answered from the reply cache) until kernel_timeout_s is spent
        def go():
            self.client.retries = self._retries_for(timeout)
            try:
                return DeviceSession.run_kernel(self, spec, seed, warmup, repeats, self.profile.reply_timeout_s)
            finally:
                self.client.retries = 3
        return self._guarded(go)

    def load_model(self, image: bytes) -> ModelInfo:
        return self._guarded(lambda: DeviceSession.load_model(self, image))

    def run_model(self, inputs: bytes, timeout: float | None = None):
        def go():
            self.client.retries = self._retries_for(timeout)
            try:
                return self.client.run_model(inputs, timeout=self.profile.reply_timeout_s)
            finally:
                self.client.retries = 3
        return self._guarded(go)

    def close(self, timeout: float = 2.0) -> None:
        if self.link.ser is not None and not self.profile.emulated:
            c = self.client
            c.retries, c.max_timeouts = 2, 1
            try:
                c.request(REQ_BYE, timeout=2.0)     # the firmware resets the SoC into its BIOS
            except (MeasureError, EOFError):
                pass
        self.close_link(timeout)

    def abort(self) -> None:
        """No goodbye: a real board's firmware is sent back to its BIOS at the next boot."""
        self.close_link(timeout=0.2)

    def close_link(self, timeout: float) -> None:
        try:
            self.link.close(timeout=timeout)
        finally:
            lock.unuse(lock.port_key(self.profile.url))


class BoardTarget(Target):
    """One board profile (``board:<name>``)."""

    timer_unit = "cycles"
    PARAMS = PARAMS
    CAPABILITIES = MODEL_IMAGES

    def __init__(self, profile_name: str = "", **params):
        self.name = f"board:{profile_name}" if profile_name else "board:<name>"
        super().__init__(**params)
        source = self.params["profile"] or profile_name
        if not source:
            raise UserError("name a board: board:<profile> (`mico boards list` shows the profiles).")
        prof = find(str(source))
        over = {f: self.params[k] for k, f in _OVERRIDES.items() if self.params[k] is not None}
        self.profile: Profile = prof.with_overrides(**over) if over else prof
        self.name = f"board:{self.profile.name}"
        self.description = self.profile.description or f"LiteX board {self.profile.name}"
        self.deterministic = self.profile.deterministic
        self.kernel_timeout = self.profile.kernel_timeout_s

    def capabilities(self) -> Capabilities:
        return replace(self.CAPABILITIES, memory_bytes=self.profile.main_ram_size, dcache_bytes=4096)

    def cluster_resources(self) -> dict[str, float]:
        """A board (the emulated one too: it holds its port lock) runs only on the cluster worker of
        the host it is plugged into, which offers the resource ``board:<profile>=1``."""
        return {self.name: 1}

    # ---- availability and build ----------------------------------------------------------------
    def available(self) -> tuple[bool, str]:
        p = self.profile
        if p.emulated:
            why = emulator.missing()
            return (not why, why)
        if not shutil.which(firmware.RV_GCC):
            return False, f"{firmware.RV_GCC} not found: apt-get install gcc-riscv64-unknown-elf."
        if not (Path(p.build_dir) / "software" / "include" / "generated" / "csr.h").exists():
            return False, (f"the LiteX build folder {p.build_dir} of board {p.name} has no generated csr.h: "
                           "build the SoC (docs/boards.md) or fix soc.build_dir.")
        try:
            import litex  # noqa: F401
        except ImportError:
            return False, "LiteX is not installed: pip install litex==2024.12."
        return True, ""

    def soc(self) -> tuple[Path, str, dict]:
        """(SoC build folder, its digest, info)."""
        p = self.profile
        if p.emulated:
            art = emulator.build_soc(p.cpu_variant, p.main_ram_size)
            d = art.path.parent
            info = json.loads(art.path.read_text())
            if info.get("sys_clk_freq") != p.clock_hz:
                raise UserError(f"board profile {p.name}: soc.clock_hz = {p.clock_hz} but the emulated SoC runs "
                                f"at {info.get('sys_clk_freq')} Hz; fix the profile.")
            return d, art.digest, {"soc_cached": art.cached, **info}
        hdrs = firmware.soc_headers(Path(p.build_dir), p.cpu)
        return Path(p.build_dir), tc.content_hash(hdrs.files()), {"soc_cached": True}

    def build(self) -> BuildResult:
        ok, why = self.available()
        if not ok:
            raise ToolchainMissing(why)
        p = self.profile
        soc_dir, soc_digest, soc_info = self.soc()
        hdrs = firmware.soc_headers(soc_dir, p.cpu)
        fw = firmware.build(p, hdrs, self.name)
        image = fw.path.parent / "bench.bin"
        gcc_id = tc.tool_identity(shutil.which(firmware.RV_GCC) or firmware.RV_GCC)
        parts = {"target": self.name, "profile": p.fingerprint_parts(), "soc": soc_digest, "firmware": fw.digest,
                 "cc": gcc_id, "generator": generator_digest()}
        img = json.loads((fw.path.parent / "image.json").read_text())
        info = {"profile": p.summary(), "soc_digest": soc_digest, "firmware_digest": fw.digest, "cc": gcc_id,
                "cflags": [f"-march={p.march}", f"-mabi={p.mabi}", *firmware.BASE_CFLAGS, *p.cflags],
                "image": img, **{k: v for k, v in soc_info.items() if k != "soc_cached"}}
        return BuildResult(self.name, fingerprint_of(parts),
                           {"firmware": str(fw.path), "image": str(image), "soc_dir": str(soc_dir)},
                           info=info, cached=bool(soc_info.get("soc_cached")) and fw.cached)

    # ---- flashing (load.method = flash) -----------------------------------------------------------
    def flash_argv(self, build_or_image: Path) -> list[str]:
        p = self.profile
        image = Path(build_or_image)
        subs = {"{firmware_bin}": str(image), "{firmware_elf}": str(image.with_suffix(".elf")),
                "{bitstream}": p.bitstream, "{url}": p.url}
        out = []
        for a in p.flash_command:
            for k, v in subs.items():
                a = a.replace(k, v)
            out.append(a)
        return out

    def flash(self, image: Path) -> str:
        import subprocess

        argv = self.flash_argv(image)
        if not argv:
            raise UserError(f"board {self.profile.name} has no load.flash_command in its profile.")
        try:
            res = subprocess.run(argv, capture_output=True, text=True, timeout=600)
        except FileNotFoundError:
            raise UserError(f"flash tool {argv[0]} not found: install it or fix load.flash_command.") from None
        except subprocess.TimeoutExpired:
            raise UserError(f"flash command {argv[0]} did not finish within 600 s.") from None
        if res.returncode != 0:
            raise UserError(f"flash command {argv[0]} failed with exit code {res.returncode}: "
                            f"{(res.stderr.strip().splitlines() or ['no output'])[-1]}")
        crc = f"{zlib.crc32(Path(image).read_bytes()):08x}"
        lock.write_state(self.profile.url, FLASHED, crc)
        return res.stdout

    def flash_if_needed(self, link: BoardLink) -> None:
        image = Path(self._build.artifacts["image"])
        crc = f"{zlib.crc32(image.read_bytes()):08x}"
        if (lock.read_state(self.profile.url, FLASHED) or "").strip() != crc:
            link.disconnect()
            try:
                self.flash(image)
            except UserError as e:
                raise CrashError(str(e)) from None
            link.connect()
        if self.profile.reset == "command":
            link.power_cycle()
            link.connect()

    # ---- run ---------------------------------------------------------------------------------------
    def open(self, build: BuildResult) -> BoardSession:
        p = self.profile
        lock.acquire(p.url, what=f"mico {self.name}")     # PortBusy (a UserError) if another sweep has it
        if p.emulated and p.sim_port and p.sim_port != p.tcp_port():
            lock.acquire(f"socket://127.0.0.1:{p.sim_port}", what=f"mico {self.name}")
        if quarantined(p):
            raise CrashError(f"board {p.name} is quarantined after {_failures[p.url]} consecutive failures "
                             f"(last: {_last_error.get(p.url, '?')}); check it and re-run the sweep")
        for k in ("firmware", "image"):
            if not Path(build.artifacts[k]).exists():
                raise CrashError(f"the {k} of {self.name} is gone from the build cache; build again")
        lock.use(p.url)
        self._build = build
        link = BoardLink(p, Path(build.artifacts["soc_dir"]))
        session = BoardSession(self, build, link)
        try:
            for attempt in range(MAX_RECOVERIES + 1):
                try:
                    session.boot()
                    break
                except (MeasureError, EOFError) as e:
                    if attempt == MAX_RECOVERIES:
                        raise
                    log.info("board %s did not boot (%s); reset and try again", p.name, e)
                    session.client.stats.reconnects += 1
                    try:
                        link.power_cycle()
                    except (MeasureError, EOFError):
                        pass
        except (MeasureError, EOFError) as e:
            detail = link.describe_failure()
            session.close_link(timeout=0.5)
            err = e if isinstance(e, MeasureError) else CrashError(str(e))
            _fail(p, err)
            raise CrashError(f"{self.name} did not boot: {err}", getattr(err, "detail", "") or detail) from None
        except BaseException:
            session.close_link(timeout=0.2)
            raise
        return session

    def describe(self) -> dict:
        d = super().describe()
        d["profile"] = self.profile.source
        return d


registry.register("board:", BoardTarget)
