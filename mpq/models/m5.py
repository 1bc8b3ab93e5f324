"""M5: the 1-D convolutional keyword-spotting network on raw audio (Dai et al., 2017)."""

from __future__ import annotations

from typing import Sequence

from .base import AdaptivePoolStep, FlattenStep, PoolStep, QuantModel
from .blocks import conv, linear, sequence_shape


class M5(QuantModel):
    """conv1d (32, long receptive field, strided) + three conv1d (32, 64, 64; 3 taps),
    each with BN + ReLU and a max pool of 4, global average pool, linear (the
    torchaudio tutorial's M5 with ``n_channel=32``).  On raw 16 kHz audio the
    first conv has 80 taps and stride 16; shorter sequences scale both down
    (L/8 taps, stride L/1000) and skip the pools once fewer than 4 steps remain."""

    arch = "m5"

    def __init__(self, input_shape: Sequence[int] = (1, 16000), num_classes: int = 35, width: int = 32):
        super().__init__()
        c, length = sequence_shape(input_shape)
        self.input_shape = (c, length)
        self.num_classes = num_classes
        ks = max(3, min(80, length // 8))
        stride = max(1, min(16, length // 1000))
        length = (length - ks) // stride + 1
        plan = [conv(self, "conv1", c, width, ks, stride=stride, pad=0, one_d=True)]
        chans = (width, width, 2 * width, 2 * width)
        for k, cout in enumerate(chans[1:], start=2):
            if length >= 4:
                plan.append(PoolStep("max", 4, 4))
                length //= 4
            plan.append(conv(self, f"conv{k}", chans[k - 2], cout, 3, one_d=True))
        plan += [AdaptivePoolStep((1,)), FlattenStep(), linear(self, "fc", chans[-1], num_classes, classifier=True)]
        self.set_plan(plan)
