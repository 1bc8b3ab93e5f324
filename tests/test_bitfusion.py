"""BitFusion: ISA, compiler, the Verilated RTL target (small array) and the analytical model.

Every RTL result is checked bit-exact: through the harness (checksum of the
int32 outputs the RTL stored in DRAM vs the NumPy reference) or element by
element.  The arrays here are small (4 x 8 FUs) so the suite stays fast; the
targets default to the published 16 x 32 configuration.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal

import numpy as np
import pytest

from harness import registry
from harness.errors import CrashError, DoesNotFitError, UserError
from harness.measure import measure, spec_seed
from harness.spec import KernelSpec
from kernels import reference
from rtl_sims.bitfusion import isa, isa_sim
from rtl_sims.bitfusion.compiler import (PUBLISHED, ArrayConfig, Gemm, candidates, choose_plan, compile_kernel,
                                         kernel_gemm)
from rtl_sims.bitfusion.model import predict

from helpers.models import random_graph, random_inputs
from mico_cli import mico

BITS = (1, 2, 4, 8)
PAIRS = list(itertools.product(BITS, BITS))
SMALL = {"rows": 4, "cols": 8, "ibuf_kib": 4, "wbuf_kib": 1, "obuf_kib": 2, "dram_bits": 128, "dram_latency": 8}
PARAM_ARGS = [a for k, v in SMALL.items() for a in ("--param", f"{k}={v}")]


def random_shape(rng: random.Random, op: str):
    if op == "matmul":
        return (rng.randint(1, 70), rng.randint(1, 40), rng.randint(1, 300))
    C = rng.randint(1, 12)
    g = rng.choice((1, 1, C))
    K = g * rng.randint(1, 3) if g > 1 else rng.randint(1, 24)
    ks = rng.choice((1, 3, 5))
    H = rng.randint(ks, 11)
    return (rng.randint(1, 2), C, H, H + rng.randint(0, 2), K, ks, rng.choice((1, 2)), rng.choice((0, ks // 2)), g)


@pytest.fixture(scope="module")
def rtl():
    t = registry.get("bitfusion-rtl", **SMALL)
    b = t.build()
    s = t.open(b)
    yield t, b, s
    s.close()


# ---- ISA and compiler (no RTL) ---------------------------------------------------------

def test_isa_encode_decode_roundtrip():
    words = [isa.setup(4, 2, True, False, 1, 2, 2), isa.loop(7), isa.stride(3, 2, -40), isa.ld(1, 2, 96, 1 << 20),
             isa.st(2, 64, 12345), isa.compute(3, 4, 1, 2, 3, 7, ib=17, wb=5), isa.cshape(64, 16, 48),
             isa.endloop(), isa.halt()]
    d = [isa.decode(w) for w in words]
    assert d[0].fields == {"qa": 4, "qw": 2, "a_signed": 1, "w_signed": 0, "islots": 1, "wslots": 2, "oslots": 2}
    assert d[2].fields == {"group": 3, "level": 2, "stride": -40}
    assert d[3].fields == {"buf": "WBUF", "group": 2, "words": 96, "addr": 1 << 20}
    assert d[5].fields["ib"] == 17 and d[5].fields["rel_w"] == 7 and d[5].fields["gw"] == 4
    assert d[6].fields == {"nt": 64, "steps": 16, "nstride": 48}
    assert "LOOP count=7" in isa.disassemble(words)
    with pytest.raises(ValueError):
        isa.loop(0)


def test_fusion_geometry_matches_bitfusion():
    """P products per Fusion Unit per cycle: 1 (8x8), 2 (8x4), 4 (4x4, 8x2), 8 (4x2), 16 (2x2, 1-bit as 2-bit)."""
    from rtl_sims.bitfusion.compiler import Geometry

    want = {(8, 8): 1, (8, 4): 2, (4, 8): 2, (4, 4): 4, (8, 2): 4, (2, 8): 4, (4, 2): 8, (2, 4): 8, (2, 2): 16,
            (1, 1): 16, (1, 8): 4, (8, 1): 4}
    for (qa, qw), P in want.items():
        g = Geometry(qa, qw, 16)
        assert g.P == P and g.wa in (8, 16, 32) and g.ww in (8, 16, 32)


@pytest.mark.parametrize("seed", range(4))
def test_compiled_programs_correct_on_the_isa_interpreter(seed):
    """Every tiling candidate (loop order, slots, tiles) computes the reference on the ISA interpreter."""
    cfg = ArrayConfig(rows=4, cols=8, ibuf_bytes=4096, wbuf_bytes=1024, obuf_bytes=2048)
    rng = random.Random(seed)
    n = 0
    for qa, qw in PAIRS[seed::4]:
        op = rng.choice(("matmul", "conv2d"))
        shape = random_shape(rng, op)
        a, w = reference.random_inputs(op, shape, qa, qw, seed + 1)
        want = reference.expected_output(op, shape, qa, qw, seed + 1)
        gemm, _ = kernel_gemm(op, shape, qa, qw)
        cands = list(candidates(cfg, gemm))
        assert cands
        orders = {p.order for p in cands}
        for p in cands[::max(1, len(cands) // 6)]:
            assert p.fits()
            c = compile_kernel(cfg, op, shape, qa, qw, a, w, plan=p)
            L = c.layout
            dram = np.zeros(L.end, np.uint32)
            dram[L.a_base:L.a_base + L.a_words] = c.a_img
            dram[L.w_base:L.w_base + L.w_words] = c.w_img
            st = isa_sim.run(cfg, c.program, dram)
            assert st["compute"] == gemm.groups * p.n_tiles * p.m_tiles * p.k_tiles
            np.testing.assert_array_equal(c.outputs(dram[L.y_base:L.end]), want)
            n += 1
        assert orders & {"S", "A"}
    assert n >= 8


def test_model_compute_bound_limit_and_published_defaults():
    assert (PUBLISHED.rows, PUBLISHED.cols, PUBLISHED.ibuf_bytes, PUBLISHED.wbuf_bytes, PUBLISHED.obuf_bytes,
            PUBLISHED.dram_bits) == (16, 32, 65536, 32768, 16384, 128)
    wide = ArrayConfig(dram_bits=1024)
    for q, P in ((8, 1), (4, 4), (2, 16)):
        p = predict(choose_plan(wide, Gemm(1, 256, 1024, 1024, q, q)))
        ideal = 256 * 1024 * 1024 // (16 * 32 * P)
        assert ideal <= p.cycles <= 1.05 * ideal, (q, p)
    # at 128 bits/cycle the low precisions are memory-bound (int32 outputs, W re-streamed per row tile)
    p2 = predict(choose_plan(PUBLISHED, Gemm(1, 256, 1024, 1024, 2, 2)))
    assert p2.bound == "memory" and p2.cycles > 2 * 32768


def test_bad_parameters_are_user_errors():
    with pytest.raises(UserError, match="no parameter"):
        registry.get("bitfusion-rtl", banana=1)
    with pytest.raises(UserError, match="powers of two"):
        registry.get("bitfusion-model", rows=3)
    with pytest.raises(UserError, match="beat"):
        registry.get("bitfusion-rtl", cols=2, dram_bits=128)


# ---- the RTL target ----------------------------------------------------------------------

def test_hello_and_info(rtl):
    t, b, s = rtl
    h = s.hello
    assert h.timer_unit == "cycles" and h.target_id == "bitfusion-rtl"
    assert set(h.ops) == {"matmul", "conv2d"} and set(h.pairs) == set(PAIRS)
    info = s.client.info()
    assert info["rows"] == 4 and info["cols"] == 8 and info["dram_bits"] == 128
    assert b.fingerprint == t.build().fingerprint           # cached, same fingerprint


@pytest.mark.parametrize("qa,qw", PAIRS)
def test_rtl_bit_exact_random_shapes(rtl, qa, qw):
    """Through the harness: one run + one repeat, identical cycles, checksum of the RTL's outputs == reference."""
    t, b, s = rtl
    rng = random.Random(qa * 16 + qw)
    for op in ("matmul", "conv2d", "matmul"):
        spec = KernelSpec(op, random_shape(rng, op), qa, qw)
        m = measure(s, spec, b.fingerprint, deterministic=True)
        assert m.status == "ok" and m.checksum_ok is True, spec
        assert m.raw[0] == m.raw[1] > 0
        # the outputs really come from the RTL: a wrong plan would give a wrong checksum
        assert s.last["perf"]["compute"] > 0 and s.last["perf"]["beats"] > 0


