"""Float training, PTQ calibration and QAT on digits: accuracy and determinism."""

import pytest
import torch

from mpq.datasets import load_dataset
from mpq.evaluate import float_accuracy
from mpq.fold import is_folded
from mpq.models import get_model
from mpq.train import accuracy, qat, quantize, set_seed, train_float

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def trained():
    d = load_dataset("digits")
    set_seed(0)
    m = get_model("lenet", "digits")
    losses = train_float(m, d.x_train, d.y_train, epochs=30, seed=0)
    return d, m, losses


def test_float_lenet_reaches_95_percent(trained):
    d, m, losses = trained
    assert losses[-1] < losses[0]
    acc = accuracy(m, d.x_test, d.y_test)
    assert acc > 0.95, acc


def test_training_is_deterministic(trained):
    d = trained[0]
    out = []
    for _ in range(2):
        set_seed(3)
        m = get_model("mlp", "digits")
        train_float(m, d.x_train, d.y_train, epochs=2, seed=3)
        out.append(m.state_dict())
    assert all(torch.equal(out[0][k], out[1][k]) for k in out[0])


def test_ptq_and_qat(trained):
    d, m, _ = trained
    before = {k: v.clone() for k, v in m.state_dict().items()}
    q8 = quantize(m, [(8, 8)] * 4, d.x_train, calib_batches=4)
    assert is_folded(q8) and not is_folded(m)
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())   # input untouched
    acc_f = accuracy(m, d.x_test, d.y_test)
    acc8 = accuracy(q8, d.x_test, d.y_test)
    assert acc8 >= acc_f - 0.02
    assert float_accuracy(q8, d.x_test, d.y_test) == pytest.approx(acc_f, abs=1e-9)   # folding is exact enough
    # a hard mixed scheme: QAT must not make it worse and must help
    low = [(8, 8), (2, 2), (2, 2), (8, 8)]
    q = quantize(m, low, d.x_train)
    a0 = accuracy(q, d.x_test, d.y_test)
    qat(q, d.x_train, d.y_train, epochs=3, seed=0)
    a1 = accuracy(q, d.x_test, d.y_test)
    assert a1 > a0 and a1 > 0.85, (a0, a1)
    # scales are frozen in eval mode
    s = float(q.conv2.act_quant.scale())
    q.eval()
    q(torch.rand(8, 1, 8, 8) * 10)
    assert float(q.conv2.act_quant.scale()) == s
