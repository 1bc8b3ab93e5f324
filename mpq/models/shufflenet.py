"""ShuffleNet (v1): grouped 1x1 convs, channel shuffle, depthwise 3x3."""

from __future__ import annotations

from typing import Sequence

from .base import AdaptivePoolStep, Branches, FlattenStep, PoolStep, QuantModel, ShuffleStep
from .blocks import conv, down, image_shape, linear


class ShuffleNet(QuantModel):
    """conv3x3 (24) + three stages of ShuffleNet units with ``groups`` groups
    (60, 120, 240 channels at g=3: a quarter of the paper's width; ``units``
    per stage).  A unit: grouped 1x1 (to a quarter of the output) + ReLU,
    channel shuffle, depthwise 3x3 (BN, no ReLU), grouped 1x1.  The first unit
    of a stage downsamples: its input, average-pooled 3x3/2 (padding 1), is
    concatenated with the branch (whose last conv carries the ReLU: the pooled
    path is already non-negative, so that equals a ReLU after the concat);
    the others add the identity, then ReLU."""

    arch = "shufflenet"

    def __init__(self, input_shape: Sequence[int] = (3, 32, 32), num_classes: int = 10, groups: int = 3,
                 widths: Sequence[int] = (60, 120, 240), units: Sequence[int] = (2, 2, 2)):
        super().__init__()
        c, h, w = image_shape(self.arch, input_shape)
        self.input_shape = (c, h, w)
        self.num_classes = num_classes
        hw = min(h, w)
        plan, cin, g = [conv(self, "conv1", c, 24)], 24, groups
        for k, (cout, n) in enumerate(zip(widths, units), start=1):
            for u in range(1, n + 1):
                name = f"st{k}u{u}"
                mid = cout // 4
                first = u == 1
                s, hw = down(hw, 2) if first else (1, hw)
                out_branch = cout - cin if first else cout
                body = [conv(self, f"{name}_g1", cin, mid, 1, groups=1 if (k == 1 and first) else g),
                        ShuffleStep(g),
                        conv(self, f"{name}_dw", mid, mid, 3, stride=s, groups=mid, act=None),
                        conv(self, f"{name}_g2", mid, out_branch, 1, groups=g, act="relu" if first else None)]
                if first:
                    plan.append(Branches(f"{name}_cat", ((PoolStep("avg", 3, s, 1),), tuple(body))))
                else:
                    plan.append(self.residual(f"{name}_add", body))
                cin = cout
        plan += [AdaptivePoolStep((1, 1)), FlattenStep(), linear(self, "fc", cin, num_classes, classifier=True)]
        self.set_plan(plan)
