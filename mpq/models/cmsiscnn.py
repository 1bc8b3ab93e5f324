"""The CMSIS-NN CIFAR-10 example network."""

from __future__ import annotations

from typing import Sequence

from .base import FlattenStep, PoolStep, QuantModel
from .blocks import conv, image_shape, linear


class CMSISCNN(QuantModel):
    """conv5x5 (32) + max pool, conv5x5 (16) + max pool, conv5x5 (32) + max pool
    (each conv with ReLU, no BN, as the CMSIS-NN example), flatten, linear.
    Pools of 2 (stride 2) stop once the map is 1 pixel wide."""

    arch = "cmsiscnn"

    def __init__(self, input_shape: Sequence[int] = (3, 32, 32), num_classes: int = 10):
        super().__init__()
        c, h, w = image_shape(self.arch, input_shape)
        self.input_shape = (c, h, w)
        self.num_classes = num_classes
        plan, cin = [], c
        for k, cout in enumerate((32, 16, 32), start=1):
            plan.append(conv(self, f"conv{k}", cin, cout, 5, bn=False))
            if min(h, w) >= 2:
                plan.append(PoolStep("max", 2, 2))
                h, w = h // 2, w // 2
            cin = cout
        plan += [FlattenStep(), linear(self, "fc", cin * h * w, num_classes, classifier=True)]
        self.set_plan(plan)
