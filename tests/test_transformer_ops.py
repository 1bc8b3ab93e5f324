"""Transformer IR ops (kernels/ir/attention.py, kernels/ir/norm.py): the generated C equals
the NumPy semantics element by element on the host, at odd shapes and sequence lengths
that are not multiples of 4; the NumPy semantics follow the numeric spec (docs/formats.md)."""

import math

import numpy as np
import pytest

from helpers.models import int_values, random_requant
from kernels import ir
from kernels.ir import attention


@pytest.fixture(scope="module")
def host_session():
    from harness import registry

    t = registry.get("host")
    s = t.open(t.build())
    yield t, s
    s.close()


def _run_c(host_session, g: ir.Graph, xs: np.ndarray) -> np.ndarray:
    """The graph's generated C on the host (the last node's codes widened to int32)."""
    from kernels.ir import codegen
    from mpq.deploy import run_on_device

    t, s = host_session
    gen = codegen.generate(g, {"model": "transformer-ops"}, code_output=g.output.bits != 0)
    run = run_on_device(s, g, xs, codegen.compile_image(gen, t.model_toolchain()))
    return run.outputs.reshape(len(xs), *g.output.shape)




def test_exp2_matches_the_power_of_two_closely():
    z = np.arange(0, 16 << 16, 7, dtype=np.int64)
    e = attention.exp2_neg_q15(z)
    assert e[-1] == 0 or z[-1] < 15 << 16
    exact = 2.0 ** (-z / 65536.0) * 32768
    assert e[0] == 32768 and np.abs(e - exact).max() < 4.5         # < 1.4e-4 absolute on [0, 1]
    assert np.diff(e).max() <= 1            # the floors of Horner's rule may lift it by one unit, no more


def test_softmax_codes_follow_the_spec():
    rng = np.random.default_rng(0)
    s = 0.07
    op = ir.Softmax.from_scale("sm", s)
    assert op.mult / 2 ** op.shift == pytest.approx(s * math.log2(math.e) * 65536, rel=1e-8)
    x = rng.integers(-128, 128, size=(200, 13))
    y = op.run([x])
    p = np.exp(s * (x - x.max(1, keepdims=True)))
    p /= p.sum(1, keepdims=True)
    assert y.min() >= 0 and y.max() <= 127
    assert np.abs(y / 127 - p).max() <= 0.5 / 127 + 2e-3            # output rounding + exp2 error
    np.testing.assert_array_equal(op.run([np.zeros((1, 5), np.int64)]), [[25] * 5])   # 127/5 = 25.4


@pytest.mark.parametrize("T,D,heads", [(7, 12, 3), (5, 8, 1), (9, 6, 2)])
def test_attention_chain_c_equals_numpy(host_session, T, D, heads):
    """q, k, v token linears -> QK^T -> softmax -> AV -> transpose: every op's C output
    against its NumPy semantics (a graph ending at each op writes its codes)."""
    rng = np.random.default_rng(T * 100 + D)
    ops = {}
    for nm, bits in (("q", 8), ("k", 4), ("v", 8)):
        rq = random_requant(rng, D, bits, D * 64, relu=False)
        ops[nm] = ir.TokenLinear(name=nm, qa=8, qw=4, out_bits=bits, weight=int_values(rng, 4, (D, D)), rq=rq,
                                 out_features=D)
    qk = ir.AttnMatMul.from_scales("qk", "qk", heads, 1.0, rng.uniform(0.5, 1.5, heads) / (8 * 64), 1.0, 8)
    sm = ir.Softmax.from_scale("sm", 0.09)
    av = ir.AttnMatMul.from_scales("av", "av", heads, 1.0, 1.0 / (127 * 2), 1.0, 4)
    tr = ir.Transpose(name="tr")

    def build(upto: str) -> ir.Graph:
        g = ir.Graph(ir.TensorType((T, D), 8))
        q = g.add(ops["q"], -1)
        k = g.add(ops["k"], -1)
        if upto == "k":
            return g
        v = g.add(ops["v"], -1)
        s = g.add(qk, q, k)
        if upto == "qk":
            return g
        p = g.add(sm, s)
        if upto == "sm":
            return g
        g.add(av, p, v)
        if upto == "av":
            return g
        g.add(tr)
        return g

    xs = int_values(rng, 8, (3, T, D))
    for upto in ("k", "qk", "sm", "av", "tr"):
        g = build(upto)
        want = g.run(xs)
        got = _run_c(host_session, g, xs)
        np.testing.assert_array_equal(got, want, err_msg=upto)
    assert len(np.unique(want)) > 4                                   # not a saturated, trivial output


