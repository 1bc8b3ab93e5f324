"""The layer IR: shape rules, integer semantics, and a new op end to end.

The last test is the architecture's promise: a layer type the project has never
seen (a clamp) is one IR class with its C kernel, and goes through the code
generator and a deploy on the host with nothing else changed.
"""

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest

from helpers.models import conv, int_values, linear, random_graph, random_inputs
from kernels import ir, reference


def test_shapes_are_inferred_once_and_checked():
    rng = np.random.default_rng(0)
    g = ir.Graph(ir.TensorType((3, 9, 9), 8))
    g.add(conv(rng, "c1", 3, 4, 8, 8, 4, ks=3, stride=2, pad=1))
    assert g.output == ir.TensorType((4, 5, 5), 4)
    with pytest.raises(ir.IRError, match="qa=8"):
        g.add(conv(rng, "c2", 4, 4, 8, 8, 8))           # reads 8-bit codes but gets 4-bit ones
    with pytest.raises(ir.IRError, match="Flatten"):
        g.add(linear(rng, "f", 100, 10, 4, 4, 0))        # a linear layer needs a flat input
    with pytest.raises(ir.IRError, match="window"):
        g.add(ir.Pool(mode="max", ks=6, stride=1))
    with pytest.raises(ir.IRError, match="unique"):
        g.add(ir.Pool(name="c1", mode="max", ks=2, stride=1))
    assert len(g) == 1                                   # failed adds leave the graph as it was


def test_run_is_the_reference_semantics():
    rng = np.random.default_rng(1)
    g = random_graph(rng, [(8, 4), (4, 2), (2, 1), (1, 8)], pool="avg")
    xs = random_inputs(rng, g, 3)
    y, trace = g.run(xs, trace=True)
    c1 = g.nodes[0].op
    acc = reference.conv2d(xs, c1.weight, 1, 1, 1)
    want = reference.requant(acc, c1.rq.bias, c1.rq.mult, c1.rq.shift, c1.rq.relu, 4)
    np.testing.assert_array_equal(trace[0], want)
    np.testing.assert_array_equal(trace[1], reference.avgpool(want, 2, 2))
    assert y.shape == (3, 10) and trace[-1] is y
    assert g.scheme == ((8, 4), (4, 2), (2, 1), (1, 8))
    assert [s.op for s in g.specs()] == ["conv2d", "conv2d", "matmul", "matmul"]
    assert [n.name for n in g.timed_nodes] == ["c1", "p1", "c2", "f1", "f2"]


def test_requant_from_scale_rounds_like_the_fixed_point_spec():
    rq = ir.Requant.from_scale(np.zeros(2, np.int32), [0.5, 0.25], relu=False, out_bits=8)
    assert list(rq.mult) == [1 << 30, 1 << 30] and list(rq.shift) == [31, 32]
    acc = np.array([[3, 3], [-3, -3], [1000, -1000]], np.int64)
    # (t + 2^(s-1)) >> s: 1.5 -> 2, 0.75 -> 1, -1.5 -> -1, -0.75 -> -1, saturation at 8 bits
    np.testing.assert_array_equal(rq.apply(acc), [[2, 1], [-1, -1], [127, -128]])
    logits = ir.Requant(np.array([5, -5], np.int32), rq.mult, rq.shift, False, 0)
    np.testing.assert_array_equal(logits.apply(acc), acc + [5, -5])
    with pytest.raises(ir.IRError, match="shift"):
        ir.Requant(np.zeros(1, np.int32), np.ones(1), np.zeros(1), False, 8)


def test_input_range_and_shape_are_checked():
    g = random_graph(np.random.default_rng(2), [(2, 2)] * 4)
    with pytest.raises(ir.IRError, match="2-bit range"):
        g.run(np.full((1, 3, 9, 9), 5))
    with pytest.raises(ir.IRError, match="input has shape"):
        g.run(np.zeros((1, 3, 8, 8)))


# ---- a new layer type: one IR class + its kernel ----------------------------------------------

