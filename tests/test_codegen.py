"""Generated C models on the host firmware == the PyTorch integer reference, element by element."""

import itertools

import numpy as np
import pytest

from harness.errors import BuildError
from helpers.models import random_graph as random_model
from helpers.models import random_inputs, unsigned_graph
from kernels.ir import codegen

BITS = (1, 2, 4, 8)


@pytest.fixture(scope="module")
def host():
    from harness import registry

    t = registry.get("host")
    b = t.build()
    s = t.open(b)
    yield t, s
    s.close()


def _check(host, g, rng, n_inputs=6, out_count=10):
    t, s = host
    gen = codegen.generate(g, {"model": "test"})
    image = codegen.compile_image(gen, t.model_toolchain())
    info = s.load_model(image)
    assert info["out_count"] == out_count and info["n_layers"] == len(gen.timed_layers)
    xs = random_inputs(rng, g, n_inputs)
    ref = g.run(xs)
    for i in range(n_inputs):
        r = s.run_model(xs[i].tobytes())
        np.testing.assert_array_equal(np.asarray(r.outputs), ref[i])
        assert len(r.layers) == len(gen.timed_layers) and r.total >= sum(r.layers) * 0.5
    return ref


@pytest.mark.parametrize("qa,qw", list(itertools.product(BITS, BITS)))
def test_generated_model_bit_exact_all_pairs(host, qa, qw):
    rng = np.random.default_rng(qa * 10 + qw)
    pairs = [(qa, qw), (qw, qa), (qa, qa), (qw, qw)]
    ref = _check(host, random_model(rng, pairs), rng)
    assert len(np.unique(ref)) > 3      # the logits are not degenerate


@pytest.mark.parametrize("kw", [dict(pool="avg"), dict(groups=8), dict(groups=2, stride=2), dict(pad=0, hw=11),
                                dict(c_in=1, hw=8)])
def test_generated_model_bit_exact_shapes(host, kw):
    rng = np.random.default_rng(len(str(kw)))
    _check(host, random_model(rng, [(8, 4), (2, 2), (4, 1), (1, 8)], **kw), rng)


@pytest.mark.parametrize("qa,qw", list(itertools.product(BITS, BITS)))
def test_unsigned_activations_bit_exact_all_pairs(host, qa, qw):
    """ReLU outputs on unsigned 2/4-bit codes, read by every pair's kernels (lowered to
    the signed kernels: flipped top bits, bias offset, padding correction)."""
    rng = np.random.default_rng(100 + qa * 10 + qw)
    ua = 4 if qa not in (2, 4) else qa
    g = unsigned_graph(rng, [(qa, qw), (ua, qw), (ua, qa if qa in (2, 4) else 2), (2, qw)])
    assert [n.type.signed for n in g.nodes][:3] == [False, False, False]
    ref = _check(host, g, rng)
    assert len(np.unique(ref)) > 3


@pytest.mark.parametrize("kw", [dict(pool="avg"), dict(groups=8), dict(pad=0, hw=11), dict(c_in=1, hw=8)])
def test_unsigned_activations_bit_exact_shapes(host, kw):
    rng = np.random.default_rng(7 + len(str(kw)))
    _check(host, unsigned_graph(rng, [(8, 4), (2, 2), (4, 1), (4, 8)], **kw), rng)


def test_unsigned_requant_range():
    """Unsigned requantisation spans [0, 2^b - 1] and only exists with a ReLU at 2 or 4 bits."""
    from kernels import ir

    rq = ir.Requant(np.zeros(1, np.int32), np.array([1 << 30], np.int32), np.array([30], np.uint8), True, 2,
                    unsigned=True)
    assert rq.apply(np.array([[-5, 0, 1, 2, 3, 9]]).T, 1).ravel().tolist() == [0, 0, 1, 2, 3, 3]
    for bad in (dict(relu=False, out_bits=4), dict(relu=True, out_bits=8), dict(relu=True, out_bits=1)):
        with pytest.raises(ir.IRError):
            ir.Requant(np.zeros(1, np.int32), np.array([1 << 30], np.int32), np.array([30], np.uint8),
                       unsigned=True, **bad)


def test_reload_replaces_the_model_and_reset_clears_it(host):
    t, s = host
    rng = np.random.default_rng(5)
    _check(host, random_model(rng, [(8, 8)] * 4), rng, 2)
    _check(host, random_model(rng, [(2, 2)] * 4), rng, 2)
    s.client.reset()
    from harness.errors import MeasureError

    with pytest.raises(MeasureError, match="no model loaded"):
        s.run_model(bytes(9 * 9 * 3))


def test_corrupted_image_is_refused(host):
    t, s = host
    rng = np.random.default_rng(6)
    gen = codegen.generate(random_model(rng, [(8, 8)] * 4))
    image = bytearray(codegen.compile_image(gen, t.model_toolchain()))
    image[0] ^= 0xFF   # wrong magic, consistent CRC: refused by the header check
    from harness.errors import MeasureError

    with pytest.raises(MeasureError, match="not a mico model image"):
        s.load_model(bytes(image))


def test_last_layer_must_give_logits():
    rng = np.random.default_rng(7)
    g = random_model(rng, [(8, 8)] * 4)
    g.nodes.pop()            # ends with f1: 8-bit codes, not logits
    with pytest.raises(BuildError, match="logits"):
        codegen.generate(g)


def test_structural_graph_is_refused():
    from mpq.models import get_model

    with pytest.raises(BuildError, match="structural"):
        codegen.generate(get_model("lenet").lower())


def test_buffers_are_planned_by_lifetime():
    """Sequential layers reuse buffers: the peak is the largest pair alive at once, not the sum."""
    g = random_model(np.random.default_rng(8), [(8, 8)] * 4)
    expr, peak = codegen.plan_buffers(g)
    sizes = [n.type.nbytes for n in g.nodes if not n.op.view]
    assert peak < sum(sizes[:-1]) and peak >= max(a + b for a, b in zip(sizes, sizes[1:-1]))
    assert expr[g.nodes[3].index] == expr[g.nodes[2].index]      # flatten is a view of c2's buffer
    assert expr[len(g.nodes) - 1] == "output"
