"""Unsigned activation codes, learned step sizes (LSQ) and QAT with early stopping."""

import numpy as np
import pytest
import torch

from kernels import ir
from mpq.datasets import load_dataset
from mpq.integer import build_integer_model
from mpq.models import get_model
from mpq.models.base import QRef
from mpq.quant import ActFakeQuant, WeightFakeQuant, fake_quant, qrange, quantize_codes
from mpq.train import accuracy, calibrate, lsq_parameters, qat, quantize, set_seed, train_float

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def lenet(digits):
    set_seed(0)
    m = get_model("lenet", "digits")
    train_float(m, digits.x_train, digits.y_train, epochs=6, seed=0)
    return m


def test_unsigned_codes_cover_zero_to_top():
    x = torch.linspace(-2, 20, 200)
    for b in ir.UNSIGNED_BITS:
        q = quantize_codes(x, 1.0, b, unsigned=True)
        assert q.min() == 0 and q.max() == (1 << b) - 1 and qrange(b, True) == (0, (1 << b) - 1)
        assert len(torch.unique(q[x >= 0])) == 1 << b         # every code is used by non-negative inputs
    with pytest.raises(ValueError):
        qrange(8, unsigned=True)
    assert quantize_codes(torch.tensor([-0.2, 0.3]), 1.0, 1, unsigned=True).tolist() == [-1.0, 1.0]


def test_signedness_follows_the_structure():
    """LeNet: every input but the image's is a ReLU output, unsigned at 2 and 4 bits only."""
    m = get_model("lenet", "digits")
    assert m.unsigned_codes(((4, 8), (4, 4), (2, 2), (8, 2))) == {QRef(layer=1), QRef(layer=2)}
    assert m.unsigned_codes(((2, 8), (8, 4), (1, 2), (4, 2))) == {QRef(layer=3)}
    m.set_scheme(((4, 8), (4, 4), (2, 2), (8, 2)))
    assert [l.act_quant.unsigned for _, l in m.quant_layers()] == [False, True, True, False]
    g = m.lower()
    assert [n.type.signed for n in g.nodes] == [False, False, False, False, False, True, True]
    # a residual add's output and rescaled codes stay signed
    for name in ("resnet8", "squeezenet"):
        r = get_model(name, "digits")
        n = len(r.quant_layers())
        g = r.lower(((4, 4),) * n)
        kinds = {node.op.kind for node in g.nodes}
        assert kinds & {"add", "concat"}
        for node in g.nodes:
            if node.op.kind in ("add", "rescale"):
                assert node.type.signed
        assert not all(node.type.signed for node in g.nodes)      # the convs inside read ReLU outputs


def test_lsq_gradient_reaches_activation_and_weight_scales():
    torch.manual_seed(0)
    a = ActFakeQuant(4)
    a.unsigned = False
    a.observe(torch.randn(64))
    a.fake_quant_enabled.fill_(1)
    a.start_lsq()
    x = torch.randn(64, requires_grad=True)
    a(x).pow(2).sum().backward()
    assert a.lsq_scale.grad is not None and a.lsq_scale.grad.abs() > 0 and x.grad.abs().sum() > 0
    w = torch.randn(6, 3, 3, 3)
    wq = WeightFakeQuant(2)
    wq.fake_quant_enabled.fill_(1)
    s0 = wq.scale(w).clone()
    wq.start_lsq(w)
    assert torch.equal(wq.scale(w), s0)
    wq(w).pow(2).sum().backward()
    assert wq.lsq_scale.grad.shape == (6,) and (wq.lsq_scale.grad != 0).all()
    # the LSQ scale gradient of a value inside the range is (round(x/s) - x/s) * grad_scale
    s = torch.tensor(0.5, requires_grad=True)
    fake_quant(torch.tensor([0.6]), s, 4, learn=True).sum().backward()
    g = 1 / np.sqrt(1 * 7)
    assert float(s.grad) == pytest.approx((1 - 1.2) * g)


