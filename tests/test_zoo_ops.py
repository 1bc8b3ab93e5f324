"""The model zoo's IR ops: integer semantics against torch / first principles, and
C (generated model on the host firmware) == NumPy IR ``run``, element by element,
on random graphs with odd shapes (channels not a multiple of 4, padding, stride)."""

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers.models import add_op, conv, host_model_session, int_values, linear, run_on_host
from kernels import ir, reference

BITS = (1, 2, 4, 8)


@pytest.fixture(scope="module")
def host():
    yield from host_model_session()


# ---- semantics -------------------------------------------------------------------------------

def test_requant_clip_is_relu6():
    rq = ir.Requant(np.zeros(2, np.int32), np.full(2, 1 << 30), np.full(2, 31), True, 8, clip_hi=48)
    acc = np.array([[-10, 40], [95, 96], [97, 1000]], np.int64)
    # (acc * 0.5 rounded half up), ReLU, then min(., 48)
    np.testing.assert_array_equal(rq.apply(acc), [[0, 20], [48, 48], [48, 48]])
    one = ir.Requant(np.zeros(1, np.int32), np.ones(1), np.ones(1), True, 1, clip_hi=0)
    np.testing.assert_array_equal(one.apply(np.array([[-3], [0], [5]])), [[-1], [1], [1]])   # sign at 1 bit


def test_add_is_one_requantisation_of_the_scaled_sum():
    add = ir.Add.from_scales("a", [0.5, 0.25], 1.0, 8, relu=False)
    m1, m2 = add.mults
    s = int(add.rq.shift[0])
    assert (m1, s) == ir.quantize_multiplier(0.5) and m2 == round(0.25 * 2 ** s)
    x1 = np.array([[[3, -3, 100, 127]]])
    x2 = np.array([[[1, -1, 100, -128]]])
    # 0.5*x1 + 0.25*x2 = 1.75, -1.75, 75, 31.5 -> 2, -2, 75, 32 (half up)
    np.testing.assert_array_equal(add.run([x1, x2]), [[[2, -2, 75, 32]]])
    t = x1 * m1 + x2 * m2
    want = reference.requant(t.reshape(1, 1, -1), [0], [1], [s], False, 8).reshape(t.shape)
    np.testing.assert_array_equal(add.run([x1, x2]), want)
    with pytest.raises(ir.IRError, match="one shape"):
        add.infer([ir.TensorType((2, 3, 3)), ir.TensorType((3, 3, 3))])


def test_pools_with_padding_match_torch():
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, size=(2, 5, 7, 6))
    xt = torch.from_numpy(x).double()
    for ks, st, pad in ((3, 2, 1), (2, 1, 1), (3, 1, 1), (5, 3, 2)):
        mx = ir.Pool(mode="max", ks=ks, stride=st, pad=pad).run([x])
        np.testing.assert_array_equal(mx, F.max_pool2d(xt, ks, st, pad).long().numpy())
        av = ir.Pool(mode="avg", ks=ks, stride=st, pad=pad).run([x])
        sums = F.avg_pool2d(xt, ks, st, pad, count_include_pad=True) * ks * ks        # exact integer sums
        np.testing.assert_array_equal(av, torch.floor((2 * sums + ks * ks) / (2 * ks * ks)).long().numpy())
    x1 = rng.integers(-8, 8, size=(3, 4, 11))                                             # (N, C, L)
    y = ir.Pool(mode="max", ks=3, stride=2, pad=1).run([x1])
    np.testing.assert_array_equal(y, F.max_pool1d(torch.from_numpy(x1).double(), 3, 2, 1).long().numpy())
    with pytest.raises(ir.IRError, match="padding"):
        ir.Pool(mode="max", ks=2, stride=2, pad=2)


