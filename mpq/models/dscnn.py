"""DS-CNN: the MLPerf Tiny keyword-spotting network (depthwise-separable convs)."""

from __future__ import annotations

from typing import Sequence

from .base import AdaptivePoolStep, FlattenStep, QuantModel
from .blocks import conv, down, image_shape, linear


class DSCNN(QuantModel):
    """conv (64) + four depthwise-separable blocks (3x3 depthwise, 1x1 pointwise,
    each with BN + ReLU), global average pool, linear.  MLPerf's first conv is
    10x4 with stride 2 on 49x10 MFCCs; the kernels here are square (3x3, stride
    2 on inputs of 16+ rows, else 1), about 21k parameters as MLPerf's DS-CNN-S."""

    arch = "dscnn"

    def __init__(self, input_shape: Sequence[int] = (1, 49, 10), num_classes: int = 12, width: int = 64,
                 blocks: int = 4):
        super().__init__()
        c, h, w = image_shape(self.arch, input_shape)
        self.input_shape = (c, h, w)
        self.num_classes = num_classes
        s, _ = down(min(h, w), 2 if min(h, w) >= 16 else 1)
        plan = [conv(self, "conv1", c, width, 3, stride=s)]
        for k in range(blocks):
            plan += [conv(self, f"dw{k + 1}", width, width, 3, groups=width),
                     conv(self, f"pw{k + 1}", width, width, 1)]
        plan += [AdaptivePoolStep((1, 1)), FlattenStep(), linear(self, "fc", width, num_classes, classifier=True)]
        self.set_plan(plan)
