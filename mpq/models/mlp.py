"""A three-layer MLP (MiCo's smallest model)."""

from __future__ import annotations

from ..quant import QLinear
from .base import FlattenStep, Layer, QuantModel


class MLP(QuantModel):
    """MLP: flatten, linear(C*H*W -> 128)+ReLU, linear(128 -> 64)+ReLU, linear(64 -> 10)."""

    arch = "mlp"

    def __init__(self, in_ch: int = 1, hw: int = 8, num_classes: int = 10):
        super().__init__()
        self.input_shape = (in_ch, hw, hw)
        self.num_classes = num_classes
        self.fc1 = QLinear(in_ch * hw * hw, 128)
        self.fc2 = QLinear(128, 64)
        self.fc3 = QLinear(64, num_classes, per_channel=False)
        self.plan = [FlattenStep(), Layer("fc1"), Layer("fc2"), Layer("fc3")]
