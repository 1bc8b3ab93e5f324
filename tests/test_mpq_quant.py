"""Fake quantisation: codes, scales, STE, observers -- and "PyTorch fake-quant
equals the NumPy reference" for every (qa, qw) pair."""

import itertools

import numpy as np
import pytest
import torch

from kernels import reference
from mpq.quant import (A2_MEAN_FACTOR, W2_MEAN_FACTOR, ActFakeQuant, QConv2d, QLinear, WeightFakeQuant,
                       enable_fake_quant, fake_quant, qrange, quantize_codes, quantize_codes_np, weight_scale)

torch.set_num_threads(1)
BITS = (1, 2, 4, 8)
PAIRS = list(itertools.product(BITS, BITS))


@pytest.mark.parametrize("bits", BITS)
def test_quantize_codes_matches_numpy_including_ties(bits):
    rng = np.random.default_rng(bits)
    scale = 0.25
    lo, hi = qrange(bits)
    # exact ties k + 0.5 (representable), values around the clamp limits, zeros, random
    ties = (np.arange(lo - 3, hi + 3) + 0.5) * scale
    rand = rng.normal(0, (hi + 2) * scale, 500)
    x = np.concatenate([ties, -ties, rand, [0.0, -0.0, lo * scale, hi * scale]]).astype(np.float32)
    got = quantize_codes(torch.from_numpy(x), torch.tensor(scale), bits).numpy()
    want = quantize_codes_np(x, np.float32(scale), bits)
    np.testing.assert_array_equal(got, want)
    assert got.min() >= lo and got.max() <= hi
    if bits >= 2:
        # round half to even: 0.5 -> 0, 1.5 -> 2, -0.5 -> -0, -1.5 -> -2
        t = quantize_codes(torch.tensor([0.5, 1.5, -0.5, -1.5]) * scale, torch.tensor(scale), 8)
        assert t.tolist() == [0.0, 2.0, 0.0, -2.0]
    else:
        assert set(np.unique(got)) <= {-1.0, 1.0}
        assert quantize_codes(torch.tensor([0.0, -0.0, -1e-30]), 1.0, 1).tolist() == [1.0, 1.0, -1.0]


def test_quantize_codes_per_channel_scale_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 3, 3, 3)).astype(np.float32)
    s = np.abs(rng.normal(size=(6, 1, 1, 1))).astype(np.float32) / 5 + 0.01
    for b in BITS:
        got = quantize_codes(torch.from_numpy(x), torch.from_numpy(s), b).numpy()
        np.testing.assert_array_equal(got, quantize_codes_np(x, s, b))


@pytest.mark.parametrize("bits", BITS)
def test_ste_gradient_passes_only_where_not_clamped(bits):
    scale = torch.tensor(0.5)
    lo, hi = qrange(bits)
    x = torch.linspace((lo - 3) * 0.5, (hi + 3) * 0.5, 101, requires_grad=True)
    y = fake_quant(x, scale, bits)
    y.sum().backward()
    r = (x / scale).detach()
    if bits == 1:
        want = (r.abs() <= 1).float()
    else:
        want = ((r >= lo - 0.5) & (r <= hi + 0.5)).float()
    assert torch.equal(x.grad, want)
    assert 0 < want.sum() < len(want)
    np.testing.assert_array_equal(y.detach().numpy(), (quantize_codes(x.detach(), scale, bits) * scale).numpy())


def test_weight_scales():
    w = torch.randn(5, 4, 3, 3)
    flat = w.reshape(5, -1).abs()
    for b in (4, 8):
        torch.testing.assert_close(weight_scale(w, b), flat.amax(1) / (2 ** (b - 1) - 1))
    torch.testing.assert_close(weight_scale(w, 1), flat.mean(1))
    torch.testing.assert_close(weight_scale(w, 2), flat.mean(1) * W2_MEAN_FACTOR)
    torch.testing.assert_close(weight_scale(w, 2, policy="minmax"), flat.amax(1))
    # per-tensor: one value repeated per output channel
    pt = weight_scale(w, 8, per_channel=False)
    assert pt.shape == (5,) and torch.all(pt == flat.max() / 127)
    # an all-zero channel gets a tiny positive scale, never 0 / nan
    w[2] = 0
    assert torch.all(weight_scale(w, 8) > 0)


def test_activation_observer_ema_train_only():
    q = ActFakeQuant(8, momentum=0.5)
    q.train()
    q(torch.tensor([1.0, -2.0]))            # first observation initialises
    assert float(q.ema_max) == 2.0 and float(q.ema_mean) == 1.5
    q(torch.tensor([4.0, 0.0]))             # EMA
    assert float(q.ema_max) == 3.0 and float(q.ema_mean) == 1.75
    q.eval()
    q(torch.tensor([100.0]))                # frozen in eval
    assert float(q.ema_max) == 3.0
    assert float(q.scale()) == pytest.approx(3.0 / 127)
    q.bits = 1
    assert float(q.scale()) == pytest.approx(1.75)
    q.bits = 2
    assert float(q.scale()) == pytest.approx(1.75 * A2_MEAN_FACTOR)
    for b in BITS:
        q.bits = b
        q.set_scale(0.125)
        assert float(q.scale()) == 0.125


