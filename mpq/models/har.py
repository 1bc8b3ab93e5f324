"""Human-activity recognition networks (UCI-HAR: 9 inertial channels x 128 steps, 6 classes)."""

from __future__ import annotations

from math import prod
from typing import Sequence

from .base import AdaptivePoolStep, FlattenStep, PoolStep, QuantModel
from .blocks import conv, linear, sequence_shape


class HARCNN1d(QuantModel):
    """conv1d (32, 5 taps) + conv1d (64, 5 taps) + max pool 2 + conv1d (64, 3 taps),
    each with BN + ReLU, global average pool, linear."""

    arch = "har_cnn1d"

    def __init__(self, input_shape: Sequence[int] = (9, 128), num_classes: int = 6):
        super().__init__()
        c, length = sequence_shape(input_shape)
        self.input_shape = (c, length)
        self.num_classes = num_classes
        plan = [conv(self, "conv1", c, 32, 5, one_d=True), conv(self, "conv2", 32, 64, 5, one_d=True)]
        if length >= 2:
            plan.append(PoolStep("max", 2, 2))
        plan += [conv(self, "conv3", 64, 64, 3, one_d=True), AdaptivePoolStep((1,)), FlattenStep(),
                 linear(self, "fc", 64, num_classes, classifier=True)]
        self.set_plan(plan)


class HARMLP(QuantModel):
    """MLP on the flattened window: linear (256) + linear (128) + linear (classes)."""

    arch = "har_mlp"

    def __init__(self, input_shape: Sequence[int] = (9, 128), num_classes: int = 6, hidden: Sequence[int] = (256, 128)):
        super().__init__()
        self.input_shape = tuple(int(v) for v in input_shape)
        self.num_classes = num_classes
        dims = [prod(self.input_shape), *hidden]
        plan = [FlattenStep()]
        for k in range(len(hidden)):
            plan.append(linear(self, f"fc{k + 1}", dims[k], dims[k + 1]))
        plan.append(linear(self, f"fc{len(hidden) + 1}", dims[-1], num_classes, classifier=True))
        self.set_plan(plan)