def test_lsq_qat_integer_model_equals_fake_quant(lenet, digits):
    """After QAT with learned scales on unsigned codes the integer model still rounds the
    same accumulators as the fake-quant model, and the learned scales moved."""
    scheme = ((8, 8), (4, 2), (2, 2), (2, 4))
    q = quantize(lenet, scheme, digits.x_train, seed=0)
    before = [float(layer.act_quant.scale().detach()) for _, layer in q.quant_layers()]
    qat(q, digits.x_train, digits.y_train, epochs=None, steps=40, seed=0, lsq=True)
    after = [float(layer.act_quant.scale().detach()) for _, layer in q.quant_layers()]
    assert lsq_parameters(q) and before != after
    im = build_integer_model(q)
    assert [op.rq.unsigned for op in im.layers[:3]] == [True, True, True]
    with torch.no_grad():
        fq = q(digits.x_test).argmax(1)
    assert float((fq == im.predict(digits.x_test)).float().mean()) >= 0.99


def test_unsigned_codes_beat_signed_after_relu(lenet, digits):
    """The point of unsigned codes: at 2 bits a ReLU output gets 4 levels instead of 2."""
    scheme = ((8, 8), (2, 8), (2, 8), (2, 8))
    accs = {}
    for uns in (False, True):
        q = quantize(lenet, scheme, digits.x_train, seed=0)
        if not uns:
            object.__setattr__(q, "sync_signedness", lambda: None)      # force the old signed codes
            for _, layer in q.quant_layers():
                layer.act_quant.unsigned = False
            calibrate(q, digits.x_train, seed=0)
        accs[uns] = accuracy(q, digits.x_test, digits.y_test)
    assert accs[True] > accs[False] + 0.02, accs


def test_early_stopping_restores_the_best_validation_epoch(lenet, digits):
    n = len(digits.y_train)
    x_tr, y_tr = digits.x_train[: n * 3 // 4], digits.y_train[: n * 3 // 4]
    x_val, y_val = digits.x_train[n * 3 // 4:], digits.y_train[n * 3 // 4:]
    q = quantize(lenet, ((8, 8), (2, 2), (2, 2), (2, 2)), x_tr, seed=0)
    scores = []
    losses = qat(q, x_tr, y_tr, epochs=4, seed=0, lsq=True, x_val=x_val, y_val=y_val, patience=2,
                 lr=3e-2)                         # a high rate: later epochs may get worse
    per_epoch = (len(y_tr) + 63) // 64
    assert 0 < len(losses) <= 4 * per_epoch and len(losses) % per_epoch == 0
    scores.append(accuracy(q, x_val, y_val))
    # the restored state scores the best validation accuracy seen (>= the PTQ start)
    start = quantize(lenet, ((8, 8), (2, 2), (2, 2), (2, 2)), x_tr, seed=0)
    assert scores[0] >= accuracy(start, x_val, y_val)


def test_memory_budgets_hold_in_the_generated_c(lenet, digits):
    """The search's memory prediction (structural graph) is what the generated C declares:
    constant bytes of every array the MAC layers emit, and RUN_MODEL's arena bytes."""
    import re

    from kernels.ir import codegen
    from mpq.memory import graph_memory, model_memory
    from mpq.search import run_search
    from mpq.evaluate import cbops_latency

    for scheme in (((8, 8),) * 4, ((8, 4), (2, 2), (4, 1), (2, 8))):
        q = quantize(lenet, scheme, digits.x_train, seed=0)
        im = build_integer_model(q)
        gen = codegen.generate(im.graph)
        sizes = {"int32_t": 4, "uint32_t": 4, "uint8_t": 1, "int8_t": 1}
        declared = sum(sizes[t] * int(n) for t, name, n in
                       re.findall(r"static const (\w+) (\w+)\[(\d+)\]", gen.source))
        pred = graph_memory(q.lower(scheme))
        assert pred["weight_bytes"] == declared
        assert pred["ram_bytes"] == model_memory(gen, None).arena_bytes
    # a search under both budgets returns a scheme within them
    full = graph_memory(lenet.lower(((8, 8),) * 4))
    size, ram = full["weight_bytes"] // 3, full["ram_bytes"] - 64
    res, _ = run_search(lenet, lambda s: sum(a + w for a, w in s) / 64, cbops_latency, "90%", searcher="evolution",
                        n_evals=6, seed=0, size_budget=size, ram_budget=ram)
    assert res.candidates
    for c in res.candidates:
        m = graph_memory(lenet.lower(c.bits))
        assert m["weight_bytes"] <= size and m["ram_bytes"] <= ram
