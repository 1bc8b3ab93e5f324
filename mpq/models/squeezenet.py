"""A small SqueezeNet (fire modules: squeeze 1x1, expand 1x1 and 3x3, concatenated)."""

from __future__ import annotations

from typing import Sequence

from .base import AdaptivePoolStep, FlattenStep, PoolStep, QuantModel
from .blocks import conv, fire, image_shape, linear

#: (squeeze, expand) per fire module, "M" a 3x3 stride-2 max pool (padding 1)
CONFIG = ((16, 32), (16, 32), "M", (32, 64), (32, 64), "M", (48, 96))


class SqueezeNet(QuantModel):
    """conv3x3 (32) + fire modules (16/32+32, 16/32+32, pool, 32/64+64, 32/64+64,
    pool, 48/96+96), global average pool, linear.  SqueezeNet v1.1's layout
    at a quarter of its width; the classifier is a linear layer after the pool
    (the original pools the logits of a 1x1 conv: integer logits come from the
    last MAC op here)."""

    arch = "squeezenet"

    def __init__(self, input_shape: Sequence[int] = (3, 32, 32), num_classes: int = 10):
        super().__init__()
        c, h, w = image_shape(self.arch, input_shape)
        self.input_shape = (c, h, w)
        self.num_classes = num_classes
        hw = min(h, w)
        plan, cin, k = [conv(self, "conv1", c, 32)], 32, 0
        for v in CONFIG:
            if v == "M":
                if hw >= 2:
                    plan.append(PoolStep("max", 3, 2, 1))
                    hw = (hw - 1) // 2 + 1
                continue
            k += 1
            plan += fire(self, f"fire{k}", cin, *v)
            cin = 2 * v[1]
        plan += [AdaptivePoolStep((1, 1)), FlattenStep(), linear(self, "fc", cin, num_classes, classifier=True)]
        self.set_plan(plan)
