"""Whole models on bitfusion-rtl with requantisation and pooling on the array (issue 14).

A LeNet-shaped and a residual random integer model run bit-exact against
``Graph.run``; the per-node placement (array layer, fused pool, input chained in
DRAM, host fallback) is asserted, and the per-layer timer slots are the RTL's
cycles, checked against the analytical model's prediction for the same
programs.  Small array (4 x 8 FUs) and small inputs, to stay fast.
"""

from __future__ import annotations

import numpy as np
import pytest

from harness import registry
from helpers.models import add_op, conv, linear, random_inputs
from kernels import ir

SMALL = {"rows": 4, "cols": 8, "ibuf_kib": 4, "wbuf_kib": 1, "obuf_kib": 2, "dram_bits": 128, "dram_latency": 8}


@pytest.fixture(scope="module")
def session():
    t = registry.get("bitfusion-rtl", **SMALL)
    s = t.open(t.build())
    yield s
    s.close()


def lenet_graph(rng, pairs, pool: str = "max") -> ir.Graph:
    """conv3x3(1->6)+ReLU, pool2, conv3x3(6->8)+ReLU, pool2, flatten, linear(16)+ReLU, linear(10)."""
    (a1, w1), (a2, w2), (a3, w3), (a4, w4) = pairs
    g = ir.Graph(ir.TensorType((1, 8, 8), a1))
    g.add(conv(rng, "conv1", 1, 6, a1, w1, a2))
    g.add(ir.Pool(name="pool1", mode=pool, ks=2, stride=2))
    g.add(conv(rng, "conv2", 6, 8, a2, w2, a3))
    g.add(ir.Pool(name="pool2", mode=pool, ks=2, stride=2))
    g.add(ir.Flatten(name="flat"))
    g.add(linear(rng, "fc1", 32, 16, a3, w3, a4))
    g.add(linear(rng, "fc2", 16, 10, a4, w4, 0))
    return g


def residual_graph(rng, qa: int = 4, qw: int = 4) -> ir.Graph:
    """stem conv, a residual block (depthwise 3x3, two 1x1, 3x3 + identity add, on 8-bit codes), a ReLU6 conv,
    global pool, flatten, linear -- the ops of resnet8 / mobilenetv2 at a small size."""
    g = ir.Graph(ir.TensorType((3, 6, 6), 8))
    stem = g.add(conv(rng, "stem", 3, 8, 8, qw, qa))
    g.add(conv(rng, "b1", 8, 8, qa, qw, qa, groups=8))             # depthwise: 1-byte group blocks, padded
    g.add(conv(rng, "pw", 8, 8, qa, qw, qa, ks=1, pad=0))          # pointwise: reads b1's rows in DRAM
    g.add(conv(rng, "pw2", 8, 8, qa, qw, qa, ks=1, pad=0))         # and pw's (dense rows)
    body = g.add(conv(rng, "b2", 8, 8, qa, qw, 8, relu=False))
    g.add(add_op(rng, "add", (8, qa), qa), body, stem)
    c6 = conv(rng, "c6", 8, 8, qa, qw, qa)
    c6.rq.clip_hi = (1 << (qa - 1)) - 3                     # ReLU6: an upper clamp the output unit lacks
    g.add(c6)
    g.add(ir.AdaptiveAvgPool(name="gap", out=(1, 1)))
    g.add(ir.Flatten(name="flat"))
    g.add(linear(rng, "fc", 8, 10, qa, qw, 0))
    return g


def _run(session, g, n_images, rng):
    info = session.load_ir_model(g)
    xs = random_inputs(rng, g, n_images)
    ref = g.run(xs)
    runs = [session.run_model(x.tobytes()) for x in xs]
    for r, want in zip(runs, ref):
        np.testing.assert_array_equal(np.asarray(r.outputs), want)
        assert r.total == sum(r.layers) and len(r.layers) == len(g.timed_nodes)
    assert len(np.unique(ref)) > 3
    return info, runs


@pytest.mark.parametrize("pairs,pool", [([(8, 8), (4, 4), (2, 2), (8, 4)], "max"),
                                        ([(4, 2), (2, 8), (8, 1), (1, 4)], "avg")])
def test_lenet_shaped_model_on_the_array(session, pairs, pool):
    rng = np.random.default_rng(len(str(pairs)))
    g = lenet_graph(rng, pairs, pool)
    info, runs = _run(session, g, 3, rng)
    where = {p["name"]: p for p in info["placement"]}
    # every conv / linear with its requantisation on the array, both pools in the output unit
    assert all(where[n]["where"] == "array" and where[n]["requant"] == "array" for n in ("conv1", "conv2", "fc1", "fc2"))
    assert where["conv1"]["pool"] == "pool1" and where["conv2"]["pool"] == "pool2"
    assert where["pool1"] == {"name": "pool1", "kind": "pool", "where": "fused", "into": "conv1"}
    assert where["pool2"]["where"] == "fused" and where["flat"]["where"] == "view"
    # inputs: the conv-after-conv gather on the host; the linears read their input in DRAM
    assert where["conv1"]["input"] == "host write (the model input)"
    assert where["conv2"]["input"] == "host im2col of pool1"
    assert where["fc1"]["input"] == "in DRAM (conv2's packed output)" and where["conv2"]["output"] == "stays in DRAM"
    assert where["fc2"]["input"] == "in DRAM (fc1's packed output)" and where["fc1"]["output"] == "stays in DRAM"
    assert where["fc2"]["output"] == "read back by the host"
    # timer slots: conv1, pool1 (0: fused), conv2, pool2 (0), fc1, fc2; the RTL is deterministic
    lay = runs[0].layers
    assert lay[1] == lay[3] == 0 and min(lay[0], lay[2], lay[4], lay[5]) > 0
    assert all(r.layers == lay for r in runs)
    pred = info["predicted_layers"]
    assert pred[1] == pred[3] == 0 and info["predicted_total"] == sum(pred)
    assert abs(sum(pred) - sum(lay)) <= 0.10 * sum(lay), (pred, lay)