def test_adaptive_avgpool_windows_match_torch():
    rng = np.random.default_rng(1)
    x = rng.integers(-128, 128, size=(2, 3, 7, 5))
    for out in ((1, 1), (2, 2), (3, 2), (7, 5)):
        y = ir.AdaptiveAvgPool(out=out).run([x])
        # torch's means times the window sizes are the exact integer sums
        ones = torch.ones(1, 1, 7, 5, dtype=torch.float64)
        cnt = F.adaptive_avg_pool2d(ones, out) * 0 + torch.tensor(
            [[[[len(range(*h)) * len(range(*w)) for w in ir.pooling.adaptive_bounds(5, out[1])]
               for h in ir.pooling.adaptive_bounds(7, out[0])]]], dtype=torch.float64)
        sums = torch.round(F.adaptive_avg_pool2d(torch.from_numpy(x).double(), out) * cnt)
        np.testing.assert_array_equal(y, torch.floor((2 * sums + cnt) / (2 * cnt)).long().numpy())
    y1 = ir.AdaptiveAvgPool(out=(1,)).run([np.array([[[1, 2], [-1, -2], [1, 0]]])])
    np.testing.assert_array_equal(y1, [[[2], [-1], [1]]])            # 1.5 -> 2, -1.5 -> -1, 0.5 -> 1