def test_attention_ops_refuse_bad_shapes():
    g = ir.Graph(ir.TensorType((5, 12), 8))
    with pytest.raises(ir.IRError, match="divisible"):
        ir.Graph(ir.TensorType((5, 10), 8)).add(ir.AttnMatMul(name="a", heads=3), -1, -1)
    with pytest.raises(ir.IRError, match="AV needs"):
        g.add(ir.AttnMatMul(name="b", mode="av", heads=2), -1, -1)
    with pytest.raises(ir.IRError, match="per head"):
        ir.AttnMatMul(name="c", heads=2, rq=random_requant(np.random.default_rng(0), 3, 8, 64, relu=False))
    with pytest.raises(ir.IRError, match=r"\(T, K\)"):
        ir.Graph(ir.TensorType((12,), 8)).add(ir.TokenLinear(name="d", out_features=3))


# ---- LayerNorm and GELU ------------------------------------------------------------------------

def test_isqrt_is_the_floor_root():
    from kernels.ir.norm import isqrt

    v = np.array([0, 1, 2, 3, 4, 15, 16, 17, 2**40 - 1, 2**40, (2**20 + 1) ** 2 - 1], np.int64)
    want = [math.isqrt(int(a)) for a in v]
    np.testing.assert_array_equal(isqrt(v), want)


def test_layernorm_follows_float_layernorm():
    rng = np.random.default_rng(4)
    D = 37
    gamma, beta = rng.uniform(-1.5, 1.5, D), rng.uniform(-0.5, 0.5, D)
    s_out = 4.0 / 127
    op = ir.LayerNorm.from_params("ln", gamma, beta, s_out, 8)
    x = rng.integers(-128, 128, size=(50, 5, D))
    y = op.run([x]) * s_out
    xf = x.astype(np.float64)
    ref = (xf - xf.mean(-1, keepdims=True)) / xf.std(-1, keepdims=True) * gamma + beta
    ok = np.abs(ref) < 4.0 - s_out                                    # outside: saturated codes
    assert np.abs(y - ref)[ok].max() <= 0.5 * s_out + 1e-3
    const = op.run([np.full((1, 2, D), 3)])                          # sigma = 0: beta alone
    np.testing.assert_array_equal(const[0, 0], np.clip(np.round(beta / s_out), -128, 127))


def test_gelu_follows_float_gelu():
    from scipy.special import erf

    s, s_out = 0.04, 0.045                                           # no saturation: 127 s_out > 128 s
    op = ir.GELU.from_scales("g", s, s_out, 8)
    x = np.arange(-128, 128)[None]
    y = op.run([x])[0] * s_out
    xf = x[0] * s
    ref = 0.5 * xf * (1 + erf(xf / math.sqrt(2)))
    assert np.abs(y - ref).max() < 0.5 * s_out + 0.02                # i-erf's error, below 0.02 here
    with pytest.raises(ir.IRError, match="too small"):
        ir.GELU.from_scales("g", 1e-4, 1e-3, 8)


@pytest.mark.parametrize("T,D,bits", [(7, 13, 8), (5, 6, 4), (3, 64, 8)])
def test_layernorm_and_gelu_c_equals_numpy(host_session, T, D, bits):
    rng = np.random.default_rng(T + D)
    ln = ir.LayerNorm.from_params("ln", rng.uniform(-1.5, 1.5, D), rng.uniform(-0.5, 0.5, D), 3.0 / 127, 8)
    gelu = ir.GELU.from_scales("gelu", 3.0 / 127, 2.0 / (1 << (bits - 1)), bits)
    xs = int_values(rng, bits, (4, T, D))
    for ops in ([ln], [ln, gelu], [ln, gelu, ir.Transpose(name="tr")]):
        g = ir.chain(ir.TensorType((T, D), bits), ops)
        want = g.run(xs)
        np.testing.assert_array_equal(_run_c(host_session, g, xs), want, err_msg=ops[-1].name)
    assert len(np.unique(want)) > 3