def test_residual_model_on_the_array(session):
    rng = np.random.default_rng(11)
    g = residual_graph(rng)
    info, runs = _run(session, g, 3, rng)
    where = {p["name"]: p for p in info["placement"]}
    assert [where[n]["where"] for n in ("stem", "b1", "pw", "pw2", "b2", "fc")] == ["array"] * 6
    assert where["stem"]["output"] == "read back by the host"          # the add and b1 read it
    assert where["pw"]["input"] == "in DRAM (b1's packed output)" and where["b1"]["output"] == "stays in DRAM"
    assert where["pw2"]["input"] == "in DRAM (pw's packed output)" and where["pw"]["output"] == "stays in DRAM"
    assert where["b2"]["input"] == "host im2col of pw2"
    # the array has no element-wise add and no adaptive pool; ReLU6's clamp is not in the output unit
    assert where["add"]["where"] == where["gap"]["where"] == "host"
    assert where["c6"]["where"] == "array-int32" and where["c6"]["requant"].startswith("host")
    assert where["fc"]["input"] == "host write of flat"
    timed = [n.name for n in g.timed_nodes]
    lay = dict(zip(timed, runs[0].layers))
    assert lay["add"] == lay["gap"] == 0 and min(lay[n] for n in ("stem", "b1", "pw", "pw2", "b2", "c6", "fc")) > 0


def test_bad_inputs_and_a_model_that_does_not_fit_are_typed(session):
    from harness.errors import DoesNotFitError, MeasureError

    rng = np.random.default_rng(2)
    g = lenet_graph(rng, [(4, 4), (4, 4), (4, 4), (4, 4)])
    session.load_ir_model(g)
    with pytest.raises(MeasureError, match="input has 63 values, the model takes 64"):
        session.run_model(bytes(63))
    with pytest.raises(MeasureError, match="conv1: input values outside the 4-bit range"):
        session.run_model(np.full(64, 9, np.int8).tobytes())
    big = ir.Graph(ir.TensorType((4096,), 8))
    big.add(linear(rng, "wide", 4096, 1024, 8, 8, 0))            # 4 MiB of weights
    t = registry.get("bitfusion-rtl", **SMALL, dram_mib=2)
    s = t.open(t.build())
    try:
        with pytest.raises(DoesNotFitError, match=r"wide: the layer needs .* MiB of DRAM; the model has 2 MiB"):
            s.load_ir_model(big)
    finally:
        s.close()


def test_in_positions_only_for_matmuls_and_pointwise_convs():
    from rtl_sims.bitfusion import compiler as cc
    from rtl_sims.bitfusion.layer import compile_layer

    cfg = cc.ArrayConfig(rows=4, cols=8, ibuf_bytes=4096, wbuf_bytes=1024, obuf_bytes=2048)
    w = np.ones((4, 3, 3, 3), np.int8)
    with pytest.raises(cc.CompileError, match="in_positions is for matmul layers and 1x1 convs"):
        compile_layer(cfg, "conv2d", (1, 3, 5, 5, 4, 3, 1, 1, 1), 4, 4, w, 0, 1 << 30, 31, True, 4,
                      in_positions=np.arange(3))
    lp = compile_layer(cfg, "conv2d", (1, 3, 5, 5, 4, 1, 1, 0, 1), 4, 4, w[:, :, :1, :1], 0, 1 << 30, 31, True, 4,
                       in_positions=np.array([0, 2, 5]))
    assert lp.plan.gemm.K >= 6


def test_unsigned_activations_run_on_the_array_bit_exact(session):
    """Unsigned b-bit codes after ReLU (2 and 4 bits) are the array's signed (b+1)-bit operands and
    output-unit codes: conv -> pool -> conv -> linear -> linear with unsigned codes between them."""
    rng = np.random.default_rng(21)
    g = ir.Graph(ir.TensorType((3, 9, 9), 8))
    g.add(conv(rng, "c1", 3, 8, 8, 4, 4, pad=1, unsigned=True))
    g.add(ir.Pool(name="p1", mode="max", ks=2, stride=2))
    g.add(conv(rng, "c2", 8, 8, 4, 2, 2, unsigned=True))
    g.add(ir.Flatten(name="flat"))
    g.add(linear(rng, "f1", g.output.numel, 24, 2, 4, 4, unsigned=True))
    g.add(linear(rng, "f2", 24, 10, 4, 8, 0))
    assert not g.type_of(0).signed and not g.type_of(4).signed
    info, runs = _run(session, g, 3, rng)
    where = {p["name"]: p for p in info["placement"]}
    assert all(where[n]["where"] == "array" and where[n]["requant"] == "array" for n in ("c1", "c2", "f1", "f2"))
