"""The integer model: fixed-point multipliers, requant, and forward_int equal,
element by element, to a NumPy pipeline built from kernels/reference.py."""

import math

import numpy as np
import pytest
import torch

from kernels import reference
from mpq.datasets import load_dataset
from mpq.fold import fold_model
from kernels import ir
from mpq.integer import (MULT_LIMIT, MULT_MIN, IntegerModel, build_integer_model, quantize_multiplier,
                         quantize_multipliers)
from mpq.models import get_model
from mpq.train import accuracy, calibrate, qat, quantize, set_seed, train_float

torch.set_num_threads(1)


# ---- multipliers -------------------------------------------------------------------

def test_quantize_multiplier_range_and_precision():
    rng = np.random.default_rng(0)
    for m in np.concatenate([10.0 ** rng.uniform(-9, 3, 300), [0.5, 1.0, 2.0 ** -20, 0.75]]):
        mult, shift = quantize_multiplier(m)
        assert MULT_MIN <= mult < MULT_LIMIT and 1 <= shift <= 62
        assert abs(mult / 2.0 ** shift - m) <= m * 2.0 ** -30


def test_quantize_multiplier_rounding_overflow():
    m = 1.0 - 2.0 ** -40          # frexp mantissa rounds up to 2^31
    mult, shift = quantize_multiplier(m)
    assert (mult, shift) == (2 ** 30, 30)
    assert mult / 2.0 ** shift == 1.0
    m = 3.0 * 2.0 ** -12 * (1 - 2.0 ** -45)
    mult, shift = quantize_multiplier(m)
    assert MULT_MIN <= mult < MULT_LIMIT and math.isclose(mult / 2.0 ** shift, m, rel_tol=2 ** -30)


def test_quantize_multiplier_limits():
    assert quantize_multiplier(1e-15) == (2 ** 30, 62)    # underflow: clamped, outputs ~0
    for bad in (0.0, -1.0, float("nan"), float("inf"), 2.0 ** 31):
        with pytest.raises(ValueError):
            quantize_multiplier(bad)
    mult, shift = quantize_multipliers([0.1, 0.2])
    assert mult.dtype == np.int32 and shift.dtype == np.uint8


def test_requant_round_half_up():
    # (acc + bias) * mult / 2^shift = k + 0.5 exactly -> rounds up (also for negatives)
    acc = np.array([[1, 3, -1, -3, 5]], dtype=np.int64)
    rq = ir.Requant(np.zeros(5, np.int32), np.full(5, 2 ** 30), np.full(5, 31), False, 8)   # multiply by 0.5
    assert rq.apply(acc.T, 0).T.tolist() == [[1, 2, 0, -1, 3]]


# ---- numpy pipeline from kernels/reference.py --------------------------------------

def numpy_forward(im: IntegerModel, x_vals: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    x = np.asarray(x_vals).astype(np.int64)
    outs = []
    for op in im.ops:      # an independent pipeline: the test may look at op types, the code may not
        if isinstance(op, ir.Conv2d):
            acc = reference.conv2d(x, op.weight, op.stride, op.pad, op.groups)
        elif isinstance(op, ir.Linear):
            acc = reference.matmul(x, op.weight)
        elif isinstance(op, ir.Pool):
            f = reference.maxpool if op.mode == "max" else reference.avgpool
            x = f(x, op.ks, op.stride).astype(np.int64)
            outs.append(x)
            continue
        else:
            x = x.reshape(x.shape[0], -1)
            outs.append(x)
            continue
        rq = op.rq
        if op.out_bits == 0:
            x = acc.astype(np.int64) + rq.bias.astype(np.int64)[None, :]
        elif rq.unsigned:       # a ReLU output on unsigned codes: [0, 2^b - 1] (docs/formats.md)
            x = reference.requant(acc, rq.bias, rq.mult, rq.shift, True, 8, channel_axis=1).astype(np.int64)
            x = np.minimum(x, (1 << op.out_bits) - 1)
        else:
            x = reference.requant(acc, rq.bias, rq.mult, rq.shift, rq.relu, op.out_bits, channel_axis=1).astype(np.int64)
        outs.append(x)
    return x, outs


def _randomise_bn(model, seed):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.2)


