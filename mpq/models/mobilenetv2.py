"""MobileNetV2 with a width multiplier (0.35 by default): inverted residuals, ReLU6."""

from __future__ import annotations

from typing import Sequence

from .base import AdaptivePoolStep, FlattenStep, QuantModel
from .blocks import conv, down, image_shape, linear

#: (expansion t, channels c, repeats n, first stride s) of the paper's Table 2
CONFIG = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def divisible(v: float, d: int = 8) -> int:
    """Channels rounded to a multiple of ``d``, never more than 10% below ``v`` (the paper's rule)."""
    out = max(d, int(v + d / 2) // d * d)
    return out + d if out < 0.9 * v else out


class MobileNetV2(QuantModel):
    """conv3x3 (32*width) + 17 inverted residual blocks (1x1 expand, 3x3 depthwise,
    1x1 linear projection; an identity add where shapes allow) + 1x1 conv
    (1280*width) + global average pool + linear.  Small inputs skip the first
    stride (below 64 pixels) and any stride once the map is 1x1.  The last
    conv is scaled with the width too (the paper keeps 1280), so the 0.35 model
    stays under 0.4M parameters."""

    arch = "mobilenetv2"

    def __init__(self, input_shape: Sequence[int] = (3, 32, 32), num_classes: int = 10, width: float = 0.35):
        super().__init__()
        c, h, w = image_shape(self.arch, input_shape)
        self.input_shape = (c, h, w)
        self.num_classes = num_classes
        hw = min(h, w)
        cin = divisible(32 * width)
        s, hw = down(hw, 2 if hw >= 64 else 1)
        plan = [conv(self, "conv1", c, cin, 3, stride=s, act="relu6")]
        k = 0
        for t, ch, n, first in CONFIG:
            cout = divisible(ch * width)
            for r in range(n):
                k += 1
                s, hw = down(hw, first if r == 0 else 1)
                mid = cin * t
                body = []
                if t != 1:
                    body.append(conv(self, f"b{k}_exp", cin, mid, 1, act="relu6"))
                body += [conv(self, f"b{k}_dw", mid, mid, 3, stride=s, groups=mid, act="relu6"),
                         conv(self, f"b{k}_proj", mid, cout, 1, act=None)]
                if s == 1 and cin == cout:
                    plan.append(self.residual(f"b{k}_add", body, act=None))
                else:
                    plan += body
                cin = cout
        last = divisible(1280 * width)
        plan += [conv(self, "conv_last", cin, last, 1, act="relu6"), AdaptivePoolStep((1, 1)), FlattenStep(),
                 linear(self, "fc", last, num_classes, classifier=True)]
        self.set_plan(plan)
