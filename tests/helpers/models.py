"""Random integer models as layer-IR graphs, for bit-exactness tests of every walker."""

from __future__ import annotations

import numpy as np

from kernels import ir
from kernels.reference import value_range

BITS = (1, 2, 4, 8)


def int_values(rng: np.random.Generator, b: int, shape) -> np.ndarray:
    """Uniform int8 VALUES of a b-bit code (1 bit: -1/+1)."""
    if b == 1:
        return rng.choice(np.array([-1, 1], np.int8), size=shape)
    lo, hi = value_range(b)
    return rng.integers(lo, hi + 1, size=shape).astype(np.int8)


def random_requant(rng: np.random.Generator, n: int, out_bits: int, red: int, relu: bool = True,
                   unsigned: bool = False) -> ir.Requant:
    """bias, mult, shift for n channels that keep requantised values spread over the range
    (``unsigned``: unsigned output codes where the width has them, ir.UNSIGNED_BITS)."""
    bias = rng.integers(-4 * red, 4 * red + 1, n).astype(np.int32)
    mult = rng.integers(1 << 30, (1 << 31) - 1, n).astype(np.int32)
    if out_bits == 0:
        return ir.Requant(bias, mult, np.full(n, 31, np.uint8), False, 0)
    target = max(1, 1 << max(out_bits - 1, 0))
    shift = 31 + max(0, int(np.log2(max(red * 16 / target, 1))))
    uns = unsigned and relu and out_bits in ir.UNSIGNED_BITS
    return ir.Requant(bias, mult, np.full(n, min(shift, 62), np.uint8), relu and out_bits != 1, out_bits,
                      unsigned=uns)


