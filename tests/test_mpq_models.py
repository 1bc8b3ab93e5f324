"""Model registry, layer order, KernelSpecs per layer, scheme handling."""

import pytest
import torch

from harness.errors import UserError
from harness.spec import KernelSpec
from mpq.models import _Walk, get_model, normalize_scheme
from mpq.quant import enable_fake_quant

torch.set_num_threads(1)


def test_lenet_digits_layers_and_specs():
    m = get_model("lenet", "digits")
    assert m.layer_names == ["conv1", "conv2", "fc1", "fc2"]
    assert [s.op for s in m.layer_specs()] == ["conv2d", "conv2d", "matmul", "matmul"]
    specs = m.layer_specs(batch=4, scheme=[(8, 8), (4, 2), (2, 1), (1, 8)])
    assert specs == [
        KernelSpec("conv2d", (4, 1, 8, 8, 16, 3, 1, 1, 1), 8, 8),
        KernelSpec("conv2d", (4, 16, 4, 4, 32, 3, 1, 1, 1), 4, 2),
        KernelSpec("matmul", (4, 64, 128), 2, 1),
        KernelSpec("matmul", (4, 10, 64), 1, 8),
    ]
    assert m(torch.rand(3, 1, 8, 8)).shape == (3, 10)
    # the default specs use the model's current bits
    assert [(s.qa, s.qw) for s in m.layer_specs()] == [(8, 8)] * 4


def test_lenet_28x28_and_mlp_specs():
    m = get_model("lenet", "mnist")
    assert m.input_shape == (1, 28, 28)
    shapes = [s.shape for s in m.layer_specs(1)]
    assert shapes == [(1, 1, 28, 28, 16, 3, 1, 1, 1), (1, 16, 14, 14, 32, 3, 1, 1, 1), (1, 64, 32 * 7 * 7), (1, 10, 64)]
    assert m(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    mlp = get_model("mlp", "digits")
    assert mlp.layer_names == ["fc1", "fc2", "fc3"]
    assert [s.shape for s in mlp.layer_specs(2)] == [(2, 128, 64), (2, 64, 128), (2, 10, 64)]
    assert mlp(torch.rand(5, 1, 8, 8)).shape == (5, 10)
    assert [s.shape for s in get_model("mlp", "fashionmnist").layer_specs(1)][0] == (1, 128, 784)


def test_registry_errors():
    with pytest.raises(UserError, match="unknown model"):
        get_model("resnet", "digits")
    with pytest.raises(UserError, match="unknown dataset"):
        get_model("lenet", "cifar")


def test_scheme_validation_and_set():
    m = get_model("mlp", "digits")
    m.set_scheme([(2, 4), (8, 1), (1, 2)])
    assert m.scheme == ((2, 4), (8, 1), (1, 2))
    assert (m.fc2.act_quant.bits, m.fc2.weight_quant.bits) == (8, 1)
    with pytest.raises(UserError, match="3 quantisable layers"):
        m.set_scheme([(8, 8)])
    with pytest.raises(UserError, match="not supported"):
        normalize_scheme([(3, 8), (8, 8), (8, 8)], 3)


def test_relu_feeding_a_1bit_quantizer_is_dropped():
    m = get_model("mlp", "digits").eval()
    layers = m.quant_layers()

    def relu_after(i):
        return _Walk(m, layers, i=i).relu_after()

    assert relu_after(0) and relu_after(1) and not relu_after(2)
    m.set_scheme([(8, 8), (1, 8), (8, 8)])
    assert relu_after(0)          # float model: every ReLU stays
    enable_fake_quant(m, True)
    assert not relu_after(0) and relu_after(1)
    # with the ReLU the 1-bit codes would all be +1; without it both signs occur
    seen = []
    m.fc2.act_quant.register_forward_hook(lambda mod, i, o: seen.append(o))
    m(torch.rand(64, 1, 8, 8))
    assert (seen[0] > 0).any() and (seen[0] < 0).any()
