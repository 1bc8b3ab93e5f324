"""BitFusion output unit, widths 1..8 and layers chained through DRAM (issue 14).

Every result is checked against ``kernels.reference`` (matmul / conv2d, requant,
maxpool / avgpool; unsigned b-bit outputs as the numeric spec defines them,
clamp(y, 0, 2^b - 1)).  The RTL runs here use a small array (4 x 8 FUs); the
cocotb tests (tests/test_bitfusion_cocotb.py) cover the unit alone.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from harness import registry
from kernels import reference
from rtl_sims.bitfusion import compiler as cc
from rtl_sims.bitfusion import layer as L
from rtl_sims.bitfusion import outunit as ou
from rtl_sims.bitfusion.model import predict

SMALL = {"rows": 4, "cols": 8, "ibuf_kib": 4, "wbuf_kib": 1, "obuf_kib": 2, "dram_bits": 128, "dram_latency": 8}
CFG = cc.ArrayConfig(rows=4, cols=8, ibuf_bytes=4096, wbuf_bytes=1024, obuf_bytes=2048, dram_bits=128, dram_latency=8)


def vals(rng: np.random.Generator, b: int, shape, signed: bool = True) -> np.ndarray:
    lo, hi = ou.value_range(b, signed)
    if b == 1:
        return rng.choice(np.array([-1, 1]), size=shape)
    return rng.integers(lo, hi + 1, size=shape)


def random_layer(rng: np.random.Generator, op: str, qa: int, qw: int, out_bits: int, out_signed: bool,
                 pool: bool = False) -> dict:
    """A random layer (shapes with K not a multiple of 32, padding, stride, groups) and its data."""
    a_signed = qa == 1 or bool(rng.integers(0, 2))
    if op == "matmul":
        shape = (int(rng.integers(1, 30)), int(rng.integers(1, 26)), int(rng.integers(1, 150)))
        x, w, nch = vals(rng, qa, (shape[0], shape[2]), a_signed), vals(rng, qw, (shape[1], shape[2])), shape[1]
        pl = None
    else:
        C = int(rng.integers(1, 7))
        G = int(rng.choice([1, 1, C]))
        K = G * int(rng.integers(1, 4)) if G > 1 else int(rng.integers(1, 19))
        ks = int(rng.choice([1, 3]))
        H = int(rng.integers(ks + 2, 9))
        shape = (int(rng.integers(1, 3)), C, H, H + 1, K, ks, int(rng.choice([1, 2])), int(rng.choice([0, ks // 2])), G)
        x, w, nch = vals(rng, qa, shape[:4], a_signed), vals(rng, qw, (K, C // G, ks, ks)), K
        OH, OW, _, _ = L.conv_out_hw(shape, None)
        pl = None
        if pool and min(OH, OW) >= 2:
            pl = ("max" if out_bits == 1 or rng.integers(0, 2) else "avg", 2, int(rng.choice([1, 2])))
    bias = rng.integers(-100, 101, nch)
    mult = rng.integers(1 << 30, 1 << 31, nch)
    shift = rng.integers(30, 36, nch)
    relu = out_bits > 0 and bool(rng.integers(0, 2))
    return dict(op=op, shape=shape, qa=qa, qw=qw, x=x, w=w, bias=bias, mult=mult, shift=shift, relu=relu,
                out_bits=out_bits, out_signed=out_signed, pool=pl, a_signed=a_signed)


def compile_it(d: dict, cfg: cc.ArrayConfig = CFG, **kw) -> L.LayerProgram:
    return L.compile_layer(cfg, d["op"], d["shape"], d["qa"], d["qw"], d["w"], d["bias"], d["mult"], d["shift"],
                           d["relu"], d["out_bits"], d["out_signed"], d["pool"], kw.pop("a_base", 0),
                           a_signed=d["a_signed"], **kw)


def expected(d: dict) -> np.ndarray:
    return L.reference_output(d["op"], d["shape"], d["x"], d["w"], d["bias"], d["mult"], d["shift"], d["relu"],
                              d["out_bits"], d["out_signed"], d["pool"])


# ---- the value model and the layouts (no RTL) ---------------------------------------------

def test_output_unit_model_is_the_numeric_spec():
    """outunit (what the RTL implements) == kernels.reference.requant / maxpool / avgpool."""
    rng = np.random.default_rng(1)
    acc = np.concatenate([rng.integers(-(1 << 31), 1 << 31, 4000), rng.integers(-5000, 5000, 4000),
                          [-(1 << 31), (1 << 31) - 1, 0, -1, 1]]).reshape(-1, 1)
    n = acc.shape[0]
    bias = rng.integers(-(1 << 31), 1 << 31, (n, 1))
    bias[n // 2:] = rng.integers(-64, 64, (n - n // 2, 1))
    mult = rng.integers(1, 1 << 31, (n, 1))
    shift = rng.integers(1, 63, (n, 1))
    for b, relu in itertools.product(range(1, 9), (False, True)):
        # one channel per value: reference.requant broadcasts per-channel parameters on axis 1
        want = reference.requant(acc.reshape(1, n), bias.reshape(n), mult.reshape(n), shift.reshape(n), relu, b)[0]
        got = ou.requant_values(acc, bias, mult, shift, relu, b)[:, 0]
        np.testing.assert_array_equal(got, want)
        if b >= 2:
            u = ou.requant_values(acc, bias, mult, shift, relu, b, out_signed=False)[:, 0]
            s = ou.requant_values(acc, bias, mult, shift, False, 24)[:, 0]          # wide enough: no clamp
            np.testing.assert_array_equal(u, np.clip(s, 0, (1 << b) - 1))
    # avg pooling through the reciprocal == the reference's floor((2 sum + n) / (2 n)), every window size
    for ks, e in itertools.product((1, 2, 3, 4, 5), (2, 4, 8)):
        lo, hi = -(1 << (e - 1)), (1 << e) - 1
        x = rng.integers(lo, hi + 1, (1, 1, ks * 60, ks))
        x[0, 0, :ks] = lo
        x[0, 0, ks:2 * ks] = hi
        # the reference's int8 result wraps unsigned 8-bit averages: compare modulo 256
        want = reference.avgpool(x, ks, ks).astype(np.int64).reshape(-1) % 256
        rows = x[0, 0].reshape(60, ks, ks).reshape(60 * ks * ks, 1)
        np.testing.assert_array_equal(ou.pool_values(rows, "avg", ks * ks, e)[:, 0] % 256, want)
        np.testing.assert_array_equal(ou.pool_values(rows, "max", ks * ks, e)[:, 0],
                                      rows.reshape(60, -1).max(axis=1))


def test_widths_1_to_8_run_on_their_containers():
    """Odd widths run on the next supported width's bricks and are priced exactly like it."""
    assert len(cc.supported_pairs()) == 64
    assert [cc.eff_bits(b) for b in range(1, 9)] == [2, 2, 4, 4, 8, 8, 8, 8]
    for (a, w), (ea, ew) in (((3, 5), (4, 8)), ((1, 7), (2, 8)), ((6, 3), (8, 4)), ((5, 5), (8, 8))):
        for op, shape in (("matmul", (40, 70, 300)), ("conv2d", (1, 6, 9, 9, 20, 3, 1, 1, 1))):
            p_odd = cc.choose_plan(CFG, cc.kernel_gemm(op, shape, a, w)[0])
            p_even = cc.choose_plan(CFG, cc.kernel_gemm(op, shape, ea, ew)[0])
            assert p_odd.describe() == p_even.describe()
            assert predict(p_odd).cycles == predict(p_even).cycles
            assert predict(p_odd).dram_bytes == predict(p_even).dram_bytes
    with pytest.raises(ValueError):
        cc.eff_bits(9)


