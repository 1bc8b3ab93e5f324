"""Generated C models on the host firmware == the PyTorch integer reference, element by element."""

import itertools

import numpy as np
import pytest

from harness.errors import BuildError
from mpq import codegen
from mpq.integer import Flatten, IntegerModel, Pool, QConv, QLinear

BITS = (1, 2, 4, 8)


def _vals(rng, b, shape):
    if b == 1:
        return rng.choice(np.array([-1, 1], np.int8), size=shape)
    return rng.integers(-(1 << (b - 1)), 1 << (b - 1), size=shape).astype(np.int8)


def _rq(rng, n, out_bits, red):
    """bias, mult, shift for n channels that keep requantised values spread over the range."""
    bias = rng.integers(-4 * red, 4 * red + 1, n).astype(np.int32)
    mult = rng.integers(1 << 30, (1 << 31) - 1, n).astype(np.int32)
    if out_bits == 0:
        return bias, mult, np.full(n, 31, np.uint8)
    target = max(1, 1 << max(out_bits - 1, 0))
    shift = 31 + max(0, int(np.log2(max(red * 16 / target, 1))))
    return bias, mult, np.full(n, min(shift, 62), np.uint8)


def random_model(rng, pairs, pool="max", groups=1, stride=1, pad=1, hw=9, c_in=3):
    """conv(3->8) -> pool -> conv(8->8, grouped/strided) -> flatten -> linear -> linear(10)."""
    (a1, w1), (a2, w2), (a3, w3), (a4, w4) = pairs
    ops = []
    c1 = QConv("c1", c_in, hw, hw, 8, 3, 1, pad, 1, a1, w1, _vals(rng, w1, (8, c_in, 3, 3)),
               *_rq(rng, 8, a2, c_in * 9 * 64), True, a2)
    ops.append(c1)
    C, H, W = c1.out_shape
    ops.append(Pool(pool, C, H, W, 2, 2))
    C, H, W = ops[-1].out_shape
    c2 = QConv("c2", C, H, W, 8, 3, stride, pad, groups, a2, w2, _vals(rng, w2, (8, C // groups, 3, 3)),
               *_rq(rng, 8, a3, C // groups * 9 * 64), False, a3)
    ops.append(c2)
    C, H, W = c2.out_shape
    ops.append(Flatten(C * H * W))
    f1 = QLinear("f1", C * H * W, 24, a3, w3, _vals(rng, w3, (24, C * H * W)), *_rq(rng, 24, a4, C * H * W * 64),
                 True, a4)
    f2 = QLinear("f2", 24, 10, a4, w4, _vals(rng, w4, (10, 24)), *_rq(rng, 10, 0, 24 * 64), False, 0)
    ops += [f1, f2]
    return IntegerModel((c_in, hw, hw), a1, 1.0, ops)


@pytest.fixture(scope="module")
def host():
    from harness import registry

    t = registry.get("host")
    b = t.build()
    s = t.open(b)
    yield t, s
    s.close()


def _check(host, im, rng, n_inputs=6):
    t, s = host
    gen = codegen.generate(im, {"model": "test"})
    image = codegen.compile_image(gen, t.model_toolchain())
    info = s.load_model(image)
    assert info["out_count"] == 10 and info["n_layers"] == len(gen.timed_layers)
    C, H, W = im.input_shape
    xs = _vals(rng, im.input_bits, (n_inputs, C, H, W))
    ref = np.asarray(im.forward_int(xs))
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
    im = random_model(rng, [(8, 8)] * 4)
    im.ops[-1].out_bits = 4
    with pytest.raises(BuildError):
        codegen.generate(im)
