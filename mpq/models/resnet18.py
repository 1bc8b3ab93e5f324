"""A small ResNet-18: four stages of two basic blocks."""

from __future__ import annotations

from typing import Sequence

from .base import AdaptivePoolStep, FlattenStep, QuantModel
from .blocks import conv, down, image_shape, linear


class ResNet18(QuantModel):
    """conv3x3 + four stages of two basic blocks (3x3, 3x3, identity or 1x1-conv
    shortcut) at ``widths`` (16, 32, 64, 128: a quarter of ResNet-18's), the
    last three downsampling by 2, global average pool, linear.  The CIFAR stem
    (3x3, no max pool): about 0.7M parameters."""

    arch = "resnet18"

    def __init__(self, input_shape: Sequence[int] = (3, 32, 32), num_classes: int = 10,
                 widths: Sequence[int] = (16, 32, 64, 128), blocks: int = 2):
        super().__init__()
        c, h, w = image_shape(self.arch, input_shape)
        self.input_shape = (c, h, w)
        self.num_classes = num_classes
        hw = min(h, w)
        plan = [conv(self, "conv1", c, widths[0])]
        cin = widths[0]
        for k, cout in enumerate(widths, start=1):
            for b in range(1, blocks + 1):
                s, hw = down(hw, 2 if (k > 1 and b == 1) else 1)
                name = f"l{k}b{b}"
                body = [conv(self, f"{name}a", cin, cout, stride=s), conv(self, f"{name}b", cout, cout, act=None)]
                short = [] if (s == 1 and cin == cout) else [conv(self, f"{name}sc", cin, cout, 1, stride=s, act=None)]
                plan.append(self.residual(name, body, short))
                cin = cout
        plan += [AdaptivePoolStep((1, 1)), FlattenStep(), linear(self, "fc", cin, num_classes, classifier=True)]
        self.set_plan(plan)