def test_rtl_every_tiling_bit_exact(rtl):
    """Loop orders S/A/B, single and double buffering, several k tiles: all bit-exact on the RTL."""
    t, b, s = rtl
    seen = set()
    for op, shape, qa, qw in [("matmul", (70, 33, 600), 8, 8), ("matmul", (9, 70, 1000), 2, 4),
                              ("conv2d", (1, 6, 9, 9, 20, 3, 1, 1, 1), 4, 1), ("conv2d", (2, 8, 6, 6, 8, 3, 2, 1, 8), 1, 8)]:
        a, w = reference.random_inputs(op, shape, qa, qw, 5)
        want = reference.expected_output(op, shape, qa, qw, 5)
        gemm, _ = kernel_gemm(op, shape, qa, qw)
        by_kind = {}
        for p in candidates(s.cfg, gemm):
            by_kind.setdefault((p.order, p.islots, p.wslots, p.oslots, p.k_tiles > 1), p)
        for key, p in by_kind.items():
            c = compile_kernel(s.cfg, op, shape, qa, qw, a, w, plan=p)
            cycles, y = s.execute(c, 1)
            np.testing.assert_array_equal(y, want, err_msg=f"{op} {shape} {qa}x{qw} {p.describe()}")
            seen.add(key[0])
            seen.add(("slots", key[1], key[2], key[3]))
    assert {"S", "A", "B"} <= seen and ("slots", 1, 1, 1) in seen and ("slots", 2, 2, 2) in seen