def test_row_layout_is_the_ibuf_image():
    """With the fold permutation, an activation matrix packed along K (reference.pack in e-bit
    containers, rows `pitch` words apart) is exactly the IBUF image the array reads."""
    rng = np.random.default_rng(2)
    n = 0
    for qa, qw in itertools.product((1, 2, 3, 4, 8), (2, 5, 8)):
        lg = L.layer_gemm(CFG, "matmul", (13, 9, 70), qa, qw, 4)
        for p in cc.candidates(CFG, lg.gemm, lg.out, lg.in_pitch):
            if p.a_steps == p.nstride:
                a = vals(rng, qa, (1, 13, lg.gemm.K))
                np.testing.assert_array_equal(cc.tile_images(p, a), cc.pack_matrix(a, p.geo.ea, p.rows_a, p.np_))
                n += 1
    assert n > 50
    # pack_matrix is the reference packing, row by row
    a = vals(rng, 4, (1, 5, 40))
    img = cc.pack_matrix(a, 4, 16).reshape(5, 16)
    np.testing.assert_array_equal(img[:, :5], reference.pack(a[0], 4))
    assert not img[:, 5:].any()


@pytest.mark.parametrize("seed", range(3))
def test_layers_every_tiling_on_the_isa_interpreter(seed):
    """Layers (requant, ReLU, pooling, odd widths, unsigned in / out, groups): a spread of tiling
    candidates (loop orders, 1 / 2 slots, k tiles in place) bit-exact on the ISA interpreter."""
    rng = np.random.default_rng(10 + seed)
    n, kinds = 0, set()
    for i in range(10):
        qa, qw = (int(v) for v in rng.integers(1, 9, 2))
        ob = int(rng.integers(0, 9))
        d = random_layer(rng, ("matmul", "conv2d")[i % 2], qa, qw, ob, ob <= 1 or bool(rng.integers(0, 2)),
                         pool=ob > 0)
        want = expected(d)
        first = compile_it(d)
        cands = list(cc.candidates(CFG, first.plan.gemm, first.plan.out, first.plan.rows_a))
        for p in cands[::max(1, len(cands) // 5)]:
            lp = compile_it(d, plan=p)
            got = lp.outputs(L.run_isa(CFG, lp, lp.input_image(d["x"])))
            np.testing.assert_array_equal(got, want, err_msg=f"{d['op']} {d['shape']} {qa}x{qw}->{ob} {p.describe()}")
            kinds.add((p.order, p.in_place))
            n += 1
    assert n >= 30 and {o for o, _ in kinds} >= {"A", "B"} and (("A", True) in kinds or ("S", True) in kinds)


def test_compile_layer_refuses_what_it_cannot_do():
    rng = np.random.default_rng(3)
    d = random_layer(rng, "matmul", 4, 4, 4, True)
    bad = [dict(out_bits=9), dict(out_bits=1, out_signed=False), dict(qa=9), dict(mult=np.zeros(d["shape"][1])),
           dict(shift=np.full(d["shape"][1], 63)), dict(w=d["w"] * 9), dict(pool=("max", 2, 2))]
    for change in bad:
        with pytest.raises(cc.CompileError):
            compile_it(dict(d, **change))
    with pytest.raises(cc.CompileError, match="beat"):
        compile_it(d, a_base=2)
    c = random_layer(rng, "conv2d", 4, 4, 1, True)
    with pytest.raises(cc.CompileError, match="1-bit"):
        compile_it(dict(c, pool=("avg", 2, 2)))
    with pytest.raises(cc.CompileError, match="int32"):
        compile_it(dict(c, out_bits=0, relu=True))


def test_packed_outputs_cut_the_store_traffic():
    """The output unit's reason to exist: the big GEMM's stores shrink 4x (8 bits) to 8x (4 and 2
    bits: a row's 64- or 128-bit chunk takes one 128-bit beat), and at 128 bits/cycle
    8x8 / 2x2 >= 12 and 8x8 / 4x4 >= 3.5 (model; the benchmark measures the RTL)."""
    cyc = {}
    for q in (8, 4, 2):
        lg = L.layer_gemm(cc.PUBLISHED, "matmul", (256, 1024, 1024), q, q, q)
        p = cc.choose_plan(cc.PUBLISHED, lg.gemm, lg.out, lg.in_pitch)
        k = cc.choose_plan(cc.PUBLISHED, cc.Gemm(1, 256, 1024, 1024, q, q))
        assert cc.store_beats(p) <= cc.store_beats(k) * max(q, 4) / 32
        cyc[q] = predict(p).cycles
    assert cyc[8] / cyc[4] >= 3.5 and cyc[8] / cyc[2] >= 12, cyc


# ---- the RTL --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rtl():
    t = registry.get("bitfusion-rtl", **SMALL)
    s = t.open(t.build())
    yield s
    s.close()


def run(s, lp: L.LayerProgram, x: np.ndarray) -> tuple[int, np.ndarray]:
    L.load_rtl(s.client, lp)
    r = L.run_rtl(s.client, s.cfg, lp, lp.input_image(x))
    return r.cycles[0], lp.outputs(np.frombuffer(r.out, dtype="<u4"))


@pytest.mark.parametrize("out_bits", range(0, 9))
def test_rtl_layers_bit_exact_every_output_width(rtl, out_bits):
    """Requantised (signed and unsigned), ReLU, pooled outputs, odd and even operand widths."""
    rng = np.random.default_rng(100 + out_bits)
    for i in range(6):
        qa, qw = (int(v) for v in rng.integers(1, 9, 2))
        signed = out_bits <= 1 or i % 2 == 0
        d = random_layer(rng, ("matmul", "conv2d")[i % 2], qa, qw, out_bits, signed, pool=out_bits > 0)
        lp = compile_it(d)
        cycles, got = run(rtl, lp, d["x"])
        np.testing.assert_array_equal(got, expected(d), err_msg=f"{d['op']} {d['shape']} {qa}x{qw} {lp.plan.describe()}")
        assert cycles > 0


def test_rtl_int32_kernels_odd_widths_and_unsigned(rtl):
    """The kernel path (int32 out, per-tile images): every width 1..8 on both operands, unsigned
    activations too, bit-exact against kernels.reference."""
    rng = np.random.default_rng(11)
    for qa, qw in itertools.product(range(1, 9), range(1, 9)):
        if (qa + qw) % 3:
            continue
        a_signed = qa == 1 or bool(rng.integers(0, 2))
        op = ("matmul", "conv2d")[(qa * qw) % 2]
        d = random_layer(rng, op, qa, qw, 8, True)
        x = vals(rng, qa, d["x"].shape, a_signed)
        c = cc.compile_kernel(rtl.cfg, op, d["shape"], qa, qw, x, d["w"], a_signed=a_signed)
        _, y = rtl.execute(c, 1)
        want = reference.matmul(x, d["w"]) if op == "matmul" else \
            reference.conv2d(x, d["w"], d["shape"][6], d["shape"][7], d["shape"][8])
        np.testing.assert_array_equal(y, want, err_msg=f"{op} {d['shape']} {qa}x{qw} a_signed={a_signed}")


def test_rtl_every_tiling_of_a_packed_layer(rtl):
    """Loop orders S / A / B, 1 and 2 slots, k tiles with packed rows in place: bit-exact on the RTL."""
    rng = np.random.default_rng(7)
    seen = set()
    for op, qa, qw, ob in (("matmul", 3, 5, 3), ("conv2d", 8, 4, 2), ("matmul", 2, 2, 8)):
        d = random_layer(rng, op, qa, qw, ob, True, pool=True)
        if op == "matmul":
            d = random_layer(rng, op, qa, qw, ob, True)
            d["shape"] = (37, 19, 400)
            d["x"], d["w"] = vals(rng, qa, (37, 400), d["a_signed"]), vals(rng, qw, (19, 400))
            d["bias"], d["mult"], d["shift"] = d["bias"][:1], d["mult"][:1], d["shift"][:1] + 3
        first = compile_it(d)
        kinds = {}
        for p in cc.candidates(CFG, first.plan.gemm, first.plan.out, first.plan.rows_a):
            kinds.setdefault((p.order, p.islots, p.wslots, p.oslots, p.in_place), p)
        for key, p in kinds.items():
            cycles, got = run(rtl, compile_it(d, plan=p), d["x"])
            np.testing.assert_array_equal(got, expected(d), err_msg=str(p.describe()))
            seen.update({key[0], ("slots", *key[1:4]), ("in_place", key[4])})
    assert {"S", "A", "B", ("in_place", True), ("in_place", False)} <= seen


def test_rtl_two_layers_chained_through_dram(rtl):
    """conv3x3 + ReLU + maxpool -> (flatten) linear -> linear, each layer's packed output is the
    next one's input where it lies in DRAM; only the first input and the logits cross the link."""
    rng = np.random.default_rng(5)
    cfg = rtl.cfg
    conv = random_layer(rng, "conv2d", 4, 3, 3, False)
    conv.update(shape=(1, 3, 8, 8, 8, 3, 1, 1, 1), pool=("max", 2, 2), relu=True, a_signed=True)
    conv["x"], conv["w"] = vals(rng, 4, (1, 3, 8, 8)), vals(rng, 3, (8, 3, 3, 3))
    conv["bias"], conv["mult"], conv["shift"] = rng.integers(-50, 50, 8), rng.integers(1 << 30, 1 << 31, 8), \
        np.full(8, 33)
    l1 = compile_it(conv, cfg, y_pitch=-(-8 * 4 // 8))            # dense rows: 8 channels x 4 bits = 4 bytes
    feats = 8 * 4 * 4
    w2, w3 = vals(rng, 5, (10, feats)), vals(rng, 6, (7, 10))
    acc2 = reference.matmul(expected(conv).reshape(1, -1), w2)[0]
    # centre and scale the hidden layer so that its 4-bit codes spread (a degenerate chain tests little)
    fc1 = dict(op="matmul", shape=(1, 10, feats), qa=3, qw=5, x=None, w=w2, bias=-int(np.median(acc2)) + 8,
               mult=np.full(10, 1 << 30), shift=np.full(10, 30 + int(np.ceil(np.log2(np.ptp(acc2) / 16 + 1)))),
               relu=True, out_bits=4, out_signed=False, pool=None, a_signed=False)
    fc2 = dict(op="matmul", shape=(1, 7, 10), qa=4, qw=6, x=None, w=w3, bias=rng.integers(-20, 20, 7),
               mult=rng.integers(1 << 30, 1 << 31, 7), shift=np.full(7, 31), relu=False, out_bits=0,
               out_signed=True, pool=None, a_signed=False)
    top = l1.layout.end + 4096
    l3 = compile_it(fc2, cfg, a_base=top, w_base=top + 4096)
    l2 = compile_it(fc1, cfg, a_base=l1.layout.y_base, y_base=top, w_base=top + 8192,
                    in_positions=l1.flatten_positions(), y_pitch=4 * l3.in_pitch)
    # every reader's region lies inside what is written before it
    assert l2.in_pitch * 4 * l2.in_rows <= (top - l1.layout.y_base) * 4
    for lp in (l1, l2, l3):
        L.load_rtl(rtl.client, lp)
    rtl.client.write(l1.layout.a_base, l1.input_image(conv["x"]).astype("<u4").tobytes())
    cyc = [L.run_rtl(rtl.client, cfg, lp).cycles[0] for lp in (l1, l2)]
    r3 = L.run_rtl(rtl.client, cfg, l3)
    logits = l3.outputs(np.frombuffer(r3.out, dtype="<u4"))
    # the same chain through kernels.reference
    y1 = expected(conv)                                            # (1, 8, 4, 4), 3-bit unsigned
    assert np.array_equal(l1.outputs(np.frombuffer(rtl.client.read(l1.layout.y_base, l1.layout.y_words),
                                                   dtype="<u4")), y1)
    y2 = expected(dict(fc1, x=y1.reshape(1, -1)))
    y3 = expected(dict(fc2, x=y2))
    np.testing.assert_array_equal(logits, y3)
    assert len(np.unique(y1)) > 2 and len(np.unique(y2)) > 2 and len(np.unique(y3)) > 2 and min(cyc) > 0


def test_rtl_model_tracks_packed_layers(rtl):
    """bitfusion-model vs the RTL on packed layers of the small array: median |error| <= 3%."""
    rng = np.random.default_rng(9)
    errs = []
    for i in range(20):
        qa, qw = (int(v) for v in rng.integers(1, 9, 2))
        ob = int(rng.integers(0, 9))
        d = random_layer(rng, ("matmul", "conv2d")[i % 2], qa, qw, ob, True, pool=ob > 0)
        lp = compile_it(d)
        cycles, got = run(rtl, lp, d["x"])
        np.testing.assert_array_equal(got, expected(d))
        errs.append(abs(predict(lp.plan).cycles - cycles) / cycles)
    assert np.median(errs) <= 0.03, sorted(errs)
