"""BatchNorm folding into the preceding conv / linear layer (exact in float).

For BN in eval mode ``y = gamma * (z - mean) / sqrt(var + eps) + beta`` with
``z = W x + b``, folding gives ``W' = W * k`` (per output channel) and
``b' = (b - mean) * k + beta`` with ``k = gamma / sqrt(var + eps)``.
"""

from __future__ import annotations

import torch
from torch import nn

from .models import QuantModel


@torch.no_grad()
def fold_bn_into(layer: nn.Module, bn: nn.modules.batchnorm._BatchNorm) -> None:
    """Fold ``bn``'s running statistics and affine parameters into ``layer``
    (a Conv2d or Linear, output channel first) in place; adds a bias if missing."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("cannot fold a BatchNorm without running statistics")
    w = layer.weight
    dt = torch.float64
    k = (bn.weight.to(dt) if bn.affine else torch.ones_like(bn.running_var, dtype=dt)) \
        / torch.sqrt(bn.running_var.to(dt) + bn.eps)
    beta = bn.bias.to(dt) if bn.affine else torch.zeros_like(k)
    b = layer.bias.to(dt) if layer.bias is not None else torch.zeros_like(k)
    new_w = w.to(dt) * k.view((-1,) + (1,) * (w.dim() - 1))
    new_b = (b - bn.running_mean.to(dt)) * k + beta
    layer.weight.copy_(new_w.to(w.dtype))
    if layer.bias is None:
        layer.bias = nn.Parameter(new_b.to(w.dtype))
    else:
        layer.bias.copy_(new_b.to(w.dtype))


def fold_model(model: QuantModel, structure_only: bool = False) -> QuantModel:
    """Fold every BN of a :class:`QuantModel` into its layer (in place) and
    replace it by ``nn.Identity``.  ``structure_only`` just drops the BNs and gives
    bias-free layers the (zero) bias folding would add (used before loading a state
    dict saved from a folded model).  Returns ``model``."""
    for step in model.layer_steps():
        if step.bn is not None:
            bn = getattr(model, step.bn)
            if isinstance(bn, nn.Identity):
                continue
            layer = getattr(model, step.name)
            if not structure_only:
                fold_bn_into(layer, bn)
            elif layer.bias is None:
                layer.bias = nn.Parameter(torch.zeros(layer.weight.shape[0], dtype=layer.weight.dtype))
            setattr(model, step.bn, nn.Identity())
    return model


def is_folded(model: QuantModel) -> bool:
    return all(not isinstance(getattr(model, s.bn), nn.modules.batchnorm._BatchNorm)
               for s in model.layer_steps() if s.bn is not None)
