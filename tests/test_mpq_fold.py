"""BatchNorm folding is exact in float (up to float32 rounding)."""

import copy

import torch
from torch import nn

from mpq.fold import fold_bn_into, fold_model, is_folded
from mpq.models import get_model

torch.set_num_threads(1)


def _random_bn(bn: nn.modules.batchnorm._BatchNorm, g: torch.Generator) -> None:
    with torch.no_grad():
        n = bn.num_features
        bn.running_mean.copy_(torch.randn(n, generator=g))
        bn.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.1)
        if bn.affine:
            bn.weight.copy_(torch.randn(n, generator=g))
            bn.bias.copy_(torch.randn(n, generator=g))


def test_fold_conv_and_linear_layers():
    g = torch.Generator().manual_seed(0)
    for bias in (True, False):
        for affine in (True, False):
            conv = nn.Conv2d(3, 6, 3, padding=1, groups=3, bias=bias)
            bn = nn.BatchNorm2d(6, affine=affine).eval()
            _random_bn(bn, g)
            x = torch.randn(4, 3, 7, 7, generator=g)
            want = bn(conv(x))
            fold_bn_into(conv, bn)
            assert conv.bias is not None
            torch.testing.assert_close(conv(x), want, rtol=1e-5, atol=1e-5)

            lin = nn.Linear(10, 5, bias=bias)
            bn1 = nn.BatchNorm1d(5, affine=affine).eval()
            _random_bn(bn1, g)
            x = torch.randn(8, 10, generator=g)
            want = bn1(lin(x))
            fold_bn_into(lin, bn1)
            torch.testing.assert_close(lin(x), want, rtol=1e-5, atol=1e-5)


def test_fold_model_is_exact_and_float64_exact():
    g = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    m = get_model("lenet", "digits")
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            _random_bn(mod, g)
    m.eval()
    x = torch.rand(16, 1, 8, 8, generator=g)
    want = m(x)
    m64 = copy.deepcopy(m).double()
    want64 = m64(x.double())
    assert not is_folded(m)
    fold_model(m)
    fold_model(m64)
    assert is_folded(m) and isinstance(m.bn1, nn.Identity) and isinstance(m.bn2, nn.Identity)
    torch.testing.assert_close(m(x), want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(m64(x.double()), want64, rtol=1e-12, atol=1e-12)
    # folding twice changes nothing
    before = {k: v.clone() for k, v in m.state_dict().items()}
    fold_model(m)
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


def test_structure_only_fold_gives_loadable_folded_layout():
    a = get_model("lenet", "digits").eval()
    fold_model(a)
    b = fold_model(get_model("lenet", "digits"), structure_only=True)
    b.load_state_dict(a.state_dict(), strict=True)
    assert is_folded(b)
