"""VexRiscv targets in Verilator: every (qa, qw) pair checksum-verified with identical repeats,
generated models bit-exact, the bring-your-own adapter, parameters and crash records.

Real Verilator, real riscv64-unknown-elf-gcc, real pipes; builds go to the per-session cache.
"""

import itertools
import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from harness import registry
from harness.errors import CrashError, DoesNotFitError, UserError
from harness.measure import measure
from helpers.oracle import MODEL_ABI
from harness.spec import KernelSpec

from mico_cli import mico

BITS = (1, 2, 4, 8)
PAIRS = list(itertools.product(BITS, BITS))
VEX = ("vexriscv-cacheless", "vexriscv-small", "vexriscv-full", "vexriscv-mico")


def _need(name: str, **params):
    t = registry.get(name, **params)
    ok, why = t.available()
    if not ok:
        pytest.skip(f"{name}: {why}")
    return t


@pytest.fixture(scope="module")
def sessions():
    """One booted simulator per target, shared by the module's tests."""
    opened = {}

    def get(name, **params):
        key = (name, tuple(sorted(params.items())))
        if key not in opened:
            t = _need(name, **params)
            b = t.build()
            opened[key] = (t, b, t.open(b))
        return opened[key]

    yield get
    for _, _, s in opened.values():
        s.close()