def conv(rng, name, c_in, k, qa, qw, out_bits, ks=3, stride=1, pad=1, groups=1, relu=True,
         unsigned=False) -> ir.Conv2d:
    red = c_in // groups * ks * ks
    rq = random_requant(rng, k, out_bits, red * 64, relu, unsigned)
    return ir.Conv2d(name=name, qa=qa, qw=qw, out_bits=out_bits,
                     weight=int_values(rng, qw, (k, c_in // groups, ks, ks)),
                     rq=rq, out_channels=k, ks=ks, stride=stride, pad=pad, groups=groups,
                     out_signed=not rq.unsigned)


def linear(rng, name, k_in, m, qa, qw, out_bits, relu=True, unsigned=False) -> ir.Linear:
    rq = random_requant(rng, m, out_bits, k_in * 64, relu, unsigned)
    return ir.Linear(name=name, qa=qa, qw=qw, out_bits=out_bits, weight=int_values(rng, qw, (m, k_in)),
                     rq=rq, out_features=m, out_signed=not rq.unsigned)


def unsigned_graph(rng: np.random.Generator, pairs, pool: str = "max", groups: int = 1, pad: int = 1,
                   hw: int = 9, c_in: int = 3) -> ir.Graph:
    """conv -> pool -> conv -> flatten -> linear -> linear (logits), every ReLU output at
    2 or 4 bits on unsigned codes: the consumers' unsigned-input lowering at every pair."""
    (a1, w1), (a2, w2), (a3, w3), (a4, w4) = pairs
    g = ir.Graph(ir.TensorType((c_in, hw, hw), a1))
    g.add(conv(rng, "c1", c_in, 8, a1, w1, a2, pad=pad, unsigned=True))
    g.add(ir.Pool(name="p1", mode=pool, ks=2, stride=2))
    g.add(conv(rng, "c2", 8, 8, a2, w2, a3, pad=pad, groups=groups, unsigned=True))
    g.add(ir.Flatten(name="flat"))
    g.add(linear(rng, "f1", g.output.numel, 24, a3, w3, a4, unsigned=True))
    g.add(linear(rng, "f2", 24, 10, a4, w4, 0))
    return g


def random_graph(rng: np.random.Generator, pairs, pool: str = "max", groups: int = 1, stride: int = 1,
                 pad: int = 1, hw: int = 9, c_in: int = 3) -> ir.Graph:
    """conv(c_in->8) -> pool -> conv(8->8, grouped/strided, no ReLU) -> flatten -> linear(24) -> linear(10)."""
    (a1, w1), (a2, w2), (a3, w3), (a4, w4) = pairs
    g = ir.Graph(ir.TensorType((c_in, hw, hw), a1))
    g.add(conv(rng, "c1", c_in, 8, a1, w1, a2, pad=pad))
    g.add(ir.Pool(name="p1", mode=pool, ks=2, stride=2))
    g.add(conv(rng, "c2", 8, 8, a2, w2, a3, stride=stride, pad=pad, groups=groups, relu=False))
    g.add(ir.Flatten(name="flat"))
    g.add(linear(rng, "f1", g.output.numel, 24, a3, w3, a4))
    g.add(linear(rng, "f2", 24, 10, a4, w4, 0))
    return g


def random_inputs(rng: np.random.Generator, graph: ir.Graph, n: int) -> np.ndarray:
    return int_values(rng, graph.input.bits, (n, *graph.input.shape))


# ---- the model zoo's ops (tests/test_zoo_*.py) ---------------------------------------------------

def add_op(rng: np.random.Generator, name: str, in_bits, out_bits: int, relu: bool = True,
           clip_hi: int | None = None) -> ir.Op:
    """An Add (two input widths) or a Rescale (one) with random scales that spread
    the output over its range without saturating most of it."""
    half = lambda b: 1 if b == 1 else 1 << (b - 1)      # noqa: E731
    ratios = [half(out_bits) / half(b) * rng.uniform(0.3, 0.8) for b in in_bits]
    cls = ir.Add if len(in_bits) == 2 else ir.Rescale
    return cls.from_scales(name, ratios, 1.0, out_bits, relu, clip_hi)


def run_on_host(session, toolchain, graph: ir.Graph, xs: np.ndarray) -> np.ndarray:
    """Generate, compile and load ``graph`` into a booted host session; the logits of every input."""
    from kernels.ir import codegen

    gen = codegen.generate(graph, {"model": "zoo-test"})
    session.load_model(codegen.compile_image(gen, toolchain))
    return np.stack([np.asarray(session.run_model(x.tobytes()).outputs) for x in np.asarray(xs, np.int8)])


def randomise_bn(model, seed: int) -> None:
    """BatchNorm statistics and affine parameters of a trained-looking network."""
    import torch

    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.2)


def calibrated_integer_model(name: str, scheme_seed: int, x_calib, dataset: str = "digits", uniform=None):
    """An untrained zoo model (random BN), folded, at a random scheme (``uniform``: one pair
    for every layer), calibrated on ``x_calib``: (quant model, IntegerModel)."""
    import torch

    from mpq.fold import fold_model
    from mpq.integer import build_integer_model
    from mpq.models import get_model
    from mpq.train import calibrate

    torch.manual_seed(scheme_seed)
    m = get_model(name, dataset)
    randomise_bn(m, scheme_seed)
    m.eval()
    fold_model(m)
    rng = np.random.default_rng(scheme_seed)
    n = len(m.layer_names)
    scheme = [uniform] * n if uniform else [tuple(int(b) for b in rng.choice(BITS, 2)) for _ in range(n)]
    m.set_scheme(scheme)
    calibrate(m, x_calib, batches=2, seed=scheme_seed)
    return m, build_integer_model(m)


def need_target(name: str, **params):
    """A registered target, or a pytest skip naming why it is unavailable here."""
    import pytest

    from harness import registry

    t = registry.get(name, **params)
    ok, why = t.available()
    if not ok:
        pytest.skip(f"{name}: {why}")
    return t


def host_model_session():
    """A booted host target for generated models (yields (session, model toolchain), closes it)."""
    t = need_target("host")
    s = t.open(t.build())
    try:
        yield s, t.model_toolchain()
    finally:
        s.close()