SCHEMES = {
    "lenet": [((8, 8),) * 4, ((4, 4),) * 4, ((2, 2),) * 4, ((1, 1),) * 4,
              ((8, 8), (1, 2), (4, 1), (2, 8)), ((2, 4), (8, 1), (1, 8), (4, 2)), ((1, 8), (2, 2), (8, 4), (1, 1))],
    "mlp": [((8, 8),) * 3, ((1, 1),) * 3, ((4, 2), (1, 4), (8, 1)), ((2, 8), (8, 2), (1, 2))],
}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.mark.parametrize("name", ["lenet", "mlp"])
def test_forward_int_equals_numpy_reference(name, digits):
    for k, scheme in enumerate(SCHEMES[name]):
        torch.manual_seed(k)
        m = get_model(name, "digits")
        _randomise_bn(m, k)
        m.eval()
        fold_model(m)
        m.set_scheme(scheme)
        calibrate(m, digits.x_train, batches=2, seed=k)
        im = build_integer_model(m)
        assert im.scheme == tuple(scheme)
        x = torch.cat([digits.x_test[:40], torch.rand(8, 1, 8, 8)])
        xq = im.quantize_input(x)
        assert xq.dtype == torch.int8
        lo, hi = (-1, 1) if scheme[0][0] == 1 else (-2 ** (scheme[0][0] - 1), 2 ** (scheme[0][0] - 1) - 1)
        assert int(xq.min()) >= lo and int(xq.max()) <= hi
        logits, trace = im.forward_int(xq, trace=True)
        assert logits.dtype == torch.int32 and logits.shape == (48, 10)
        want, want_trace = numpy_forward(im, xq.numpy())
        np.testing.assert_array_equal(logits.numpy().astype(np.int64), want)
        assert len(trace) == len(want_trace) == len(im.ops)
        for t, w in zip(trace, want_trace):
            np.testing.assert_array_equal(t.numpy(), w)
        # the per-layer parameter contract of the deploy code
        for op in im.layers:
            rq = op.rq
            assert op.weight.dtype == np.int8 and rq.bias.dtype == np.int32
            assert rq.mult.dtype == np.int32 and rq.shift.dtype == np.uint8
            assert np.all(rq.mult >= 2 ** 30) and np.all(rq.shift >= 1) and np.all(rq.shift <= 62)
        assert im.layers[-1].out_bits == 0
        for op, nxt in zip(im.layers, im.layers[1:]):
            assert op.out_bits == nxt.qa and op.rq.relu == (nxt.qa != 1)


def test_avgpool_op_matches_reference():
    rng = np.random.default_rng(3)
    x = rng.integers(-128, 128, size=(2, 3, 7, 6))
    for ks, s in ((2, 2), (3, 1), (3, 2)):
        got = ir.Pool(mode="avg", ks=ks, stride=s).run([x])
        np.testing.assert_array_equal(got, reference.avgpool(x, ks, s))
        got = ir.Pool(mode="max", ks=ks, stride=s).run([x])
        np.testing.assert_array_equal(got, reference.maxpool(x, ks, s))


def test_integer_model_matches_fake_quant_after_training(digits):
    """Trained LeNet: integer predictions equal the fake-quant ones (both paths
    round the same integer accumulators), also for 1-bit and mixed schemes."""
    set_seed(0)
    m = get_model("lenet", "digits")
    train_float(m, digits.x_train, digits.y_train, epochs=6, seed=0)
    for scheme in (((8, 8),) * 4, ((8, 8), (2, 2), (1, 1), (8, 8)), ((1, 1),) * 4, ((4, 2), (1, 4), (2, 8), (8, 1))):
        q = quantize(m, scheme, digits.x_train, seed=0)
        qat(q, digits.x_train, digits.y_train, epochs=None, steps=15, seed=0)
        im = build_integer_model(q)
        with torch.no_grad():
            fq = q(digits.x_test)
        ip = im.predict(digits.x_test)
        agree = float((fq.argmax(1) == ip).float().mean())
        assert agree >= 0.99, (scheme, agree)
        # the float logits are the integer logits times the (per-tensor) output scale
        scale = im.layers[-1].rq.real_scale        # s_in * s_w of the classifier (per-tensor)
        assert np.all(scale == scale[0])
        il = im.forward_int(im.quantize_input(digits.x_test)).double().numpy() * float(scale[0])
        # float32 noise in the fake-quant path may flip a 1-bit activation on a rare image
        # (seen on 1 of 360 images on one machine); every other image must agree to float precision
        close = np.isclose(fq.double().numpy(), il, rtol=1e-5, atol=1e-4 * float(fq.abs().max())).all(axis=1)
        assert close.mean() >= 0.99, (scheme, np.flatnonzero(~close))
        if scheme == ((8, 8),) * 4:
            assert accuracy(q, digits.x_test, digits.y_test) > 0.9


def test_integer_model_metadata(digits):
    m = get_model("lenet", "digits").eval()
    fold_model(m)
    scheme = ((8, 4), (4, 2), (2, 1), (1, 8))
    m.set_scheme(scheme)
    calibrate(m, digits.x_train, batches=1)
    im = build_integer_model(m)
    assert [type(op).__name__ for op in im.ops] == ["Conv2d", "Pool", "Conv2d", "Pool", "Flatten", "Linear", "Linear"]
    specs = im.specs(1)
    assert specs == m.layer_specs(1)
    assert [s.op for s in specs] == ["conv2d", "conv2d", "matmul", "matmul"]
    assert specs[1].shape == (1, 16, 4, 4, 32, 3, 1, 1, 1)
    assert specs[2].shape == (1, 64, 128)
    assert im.bops() == sum(s.bops for s in specs)
    assert im.size_bits == 16 * 9 * 4 + 32 * 16 * 9 * 2 + 64 * 128 * 1 + 10 * 64 * 8
    assert im.param_bits > im.size_bits
    assert im.input_bits == 8 and im.input_shape == (1, 8, 8) and im.input_offset == 0.5
    assert im.ops[0].weight.shape == (16, 1, 3, 3) and im.ops[5].weight.shape == (64, 128)


def test_build_requires_folded_and_enabled():
    m = get_model("mlp", "digits")
    with pytest.raises(ValueError, match="fake quant"):
        build_integer_model(m)
    m2 = get_model("lenet", "digits")
    with pytest.raises(ValueError, match="fold"):
        build_integer_model(m2)
