"""ResNet-8: the MLPerf Tiny image-classification network (CIFAR-10)."""

from __future__ import annotations

from typing import Sequence

from .base import AdaptivePoolStep, FlattenStep, QuantModel
from .blocks import conv, down, image_shape, linear


class ResNet8(QuantModel):
    """conv3x3(16) + three residual stacks (16, 32, 64 channels; the last two
    downsample by 2 with a 1x1 conv shortcut), global average pool, linear.
    About 78k parameters at 3 input channels, as MLPerf Tiny's."""

    arch = "resnet8"

    def __init__(self, input_shape: Sequence[int] = (3, 32, 32), num_classes: int = 10,
                 widths: Sequence[int] = (16, 32, 64)):
        super().__init__()
        c, hw, _ = image_shape(self.arch, input_shape)
        self.input_shape = (c, hw, input_shape[2])
        self.num_classes = num_classes
        plan = [conv(self, "conv1", c, widths[0])]
        cin = widths[0]
        for k, cout in enumerate(widths):
            s, hw = down(hw, 1 if k == 0 else 2)
            body = [conv(self, f"s{k + 1}a", cin, cout, stride=s), conv(self, f"s{k + 1}b", cout, cout, act=None)]
            short = [] if (s == 1 and cin == cout) else [conv(self, f"s{k + 1}sc", cin, cout, 1, stride=s, act=None)]
            plan.append(self.residual(f"res{k + 1}", body, short))
            cin = cout
        plan += [AdaptivePoolStep((1, 1)), FlattenStep(), linear(self, "fc", cin, num_classes, classifier=True)]
        self.set_plan(plan)