def _shapes(qa, qw):
    """Small random shapes (seeded per pair): K off a multiple of 32, strides, padding, groups."""
    rng = np.random.default_rng(qa * 16 + qw)
    n, m, k = int(rng.integers(1, 4)), int(rng.integers(1, 9)), int(rng.integers(20, 100))
    c, hw, g = int(rng.choice([2, 4])), int(rng.integers(4, 8)), int(rng.choice([1, 2]))
    ks, s = int(rng.choice([1, 3])), int(rng.choice([1, 2]))
    p = int(rng.integers(0, ks // 2 + 1))
    return [KernelSpec("matmul", (n, m, k), qa, qw), KernelSpec("conv2d", (1, c, hw, hw, 4, ks, s, p, g), qa, qw)]


@pytest.mark.parametrize("name", VEX)
def test_every_pair_checksum_verified_and_repeat_identical(sessions, name):
    t, b, s = sessions(name)
    assert s.hello.target_id == name and s.hello.timer_unit == "cycles"
    assert set(s.hello.pairs) == set(PAIRS)
    for qa, qw in PAIRS:
        for spec in _shapes(qa, qw):
            m = measure(s, spec, b.fingerprint, t.deterministic, timeout=t.kernel_timeout)
            assert m.status == "ok" and m.checksum_ok, (spec, m)
            assert len(m.raw) == 2 and m.raw[0] == m.raw[1] > 0, (spec, m.raw)


def test_targets_lists_all_five_and_why_vexiiriscv_is_not_configured():
    env = {k: v for k, v in os.environ.items() if k != "MICO_VEXIIRISCV_VERILOG"}
    rows = {r["name"]: r for r in json.loads(mico("targets", "--json", env=env).stdout)}
    for n in (*VEX, "vexiiriscv"):
        assert n in rows, n
        assert rows[n]["deterministic"] and rows[n]["unit"] == "cycles"
    v = rows["vexiiriscv"]
    assert not v["available"]
    assert v["reason"].startswith("no VexiiRiscv Verilog configured") and "core_verilog=FILE" in v["reason"]
    assert "docs/vexiiriscv.md" in v["reason"]


def test_simd_unit_beats_scalar(sessions):
    """Cycle ratios on vexriscv-mico (the issue's targets are for N=1,M=256,K=1024; this is a small proxy)."""
    _, _, mico_s = sessions("vexriscv-mico")
    _, _, full_s = sessions("vexriscv-full")
    cyc = {}
    for qa, qw in ((8, 8), (2, 2), (1, 1)):
        cyc[qa] = mico_s.run_kernel(KernelSpec("matmul", (1, 32, 512), qa, qw), 1, 0, 1).values[0]
    scalar = full_s.run_kernel(KernelSpec("matmul", (1, 32, 512), 8, 8), 1, 0, 1).values[0]
    assert cyc[8] / cyc[2] > 3.0 and cyc[8] / cyc[1] > 5.0, cyc
    assert cyc[8] < scalar / 2.5, (cyc[8], scalar)


# ---- generated models --------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name", ["vexriscv-full", "vexriscv-mico"])
def test_generated_model_bit_exact(sessions, name):
    from helpers.models import random_graph, random_inputs
    from kernels.ir import codegen

    t, _, s = sessions(name)
    for i, pairs in enumerate(([(8, 8)] * 4, [(8, 4), (2, 2), (4, 1), (1, 8)], [(1, 1), (2, 4), (4, 8), (8, 2)])):
        rng = np.random.default_rng(100 + i)
        g = random_graph(rng, pairs, **({"groups": 2, "stride": 2} if i == 1 else {}))
        gen = codegen.generate(g, {"model": "test"})
        image = codegen.compile_image(gen, t.model_toolchain())
        info = s.load_model(image)
        assert info["n_layers"] == len(gen.timed_layers)
        xs = random_inputs(rng, g, 3)
        ref = g.run(xs)
        assert len(np.unique(ref)) > 3
        for j in range(len(xs)):
            r = s.run_model(xs[j].tobytes())
            np.testing.assert_array_equal(np.asarray(r.outputs), ref[j])
            assert len(r.layers) == len(gen.timed_layers) and r.total >= sum(r.layers) > 0


def test_trap_in_loaded_code_is_a_crash_record_with_mcause():
    """A model image whose entry is an illegal instruction: the trap handler reports it, the
    simulator exits, and the client's CrashError carries the testbench's message."""
    t = _need("vexriscv-full")
    s = t.open(t.build())
    try:
        header = struct.pack("<8I", 0x4D43494D, MODEL_ABI, 32, 36, 4, 1, 1, 0)
        s.load_model(header + struct.pack("<I", 0))   # 0x00000000 is an illegal instruction
        with pytest.raises(CrashError) as ei:
            s.run_model(bytes(4))
        assert "illegal instruction" in ei.value.detail and "exited with status 3" in ei.value.detail
    finally:
        s.transport.close(timeout=0.5)


# ---- parameters ----------------------------------------------------------------------------
def test_wait_states_and_memory_size_are_parameters_and_fingerprint():
    spec = KernelSpec("matmul", (2, 8, 64), 8, 8)
    runs = {}
    for ws in (0, 3):
        t = _need("vexriscv-cacheless", wait_states=ws)
        b = t.build()
        with t.open(b) as s:
            runs[ws] = (b.fingerprint, measure(s, spec, b.fingerprint, True).median)
    assert runs[0][0] != runs[3][0]
    assert runs[3][1] > runs[0][1]

    t = _need("vexriscv-full", mem_kib=256)
    b = t.build()
    with t.open(b) as s:
        assert s.hello.ram_bytes < 256 * 1024
        with pytest.raises(DoesNotFitError):
            s.run_kernel(KernelSpec("matmul", (64, 256, 1024), 8, 8), 1, 0, 2)
        assert measure(s, spec, b.fingerprint, True).status == "ok"   # still alive after the refusal
    assert b.fingerprint != _need("vexriscv-full").build().fingerprint


@pytest.mark.parametrize("params,needle", [
    ({"mem_kib": 16}, "mem_kib"),
    ({"wait_states": "many"}, "integer"),
    ({"colour": "blue"}, "no parameter 'colour'"),
])
def test_bad_parameters_are_one_sentence(params, needle):
    with pytest.raises(UserError, match=needle):
        registry.get("vexriscv-full", **params)


def test_cli_measure_on_vexriscv_json():
    if not registry.get("vexriscv-small").available()[0]:
        pytest.skip("vexriscv-small unavailable")
    out = json.loads(mico("measure", "--target", "vexriscv-small", "--op", "conv2d", "--shape", "1,2,5,5,3,3,1,1",
                          "--qa", "4", "--qw", "2", "--json").stdout)
    text = json.dumps(out)
    assert '"ok"' in text and "cycles" in text


# ---- bring your own core ----------------------------------------------------------------
def _full_v() -> Path:
    from rtl_sims.vexriscv.targets import vexriscv_verilog_dir

    d = vexriscv_verilog_dir()
    if d is None:
        pytest.skip("pythondata-cpu-vexriscv not installed")
    return d / "VexRiscv_Full.v"


def _byo_check(t):
    ok, why = t.available()
    assert ok, why
    b = t.build()
    with t.open(b) as s:
        assert s.hello.target_id == "vexiiriscv"
        for qa, qw in ((8, 8), (1, 1), (4, 2), (2, 8)):
            for spec in _shapes(qa, qw):
                m = measure(s, spec, b.fingerprint, True)
                assert m.status == "ok" and m.checksum_ok and m.raw[0] == m.raw[1]
    return b


def test_vexiiriscv_adapter_runs_user_verilog_from_params():
    t = registry.get("vexiiriscv", core_verilog=str(_full_v()), core_top="VexRiscv")
    b = _byo_check(t)
    assert b.info["core"]["top"] == "VexRiscv" and b.info["core"]["timer"] == "testbench"
    assert b.fingerprint != registry.get("vexriscv-full").build().fingerprint


def test_vexiiriscv_adapter_from_profile_file_and_env(tmp_path, monkeypatch):
    prof = tmp_path / "core.toml"
    prof.write_text(f'[core]\nverilog = ["{_full_v()}"]\ntop = "VexRiscv"\ntimer = "mcycle"\n'
                    f'ibus = "iBusWishbone_"\ndbus = "dBusWishbone_"\naddress = "word"\n')
    b = _byo_check(registry.get("vexiiriscv", profile=str(prof)))
    assert b.info["core"]["timer"] == "mcycle"
    monkeypatch.setenv("MICO_VEXIIRISCV_VERILOG", str(prof))
    t = registry.get("vexiiriscv")
    assert t.available() == (True, "")
    assert t.build().fingerprint == b.fingerprint


@pytest.mark.parametrize("params,needle", [
    ({"core_verilog": "/nonexistent/VexiiRiscv.v"}, "does not exist"),
    ({"profile": "/nonexistent/core.toml"}, "does not exist"),
])
def test_vexiiriscv_misconfiguration_says_why(params, needle):
    ok, why = registry.get("vexiiriscv", **params).available()
    assert not ok and needle in why


def test_vexiiriscv_wrong_top_is_a_build_error():
    from harness.errors import BuildError

    t = registry.get("vexiiriscv", core_verilog=str(_full_v()), core_top="NoSuchModule")
    with pytest.raises(BuildError, match="verilator"):
        t.build()


def test_missing_cross_compiler_is_one_sentence(tmp_path):
    """With no riscv64-unknown-elf-gcc on PATH every vexriscv target says so (and how to fix it)."""
    env = dict(os.environ, PATH=str(tmp_path))
    rows = {r["name"]: r for r in json.loads(mico("targets", "--json", env=env).stdout)}
    for n in VEX:
        assert not rows[n]["available"]
        assert rows[n]["reason"] == "riscv64-unknown-elf-gcc not found: run make setup"
    r = mico("measure", "--target", "vexriscv-full", "--op", "matmul", "--shape", "1,2,32", "--qa", "8", "--qw", "8",
             env=env, check=False)
    assert r.returncode == 2 and "riscv64-unknown-elf-gcc not found: run make setup" in r.stderr
    assert "Traceback" not in r.stderr
