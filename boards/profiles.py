"""Board profiles: one TOML file per board (boards/profiles/*.toml).

A profile says which SoC the board carries (LiteX, CPU and variant, clock),
how to reach its UART (a pyserial URL and a baud rate), where its RAM is, how
the bench firmware gets onto it (LiteX BIOS serialboot over the same link, or
a flash command), how to reset it, and how its numbers behave.  Profiles are
found in boards/profiles/, in the folders of ``MICO_BOARDS_PATH``
(``:``-separated), or given as a file with ``--param profile=FILE``.
See docs/boards.md for every key.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.errors import UserError

BUILTIN_DIR = Path(__file__).resolve().parent / "profiles"
PATH_ENV = "MICO_BOARDS_PATH"

SOC_KINDS = ("litex-sim", "litex")
LOAD_METHODS = ("serialboot", "flash")
RESETS = ("process", "command", "none")
TIMERS = ("uptime", "mcycle")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    source: str                      # the TOML file it came from
    # [soc]
    soc_kind: str = "litex-sim"
    cpu: str = "vexriscv"
    cpu_variant: str = "standard"
    clock_hz: int = 1_000_000
    build_dir: str = ""              # kind=litex: the board's LiteX build folder
    sim_port: int = 0                # kind=litex-sim: where the simulator listens (default: the URL's port)
    # [memory]
    main_ram_base: int = 0x40000000
    main_ram_size: int = 0x400000
    # [serial]
    url: str = "socket://127.0.0.1:21450"
    baud: int = 115200
    chunk: int = 0                   # pace host->board writes: bytes per write (0 = unpaced) ...
    chunk_gap_s: float = 0.0         # ... and the pause after each
    # [load]
    load: str = "serialboot"
    flash_command: tuple[str, ...] = ()
    reset: str = "process"
    reset_command: tuple[str, ...] = ()
    bitstream: str = ""
    sfl_chunk: int = 112             # SFL LOAD data bytes per frame: a frame (120 B) must fit the BIOS's 128-byte RX ring
    # [firmware]
    march: str = "rv32im"
    mabi: str = "ilp32"
    cflags: tuple[str, ...] = ()
    timer: str = "uptime"
    # [timing]
    deterministic: bool = True
    reply_timeout_s: float = 5.0
    kernel_timeout_s: float = 300.0
    boot_timeout_s: float = 60.0
    quarantine_after: int = 3

    @property
    def emulated(self) -> bool:
        return self.soc_kind == "litex-sim"

    def tcp_port(self) -> int | None:
        m = re.match(r"^socket://([^:/]+):(\d+)", self.url)
        return int(m.group(2)) if m else None

    def with_overrides(self, **kw: Any) -> "Profile":
        d = asdict(self)
        d.update(kw)
        p = Profile(**d)
        p.check()
        return p

    def check(self) -> None:
        where = f"board profile {self.source}"
        if not NAME_RE.match(self.name):
            raise UserError(f"{where}: name {self.name!r} must be lower-case letters, digits, '-', '_' or '.'.")
        if self.soc_kind not in SOC_KINDS:
            raise UserError(f"{where}: soc.kind must be one of {', '.join(SOC_KINDS)}, not {self.soc_kind!r}.")
        if self.load not in LOAD_METHODS:
            raise UserError(f"{where}: load.method must be one of {', '.join(LOAD_METHODS)}, not {self.load!r}.")
        if self.reset not in RESETS:
            raise UserError(f"{where}: load.reset must be one of {', '.join(RESETS)}, not {self.reset!r}.")
        if self.timer not in TIMERS:
            raise UserError(f"{where}: firmware.timer must be one of {', '.join(TIMERS)}, not {self.timer!r}.")
        if self.load == "flash" and not self.flash_command:
            raise UserError(f"{where}: load.method = 'flash' needs load.flash_command.")
        if self.reset == "command" and not self.reset_command:
            raise UserError(f"{where}: load.reset = 'command' needs load.reset_command.")
        if self.reset == "process" and not self.emulated:
            raise UserError(f"{where}: load.reset = 'process' only applies to soc.kind = 'litex-sim'.")
        if self.emulated:
            if not self.url.startswith("socket://127.0.0.1:"):
                raise UserError(f"{where}: the emulated board is reached at socket://127.0.0.1:PORT only.")
        elif not self.build_dir:
            raise UserError(f"{where}: soc.build_dir must name the board's LiteX build folder "
                            "(the one with software/include/generated/csr.h).")
        if self.clock_hz <= 0 or self.baud <= 0:
            raise UserError(f"{where}: soc.clock_hz and serial.baud must be positive.")
        if self.main_ram_base % 4 or self.main_ram_size < 64 * 1024:
            raise UserError(f"{where}: memory.main_ram must be word aligned and at least 64 KiB.")
        if not 16 <= self.sfl_chunk <= 251:
            raise UserError(f"{where}: load.sfl_chunk must be within 16 .. 251 bytes.")
        for t in ("reply_timeout_s", "kernel_timeout_s", "boot_timeout_s"):
            if getattr(self, t) <= 0:
                raise UserError(f"{where}: timing.{t} must be positive.")

    def summary(self) -> dict:
        d = asdict(self)
        d["main_ram_base"] = f"0x{self.main_ram_base:08x}"
        d["main_ram_size"] = f"0x{self.main_ram_size:x}"
        return d

    def fingerprint_parts(self) -> dict:
        """What changes a number: not the port or timeouts, but the SoC, clock, memory and firmware flags."""
        keys = ("name", "soc_kind", "cpu", "cpu_variant", "clock_hz", "main_ram_base", "main_ram_size",
                "march", "mabi", "cflags", "timer")
        return {k: getattr(self, k) for k in keys}


_SECTIONS = {
    "soc": {"kind": "soc_kind", "cpu": "cpu", "cpu_variant": "cpu_variant", "clock_hz": "clock_hz",
            "build_dir": "build_dir", "sim_port": "sim_port"},
    "memory": {"main_ram_base": "main_ram_base", "main_ram_size": "main_ram_size"},
    "serial": {"url": "url", "baud": "baud", "chunk": "chunk", "chunk_gap_s": "chunk_gap_s"},
    "load": {"method": "load", "flash_command": "flash_command", "reset": "reset", "reset_command": "reset_command",
             "bitstream": "bitstream", "sfl_chunk": "sfl_chunk"},
    "firmware": {"march": "march", "mabi": "mabi", "cflags": "cflags", "timer": "timer"},
    "timing": {"deterministic": "deterministic", "reply_timeout_s": "reply_timeout_s",
               "kernel_timeout_s": "kernel_timeout_s", "boot_timeout_s": "boot_timeout_s",
               "quarantine_after": "quarantine_after"},
}
_TUPLES = {"flash_command", "reset_command", "cflags"}


def parse(path: Path) -> Profile:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"board profile {path} does not exist.") from None
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read the board profile {path}: {e}.") from None
    kw: dict[str, Any] = {"name": data.get("name", path.stem), "description": data.get("description", ""),
                          "source": str(path)}
    unknown = sorted(set(data) - set(_SECTIONS) - {"name", "description"})
    if unknown:
        raise UserError(f"board profile {path}: unknown key {unknown[0]!r}; sections are {', '.join(_SECTIONS)}.")
    for sec, keys in _SECTIONS.items():
        body = data.get(sec, {})
        if not isinstance(body, dict):
            raise UserError(f"board profile {path}: [{sec}] must be a table.")
        bad = sorted(set(body) - set(keys))
        if bad:
            raise UserError(f"board profile {path}: unknown key {sec}.{bad[0]}; known: {', '.join(sorted(keys))}.")
        for k, v in body.items():
            field_name = keys[k]
            if field_name in _TUPLES:
                if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                    raise UserError(f"board profile {path}: {sec}.{k} must be a list of strings.")
                v = tuple(v)
            kw[field_name] = v
    if kw.get("soc_kind") == "litex" and "reset" not in kw:
        kw["reset"] = "none"          # a real board is reset only by a command the profile names
    if "build_dir" in kw and kw["build_dir"]:
        kw["build_dir"] = str((path.parent / Path(kw["build_dir"]).expanduser()).resolve())
    try:
        prof = Profile(**kw)
    except TypeError as e:
        raise UserError(f"board profile {path}: {e}.") from None
    for f, typ in (("clock_hz", int), ("baud", int), ("main_ram_base", int), ("main_ram_size", int),
                   ("sim_port", int), ("chunk", int), ("sfl_chunk", int), ("quarantine_after", int)):
        if not isinstance(getattr(prof, f), typ) or isinstance(getattr(prof, f), bool):
            raise UserError(f"board profile {path}: {f} must be an integer.")
    prof.check()
    return prof


def search_dirs() -> list[Path]:
    dirs = [BUILTIN_DIR]
    for d in os.environ.get(PATH_ENV, "").split(os.pathsep):
        if d.strip():
            dirs.append(Path(d).expanduser())
    return dirs


def all_profiles() -> dict[str, Profile | UserError]:
    """name -> Profile (or the error that made it unreadable), later folders win."""
    out: dict[str, Profile | UserError] = {}
    for d in search_dirs():
        for f in sorted(d.glob("*.toml")):
            try:
                p = parse(f)
                out[p.name] = p
            except UserError as e:
                out[f.stem] = e
    return out


def find(name: str) -> Profile:
    if name.endswith(".toml") or "/" in name:
        return parse(Path(name).expanduser())
    profs = all_profiles()
    p = profs.get(name)
    if p is None:
        known = ", ".join(sorted(profs)) or "none"
        raise UserError(f"no board profile {name!r}; known: {known} (add one under boards/profiles/ "
                        f"or a folder in {PATH_ENV}).")
    if isinstance(p, UserError):
        raise p
    return p