def test_model_tracks_rtl(rtl):
    """bitfusion-model vs bitfusion-rtl on the compiler's own plans: median |error| <= 5%."""
    t, b, s = rtl
    rng = random.Random(11)
    errs = []
    for i in range(24):
        op = "matmul" if i % 2 else "conv2d"
        spec = KernelSpec(op, random_shape(rng, op), *PAIRS[(i * 5) % 16])
        c = s.compile(spec, spec_seed(spec))
        cycles, _ = s.execute(c, 1)
        errs.append(abs(predict(c.plan).cycles - cycles[0]) / cycles[0])
    assert np.median(errs) <= 0.05, sorted(errs)


def test_compute_bound_precision_scaling(tmp_path):
    """With a DRAM port wide enough to be compute-bound, 4x4 is ~4x and 2x2 ~16x faster than 8x8 on the RTL."""
    t = registry.get("bitfusion-rtl", rows=4, cols=16, ibuf_kib=8, wbuf_kib=2, obuf_kib=4, dram_bits=512,
                     dram_latency=8)
    s = t.open(t.build())
    try:
        cyc = {}
        for q in (8, 4, 2):
            spec = KernelSpec("matmul", (64, 64, 2048), q, q)
            m = measure(s, spec, "x", deterministic=True)
            assert m.checksum_ok
            cyc[q] = m.raw[0]
    finally:
        s.close()
    assert cyc[8] / cyc[4] >= 3.5 and cyc[8] / cyc[2] >= 12, cyc


def test_does_not_fit_is_typed(rtl):
    t = registry.get("bitfusion-rtl", **dict(SMALL, dram_mib=1))
    s = t.open(t.build())
    try:
        with pytest.raises(DoesNotFitError):
            s.run_kernel(KernelSpec("matmul", (512, 512, 2048), 8, 8), 1, 0, 2)
        # the testbench is still usable afterwards
        assert s.run_kernel(KernelSpec("matmul", (2, 3, 4), 8, 8), 1, 0, 2).values
    finally:
        s.close()


def test_bad_frames_are_retried_and_crash_is_typed(rtl):
    t = registry.get("bitfusion-rtl", **SMALL)
    s = t.open(t.build())
    s.transport.write(b"\x05garbage\x11\x00")        # a damaged frame: answered with BAD_FRAME
    r = s.run_kernel(KernelSpec("matmul", (3, 5, 64), 4, 4), 9, 0, 2)
    assert r.checksum == reference.expected_checksum("matmul", (3, 5, 64), 4, 4, 9)
    assert s.client.stats.bad_frames >= 1
    os.kill(s.transport.pid, signal.SIGKILL)
    with pytest.raises(CrashError):
        s.run_kernel(KernelSpec("matmul", (3, 5, 64), 4, 4), 9, 0, 2)
    s.transport.close()


# ---- integer models (deploy) ------------------------------------------------------------------

@pytest.mark.parametrize("pairs,kw", [([(8, 8), (4, 4), (2, 2), (1, 1)], {}),
                                      ([(1, 8), (8, 1), (2, 4), (4, 2)], {"pool": "avg"}),
                                      ([(4, 8), (8, 2), (1, 4), (2, 1)], {"groups": 8})])
