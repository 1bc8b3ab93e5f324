"""Building blocks the zoo's networks share: a quant conv (+ BatchNorm) as a plan
step, the inverted residual and the fire module, and the input-shape helpers."""

from __future__ import annotations

from typing import Sequence

from torch import nn

from harness.errors import UserError

from ..quant import QConv2d, QLinear
from .base import Branches, Layer, QuantModel
from .layers import QConv1d


def conv(model: QuantModel, name: str, cin: int, cout: int, ks: int = 3, stride: int = 1, groups: int = 1,
         act: str | None = "relu", bn: bool = True, pad: int | None = None, one_d: bool = False) -> Layer:
    """A quant conv (``same`` padding by default) and its BatchNorm as attributes of
    ``model``; returns the plan step."""
    pad = ks // 2 if pad is None else pad
    cls, bn_cls = (QConv1d, nn.BatchNorm1d) if one_d else (QConv2d, nn.BatchNorm2d)
    setattr(model, name, cls(cin, cout, ks, stride=stride, padding=pad, groups=groups, bias=not bn))
    if bn:
        setattr(model, f"{name}_bn", bn_cls(cout))
    return Layer(name, f"{name}_bn" if bn else None, act)


def linear(model: QuantModel, name: str, fin: int, fout: int, classifier: bool = False) -> Layer:
    """A quant linear layer; the classifier keeps one weight scale (integer logits rank as float ones)."""
    setattr(model, name, QLinear(fin, fout, per_channel=not classifier))
    return Layer(name)


def fire(model: QuantModel, name: str, cin: int, squeeze: int, expand: int) -> list:
    """SqueezeNet's fire module: a 1x1 squeeze, then 1x1 and 3x3 expands concatenated."""
    return [conv(model, f"{name}_s", cin, squeeze, 1),
            Branches(f"{name}_cat", ((conv(model, f"{name}_e1", squeeze, expand, 1),),
                                     (conv(model, f"{name}_e3", squeeze, expand, 3),)))]


def image_shape(arch: str, input_shape: Sequence[int]) -> tuple[int, int, int]:
    """(C, H, W) of an image model's input; one clear sentence for anything else."""
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise UserError(f"model {arch} takes (C, H, W) images, not inputs of shape {shape}; "
                        f"use a 1-D model (m5, har_cnn1d, har_mlp) for sequences.")
    return shape


def sequence_shape(input_shape: Sequence[int]) -> tuple[int, int]:
    """(C, L) of a 1-D model's input: images are read row by row as one sequence per channel."""
    shape = tuple(int(v) for v in input_shape)
    if len(shape) == 3:
        return shape[0], shape[1] * shape[2]
    if len(shape) != 2 or min(shape) < 1:
        raise UserError(f"a 1-D model takes (C, L) sequences or (C, H, W) images, not {shape}.")
    return shape


def down(hw: int, stride: int) -> tuple[int, int]:
    """The stride used on a ``hw`` feature map (none once it is 1x1: small inputs such
    as the 8x8 digits keep every layer) and the size after a same-padded conv."""
    s = stride if hw >= 2 else 1
    return s, (hw - 1) // s + 1