def test_fake_quant_off_is_the_float_layer():
    torch.manual_seed(0)
    c = QConv2d(3, 4, 3, padding=1)
    ref = torch.nn.Conv2d(3, 4, 3, padding=1)
    ref.load_state_dict({k: v for k, v in c.state_dict().items() if k in ("weight", "bias")})
    enable_fake_quant(c, False)
    x = torch.randn(2, 3, 5, 5)
    torch.testing.assert_close(c(x), ref(x))


def _codes(rng, shape, b, full_range=True):
    lo, hi = qrange(b)
    if b == 1:
        return rng.choice([-1, 1], size=shape)
    return rng.integers(lo if full_range else -hi, hi + 1, size=shape)


def _weights_with_pow2_scales(rng, shape, qw):
    """Integer weight codes and power-of-two per-channel scales whose weight
    fake-quantiser (minmax policy for 2 bits) reproduces exactly those codes."""
    K = shape[0]
    codes = _codes(rng, shape, qw, full_range=False).reshape(K, -1)
    if qw >= 2:
        qmax = 2 ** (qw - 1) - 1
        codes[:, 0] = rng.choice([-qmax, qmax], size=K)      # channel max|code| = qmax
    s_w = 2.0 ** rng.integers(-9, -2, size=K)
    return codes.reshape(shape), s_w


@pytest.mark.parametrize("qa,qw", PAIRS)
def test_fake_quant_equals_numpy_reference(qa, qw):
    """QConv2d / QLinear forward (float64) == reference integer kernel x scales, exactly."""
    rng = np.random.default_rng(100 * qa + qw)
    # ---- conv2d (groups 2, stride 2, padding 1) ----
    N, C, H, W, K, KS, S, P, G = 2, 4, 7, 6, 6, 3, 2, 1, 2
    conv = QConv2d(C, K, KS, stride=S, padding=P, groups=G, qa=qa, qw=qw).double()
    conv.weight_quant.policy = "minmax"
    wc, s_w = _weights_with_pow2_scales(rng, (K, C // G, KS, KS), qw)
    s_a = 2.0 ** -5
    xc = _codes(rng, (N, C, H, W), qa)
    bias_int = rng.integers(-300, 300, size=K)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(wc * s_w[:, None, None, None]))
        conv.bias.copy_(torch.from_numpy(bias_int * s_a * s_w))
    conv.act_quant.set_scale(s_a)
    enable_fake_quant(conv, True)
    conv.eval()
    for exact in (True, False):
        conv.exact_acc = exact
        got = conv(torch.from_numpy(xc * s_a)).detach().numpy()
        acc = reference.conv2d(xc, wc, S, P, G).astype(np.float64) + bias_int[None, :, None, None]
        np.testing.assert_array_equal(got, acc * s_a * s_w[None, :, None, None])
    np.testing.assert_array_equal(conv.integer_params()["weight"], wc)
    np.testing.assert_array_equal(conv.integer_params()["bias"], bias_int)

    # ---- linear ----
    Nl, Kin, M = 3, 37, 5
    lin = QLinear(Kin, M, qa=qa, qw=qw).double()
    lin.weight_quant.policy = "minmax"
    wl, s_wl = _weights_with_pow2_scales(rng, (M, Kin), qw)
    xl = _codes(rng, (Nl, Kin), qa)
    bl = rng.integers(-300, 300, size=M)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(wl * s_wl[:, None]))
        lin.bias.copy_(torch.from_numpy(bl * s_a * s_wl))
    lin.act_quant.set_scale(s_a)
    enable_fake_quant(lin, True)
    lin.eval()
    for exact in (True, False):
        lin.exact_acc = exact
        got = lin(torch.from_numpy(xl * s_a)).detach().numpy()
        acc = reference.matmul(xl, wl).astype(np.float64) + bl[None, :]
        np.testing.assert_array_equal(got, acc * s_a * s_wl[None, :])


def test_exact_accumulator_keeps_sign_of_zero_sums():
    """With 1-bit codes many sums are exactly 0: the fake-quant value must be
    exactly 0 there (sign +1 downstream), not float32 noise."""
    torch.manual_seed(1)
    lin = QLinear(64, 32, qa=1, qw=1)
    with torch.no_grad():
        lin.bias.zero_()
    lin.act_quant.set_scale(0.37)
    enable_fake_quant(lin, True)
    lin.eval()
    x = torch.randn(200, 64)
    y = lin(x)
    xa = quantize_codes(x, 1.0, 1).numpy()
    wc = quantize_codes(lin.weight.detach(), 1.0, 1).numpy()
    acc = reference.matmul(xa, wc)
    assert (acc == 0).any()
    assert torch.equal(y >= 0, torch.from_numpy(acc >= 0))


def test_qat_gradients_flow():
    torch.manual_seed(0)
    c = QConv2d(2, 3, 3, padding=1, qa=4, qw=2)
    enable_fake_quant(c, True)
    c.train()
    x = torch.randn(4, 2, 5, 5, requires_grad=True)
    c(x).square().sum().backward()
    assert c.weight.grad is not None and c.weight.grad.abs().sum() > 0
    assert c.bias.grad is not None and x.grad.abs().sum() > 0


def test_weight_fake_quant_module():
    wq = WeightFakeQuant(4)
    w = torch.randn(3, 8)
    assert torch.equal(wq(w), w)                 # disabled by default
    wq.fake_quant_enabled.fill_(1)
    s = weight_scale(w, 4)[:, None]
    assert torch.equal(wq(w), quantize_codes(w, s, 4) * s)
