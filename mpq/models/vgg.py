"""A small VGG-style network."""

from __future__ import annotations

from typing import Sequence

from .base import FlattenStep, PoolStep, QuantModel
from .blocks import conv, image_shape, linear

#: channels of the 3x3 convs, "M" a 2x2 max pool
CONFIG = (32, 32, "M", 64, 64, "M", 128, 128, "M")


class VGG(QuantModel):
    """VGG-style: 3x3 convs (BN + ReLU) in pairs of 32, 64, 128 channels, each pair
    followed by a 2x2 max pool (skipped once the map is 1x1), flatten, linear
    (128) + ReLU, linear."""

    arch = "vgg"

    def __init__(self, input_shape: Sequence[int] = (3, 32, 32), num_classes: int = 10,
                 config: Sequence = CONFIG):
        super().__init__()
        c, h, w = image_shape(self.arch, input_shape)
        self.input_shape = (c, h, w)
        self.num_classes = num_classes
        plan, cin, k = [], c, 0
        for v in config:
            if v == "M":
                if min(h, w) >= 2:
                    plan.append(PoolStep("max", 2, 2))
                    h, w = h // 2, w // 2
                continue
            k += 1
            plan.append(conv(self, f"conv{k}", cin, v))
            cin = v
        plan += [FlattenStep(), linear(self, "fc1", cin * h * w, 128),
                 linear(self, "fc2", 128, num_classes, classifier=True)]
        self.set_plan(plan)