def test_integer_model_bit_exact(rtl, pairs, kw):
    """Conv / linear on the accelerator, requant / pool / bias on the host side == the IR reference."""
    t, b, s = rtl
    rng = np.random.default_rng(len(str(pairs)))
    g = random_graph(rng, pairs, **kw)
    info = s.load_ir_model(g)
    assert info["in_count"] == 243 and info["out_count"] == 10 and info["n_layers"] == 5
    xs = random_inputs(rng, g, 4)
    ref = g.run(xs)
    for i in range(len(xs)):
        r = s.run_model(xs[i].tobytes())
        np.testing.assert_array_equal(np.asarray(r.outputs), ref[i])
        assert len(r.layers) == 5 and r.layers[1] == 0 and min(r.layers[0], r.layers[2], r.layers[3]) > 0
        assert r.total == sum(r.layers)
    assert len(np.unique(ref)) > 3


# ---- through the CLI: sweep (resume, export) and deploy ------------------------------------------

def test_cli_sweep_resume_and_export(tmp_path, rtl):
    store = tmp_path / "bf.db"
    r = mico("sweep", "--target", "bitfusion-rtl", "--plan", "smoke", "--store", store, "--jobs", "2",
             *PARAM_ARGS, "--no-progress", "--json")
    s1 = json.loads(r.stdout)
    assert s1["total"] == 64 and s1["by_status"] == {"ok": 64}
    r = mico("sweep", "--target", "bitfusion-rtl", "--plan", "smoke", "--store", store, *PARAM_ARGS,
             "--no-progress", "--json")
    s2 = json.loads(r.stdout)
    assert s2["skipped_existing"] == 64 and s2["measured"] == 0
    out = tmp_path / "mm.csv"
    mico("export", "--store", store, "--target", "bitfusion-rtl", "--op", "matmul", "--format", "mico-csv",
         "-o", out)
    lines = out.read_text().strip().splitlines()
    assert lines[0].startswith("N,M,K,QA,QW,Time") and len(lines) == 1 + 32
    # the analytical model sweeps the same plan (predictions)
    r = mico("sweep", "--target", "bitfusion-model", "--plan", "smoke", "--store", store, *PARAM_ARGS,
             "--no-progress", "--json")
    s3 = json.loads(r.stdout)
    assert s3["by_status"] == {"ok": 64} and s3["fingerprint"] != s1["fingerprint"]


def test_cli_deploy_on_the_accelerator(tmp_path):
    """`mico deploy --target bitfusion-rtl`: a quantised LeNet, conv/linear on the RTL, bit-exact."""
    import torch

    from mpq.datasets import load_dataset
    from mpq.models import get_model
    from mpq.scheme import save_scheme
    from mpq.train import quantize

    torch.manual_seed(0)
    data = load_dataset("digits")
    model = get_model("lenet", "digits")
    bits = [(8, 8), (4, 2), (2, 4), (8, 1)][:len(model.layer_names)]
    bits += [(8, 8)] * (len(model.layer_names) - len(bits))
    q = quantize(model, bits, data.x_train[:256])
    q.eval()
    specs = q.layer_specs(1)
    doc = {"model": "lenet", "dataset": "digits", "seed": 0, "scale_policy": "mico",
           "layers": [{"name": n, "kind": "conv2d" if s.op == "conv2d" else "linear", "qa": s.qa, "qw": s.qw,
                       "spec": s.to_dict()} for n, s in zip(q.layer_names, specs)]}
    path = save_scheme(tmp_path / "scheme.json", doc, q)
    out = tmp_path / "deploy.json"
    mico("deploy", "--scheme", path, "--target", "bitfusion-rtl", *PARAM_ARGS, "--limit", "5", "--no-progress",
         "--json", "-o", out)
    rep = json.loads(out.read_text())
    assert rep["bit_exact"] is True and rep["n_images"] == 5 and rep["latency"]["unit"] == "cycles"
    kinds = [l["kind"] for l in rep["latency"]["layers"]]
    assert kinds.count("conv") + kinds.count("linear") == len(model.layer_names)
    assert all(l["measured_median"] > 0 for l in rep["latency"]["layers"] if l["kind"] != "pool")


def test_deploy_predicts_each_layer_with_the_accelerator_model(rtl):
    """Without a proxy, deploy's predictions on the accelerator are its analytical model of the
    loaded programs: every timed layer predicted, the whole model within 5 %."""
    from mpq.deploy import run_on_device

    t, b, s = rtl
    rng = np.random.default_rng(11)
    g = random_graph(rng, [(8, 8), (4, 4), (2, 2), (1, 1)])
    run = run_on_device(s, g, random_inputs(rng, g, 2))
    assert run.model_predicted is not None and len(run.model_predicted) == len(g.timed_nodes)
    measured = float(np.median(run.totals))
    assert abs(sum(run.model_predicted) - measured) <= 0.05 * measured