def test_shuffle_and_unfold_match_torch():
    rng = np.random.default_rng(2)
    x = rng.integers(-8, 8, size=(2, 6, 3, 5))
    y = ir.ChannelShuffle(groups=3).run([x])
    np.testing.assert_array_equal(y, torch.nn.functional.channel_shuffle(torch.from_numpy(x), 3).numpy())
    # conv1d == unfold + 1x1 conv2d (groups too)
    for C, K, ks, st, pad, g in ((3, 4, 5, 2, 2, 1), (4, 6, 3, 1, 1, 2), (6, 6, 3, 2, 0, 6)):
        x1 = rng.integers(-8, 8, size=(2, C, 13))
        w = rng.integers(-3, 4, size=(K, C // g, ks))
        un = ir.Unfold1d(ks=ks, stride=st, pad=pad).run([x1])
        acc = reference.conv2d(un, w.reshape(K, -1, 1, 1), 1, 0, g)[:, :, 0, :]
        want = F.conv1d(torch.from_numpy(x1).double(), torch.from_numpy(w).double(), None, st, pad, 1, g)
        np.testing.assert_array_equal(acc, want.long().numpy())


def test_concat_needs_one_code():
    c = ir.Concat(count=2)
    assert c.infer([ir.TensorType((2, 3, 3), 4), ir.TensorType((5, 3, 3), 4)]) == ir.TensorType((7, 3, 3), 4)
    with pytest.raises(ir.IRError, match="one code"):
        c.infer([ir.TensorType((2, 3, 3), 4), ir.TensorType((5, 3, 3), 8)])


# ---- C == IR on the host -------------------------------------------------------------------------

def residual_graph(rng, qa, qb, c=5, hw=7):
    """conv -> conv (no ReLU) + the block input (identity shortcut, kept alive) -> ReLU6 add ->
    padded avg pool -> global pool -> linear."""
    g = ir.Graph(ir.TensorType((c, hw, hw), qa))
    g.add(conv(rng, "c1", c, c, qa, qb, qb))
    g.add(conv(rng, "c2", c, c, qb, qa, 8, relu=False))
    g.add(add_op(rng, "add", [8, qa], qb, relu=True, clip_hi=(1 << (qb - 1)) - 2 if qb > 2 else None), 1, -1)
    g.add(conv(rng, "c3", c, 6, qb, qb, 4, stride=2))
    g.add(ir.Pool(name="p", mode="avg", ks=3, stride=1, pad=1))
    g.add(ir.AdaptiveAvgPool(name="gap", out=(1, 1)))
    g.add(ir.Flatten(name="flat"))
    g.add(linear(rng, "fc", 6, 10, 4, qa, 0))
    return g


def branch_graph(rng, qa, qw, c=6, hw=9):
    """conv -> [depthwise 3x3 s2 | 1x1 s2 grouped] -> concat -> shuffle -> rescale -> padded max pool
    -> adaptive 2x2 -> linear."""
    g = ir.Graph(ir.TensorType((3, hw, hw), qa))
    g.add(conv(rng, "c1", 3, c, qa, qw, qa))
    g.add(conv(rng, "dw", c, c, qa, qw, 4, stride=2, groups=c))
    g.add(conv(rng, "pw", c, 9, qa, qw, 4, ks=1, pad=0, stride=2, groups=3), 0)
    g.add(ir.Concat(name="cat", count=2), 1, 2)
    g.add(ir.ChannelShuffle(name="sh", groups=5))
    g.add(add_op(rng, "rs", [4], qa, relu=False))
    g.add(ir.Pool(name="mp", mode="max", ks=3, stride=2, pad=1))
    g.add(ir.AdaptiveAvgPool(name="gap", out=(2, 2)))
    g.add(ir.Flatten(name="flat"))
    g.add(linear(rng, "fc", g.output.numel, 10, qa, qw, 0))
    return g


def conv1d_graph(rng, qa, qw, c=3, length=19):
    """conv1d k5 s2 p2 -> avg pool1d -> depthwise conv1d k3 -> max pool1d -> global pool -> linear."""
    g = ir.Graph(ir.TensorType((c, length), qa))
    g.add(ir.Unfold1d(name="u1", ks=5, stride=2, pad=2))
    g.add(conv(rng, "c1", c * 5, 6, qa, qw, qa, ks=1, pad=0))
    g.nodes[-1].op.kernel = "direct" if qa == 1 else "auto"     # 1-bit codes cannot pack the unfolded zeros
    ol = g.output.shape[2]
    g.add(ir.Reshape(name="r1", shape=(6, ol)))
    g.add(ir.Pool(name="p1", mode="avg", ks=3, stride=1, pad=1))
    g.add(ir.Unfold1d(name="u2", ks=3, stride=1, pad=1))
    g.add(conv(rng, "dw", 18, 6, qa, qw, 8, ks=1, pad=0, groups=6))
    g.add(ir.Reshape(name="r2", shape=(6, ol)))
    g.add(ir.Pool(name="p2", mode="max", ks=2, stride=2))
    g.add(ir.AdaptiveAvgPool(name="gap", out=(1,)))
    g.add(ir.Flatten(name="flat"))
    g.add(linear(rng, "fc", 6, 10, 8, qw, 0))
    return g


@pytest.mark.parametrize("qa,qb", [(8, 8), (4, 2), (2, 4), (1, 8), (8, 1)])
def test_residual_graph_is_bit_exact_on_host(host, qa, qb):
    rng = np.random.default_rng(qa * 10 + qb)
    g = residual_graph(rng, qa, qb)
    xs = int_values(rng, qa, (5, *g.input.shape))
    ref, trace = g.run(xs, trace=True)
    assert len(np.unique(trace[2])) >= 2                      # the add is not degenerate
    np.testing.assert_array_equal(run_on_host(*host, g, xs), ref)


@pytest.mark.parametrize("qa,qw", list(itertools.product((1, 2, 4, 8), (1, 4, 8))))
def test_branch_graph_is_bit_exact_on_host(host, qa, qw):
    rng = np.random.default_rng(100 + qa * 10 + qw)
    g = branch_graph(rng, qa, qw)
    xs = int_values(rng, qa, (4, *g.input.shape))
    np.testing.assert_array_equal(run_on_host(*host, g, xs), g.run(xs))


@pytest.mark.parametrize("qa,qw", [(8, 8), (4, 1), (2, 2), (1, 4)])
def test_conv1d_graph_is_bit_exact_on_host(host, qa, qw):
    rng = np.random.default_rng(200 + qa * 10 + qw)
    g = conv1d_graph(rng, qa, qw)
    xs = int_values(rng, qa, (4, *g.input.shape))
    np.testing.assert_array_equal(run_on_host(*host, g, xs), g.run(xs))


@pytest.mark.parametrize("C,K,G,ks,st,pad,hw", [(6, 6, 6, 3, 1, 1, 7), (5, 10, 5, 3, 2, 1, 9), (6, 6, 6, 5, 2, 2, 11),
                                                (8, 12, 4, 3, 1, 0, 6), (3, 3, 3, 3, 1, 1, 1), (6, 9, 3, 1, 1, 0, 5)])
def test_direct_grouped_conv_equals_packed_conv(host, C, K, G, ks, st, pad, hw):
    """mico_gconv2d and mico_conv2d give the same accumulators on every width pair."""
    rng = np.random.default_rng(C * K + G)
    for qa, qw in ((8, 8), (1, 1), (2, 4), (4, 2), (8, 1)):
        graphs = []
        for kernel in ("direct", "packed"):
            g = ir.Graph(ir.TensorType((C, hw, hw), qa))
            op = conv(rng if kernel == "direct" else np.random.default_rng(0), "c", C, K, qa, qw, 8, ks=ks,
                      stride=st, pad=pad, groups=G)
            op.kernel = kernel
            graphs.append((g, op))
        graphs[1][1].weight, graphs[1][1].rq = graphs[0][1].weight, graphs[0][1].rq
        xs = int_values(rng, qa, (3, C, hw, hw))
        outs = []
        for g, op in graphs:
            g.add(op)
            g.add(ir.Flatten(name="f"))
            g.add(linear(np.random.default_rng(1), "fc", g.output.numel, 4, 8, 8, 0))
            outs.append(run_on_host(*host, g, xs))
        np.testing.assert_array_equal(outs[0], outs[1])
        np.testing.assert_array_equal(outs[0], graphs[0][0].run(xs))


def test_packed_1bit_codes_cannot_carry_unfolded_zeros(host):
    """Why QConv1d runs 1-bit convs with padding on the direct kernel: packed, a 0 reads as +1."""
    rng = np.random.default_rng(7)
    outs = {}
    for kernel in ("packed", "direct"):
        g = ir.Graph(ir.TensorType((3, 11), 1))
        g.add(ir.Unfold1d(name="u1", ks=5, stride=2, pad=2))
        g.add(conv(np.random.default_rng(0), "c1", 15, 6, 1, 4, 8, ks=1, pad=0))
        g.nodes[-1].op.kernel = kernel
        g.add(ir.Flatten(name="f"))
        g.add(linear(np.random.default_rng(1), "fc", g.output.numel, 4, 8, 8, 0))
        xs = int_values(rng, 1, (3, 3, 11))
        outs[kernel] = (run_on_host(*host, g, xs), g.run(xs))
    np.testing.assert_array_equal(*outs["direct"])
    assert (outs["packed"][0] != outs["packed"][1]).any()


@pytest.mark.parametrize("pad", [0, 1])
def test_average_of_1bit_codes_is_a_1bit_code(host, pad):
    rng = np.random.default_rng(8 + pad)
    g = ir.Graph(ir.TensorType((5, 6, 6), 1))
    g.add(ir.Pool(name="p", mode="avg", ks=2 + pad, stride=2, pad=pad))
    g.add(ir.AdaptiveAvgPool(name="gap", out=(2, 2)))
    g.add(ir.Flatten(name="f"))
    g.add(linear(rng, "fc", 20, 6, 1, 2, 0))
    xs = int_values(rng, 1, (6, 5, 6, 6))
    _, trace = g.run(xs, trace=True)
    assert set(np.unique(trace[0])) == {-1, 1} and set(np.unique(trace[1])) <= {-1, 1}
    np.testing.assert_array_equal(run_on_host(*host, g, xs), g.run(xs))
