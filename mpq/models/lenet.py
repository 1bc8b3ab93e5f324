"""LeNet-style CNN, the default model of the demo."""

from __future__ import annotations

from torch import nn

from ..quant import QConv2d, QLinear
from .base import FlattenStep, Layer, PoolStep, QuantModel


def _conv(cin, cout, qa=8, qw=8):
    return QConv2d(cin, cout, 3, stride=1, padding=1, qa=qa, qw=qw)


class LeNet(QuantModel):
    """LeNet-style CNN: conv3x3(C->16)+BN+ReLU, maxpool2, conv3x3(16->32)+BN+ReLU,
    maxpool2, flatten, linear(32*(H/4)*(W/4) -> 64)+ReLU, linear(64 -> 10)."""

    arch = "lenet"

    def __init__(self, in_ch: int = 1, hw: int = 8, num_classes: int = 10):
        super().__init__()
        self.input_shape = (in_ch, hw, hw)
        self.num_classes = num_classes
        self.conv1 = _conv(in_ch, 16)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = _conv(16, 32)
        self.bn2 = nn.BatchNorm2d(32)
        r = hw // 4
        self.fc1 = QLinear(32 * r * r, 64)
        self.fc2 = QLinear(64, num_classes, per_channel=False)
        self.plan = [Layer("conv1", "bn1"), PoolStep("max", 2, 2), Layer("conv2", "bn2"), PoolStep("max", 2, 2),
                     FlattenStep(), Layer("fc1"), Layer("fc2")]