CLAMP_C = """
static void clamp_i8(const int8_t *x, int8_t *y, uint32_t n, int32_t lo, int32_t hi) {
    for (uint32_t i = 0; i < n; i++) {
        int32_t v = x[i];
        y[i] = (int8_t)(v < lo ? lo : v > hi ? hi : v);
    }
}
"""


@dataclass(eq=False)
class Clamp(ir.Op):
    """Clamp codes to [lo, hi] (a toy op the project does not have)."""

    kind: ClassVar[str] = "clamp"
    c_support: ClassVar[str] = CLAMP_C
    name: str = ""
    lo: int = -2
    hi: int = 1

    def infer(self, ins):
        return ins[0]

    def run(self, xs):
        return np.clip(xs[0], self.lo, self.hi)

    def c_body(self, ctx):
        return f"clamp_i8({ctx.src[0]}, {ctx.dst}, {ctx.out.numel}u, {self.lo}, {self.hi});"


@pytest.fixture(scope="module")
def host_session():
    from harness import registry

    t = registry.get("host")
    s = t.open(t.build())
    yield t, s
    s.close()


def test_a_new_op_goes_through_codegen_and_deploy_on_host(host_session):
    from kernels.ir import codegen
    from mpq.deploy import run_on_device

    t, s = host_session
    rng = np.random.default_rng(3)
    g = ir.Graph(ir.TensorType((2, 6, 6), 4))
    g.add(conv(rng, "c1", 2, 4, 4, 4, 4, relu=False))
    g.add(Clamp(name="clip", lo=-1, hi=0))
    g.add(ir.Flatten())
    g.add(linear(rng, "fc", 4 * 6 * 6, 7, 4, 2, 0))
    xs = int_values(rng, 4, (5, 2, 6, 6))
    ref, trace = g.run(xs, trace=True)
    assert (trace[0] != trace[1]).any() and trace[1].min() >= -1 and trace[1].max() <= 0   # it clamped
    gen = codegen.generate(g, {"model": "clamp-test"})
    image = codegen.compile_image(gen, t.model_toolchain())
    run = run_on_device(s, g, xs, image)
    np.testing.assert_array_equal(run.outputs, ref)
    assert run.times.shape == (5, 3) and (run.times[:, 1] > 0).all()   # conv, clamp, fc timed; flatten free


# ---- one layer as a model runs it (layer-mode measurements) ------------------------------------

@pytest.mark.parametrize("warm", [False, True])
def test_layer_graph_runs_bit_exact_on_host(host_session, warm):
    from kernels.ir import codegen
    from kernels.ir.layer import layer_graph, layer_inputs
    from mpq.deploy import run_on_device

    t, s = host_session
    for op, it in ((ir.Conv2d(name="c", qa=2, qw=4, out_bits=1, out_channels=5, ks=3, stride=2, pad=1),
                    ir.TensorType((3, 7, 7), 2)),
                   (ir.Linear(name="f", qa=8, qw=1, out_bits=0, out_features=10), ir.TensorType((37,), 8)),
                   (ir.Pool(name="p", mode="avg", ks=3, stride=2), ir.TensorType((4, 9, 9), 4))):
        g = layer_graph(op, it, seed=5, evict_bytes=4096, warm=warm)
        assert [n.name for n in g.timed_nodes][-1] == op.name and g.complete
        gen = codegen.generate(g, code_output=True)
        x = layer_inputs(it, 5, 2)
        run = run_on_device(s, g, x, codegen.compile_image(gen, t.model_toolchain()))
        np.testing.assert_array_equal(run.outputs, g.run(x).reshape(2, -1))
        assert (run.times[:, -1] > 0).all()


def test_randomized_layers_spread_over_the_output_range():
    rng = np.random.default_rng(0)
    op = ir.Conv2d(name="c", qa=8, qw=8, out_bits=4, out_channels=16, ks=3, pad=1)
    it = ir.TensorType((8, 6, 6), 8)
    r = op.randomized(rng, [it])
    assert r.complete and r.weight.shape == (16, 8, 3, 3) and op.weight is None
    from kernels.ir.layer import layer_inputs

    y = r.run([layer_inputs(it, 1, 4).astype(np.int64)])
    assert len(np.unique(y)) >= 6          # not all saturated or all zero
