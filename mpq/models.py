"""Quantisable models and their registry.

Every model is a :class:`QuantModel`: an ordered ``plan`` of steps --
``Layer`` (a :class:`~mpq.quant.QConv2d` / :class:`~mpq.quant.QLinear`, an
optional BatchNorm, then ReLU unless it is the last layer), ``Pool`` and
``Flatten`` -- that one generic ``forward`` runs and
:func:`mpq.integer.build_integer_model` mirrors op for op.

Structure that mirrors the integer deploy semantics:

* each quant layer quantises its *input* (``act_quant``), so the output of layer
  i is quantised to layer i+1's ``qa`` after ReLU and after any max pooling --
  which equals requantising before the pooling, as the integer model does,
  because max pooling commutes with a monotone quantiser;
* a ReLU feeding a 1-bit quantiser is dropped (sign activation) while fake quant
  is on;
* the input is centred (``x - input_offset``) before the first quantiser, so a
  1- or 2-bit first layer still sees a signed image;
* the classifier uses one weight scale for all outputs so the integer logits
  (``acc + bias``, out_bits 0) rank the classes as the float logits do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from harness.errors import UserError
from harness.spec import KernelSpec

from .quant import QConv2d, QLinear, enable_fake_quant

Scheme = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Layer:
    name: str
    bn: str | None = None


@dataclass(frozen=True)
class Pool:
    kind: str   # 'max' | 'avg'
    ks: int
    stride: int


@dataclass(frozen=True)
class Flatten:
    pass


class QuantModel(nn.Module):
    """Base class: subclasses set ``input_shape`` (C, H, W), ``plan`` and the
    layer/BN modules as attributes named in the plan."""

    input_shape: tuple[int, int, int]
    plan: list
    input_offset: float = 0.5
    num_classes: int = 10
    arch: str = "?"

    # ---- structure ---------------------------------------------------------
    @property
    def layer_names(self) -> list[str]:
        return [s.name for s in self.plan if isinstance(s, Layer)]

    def quant_layers(self) -> list[tuple[str, nn.Module]]:
        return [(n, getattr(self, n)) for n in self.layer_names]

    def layer_kinds(self) -> list[str]:
        return ["conv2d" if isinstance(m, QConv2d) else "matmul" for _, m in self.quant_layers()]

    # ---- bit-widths ----------------------------------------------------------
    @property
    def scheme(self) -> Scheme:
        return tuple((m.qa, m.qw) for _, m in self.quant_layers())

    def set_scheme(self, scheme: Sequence[Sequence[int]]) -> None:
        layers = self.quant_layers()
        scheme = normalize_scheme(scheme, len(layers))
        for (_, m), (qa, qw) in zip(layers, scheme):
            m.set_bits(qa, qw)

    # ---- forward ---------------------------------------------------------------
    def _relu_after(self, i: int, layers) -> bool:
        if i == len(layers) - 1:
            return False
        nxt = layers[i + 1][1]
        return not (nxt.act_quant.enabled and nxt.qa == 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layers = self.quant_layers()
        x = x - self.input_offset
        i = 0
        for step in self.plan:
            if isinstance(step, Layer):
                x = getattr(self, step.name)(x)
                if step.bn is not None:
                    x = getattr(self, step.bn)(x)
                if self._relu_after(i, layers):
                    x = F.relu(x)
                i += 1
            elif isinstance(step, Pool):
                if step.kind == "max":
                    x = F.max_pool2d(x, step.ks, step.stride)
                else:
                    x = F.avg_pool2d(x, step.ks, step.stride)
            elif isinstance(step, Flatten):
                x = x.flatten(1)
        return x

    # ---- shapes and kernel specs --------------------------------------------------
    def layer_shapes(self, batch: int = 1) -> list[tuple[str, tuple[int, ...]]]:
        """(op, shape) of each quant layer for a batch: matmul (N, M, K),
        conv2d (N, C, H, W, K, KS, S, P, G)."""
        C, H, W = self.input_shape
        flat = None
        out = []
        for step in self.plan:
            if isinstance(step, Layer):
                m = getattr(self, step.name)
                if isinstance(m, QConv2d):
                    ks, s, p = m.kernel_size[0], m.stride[0], m.padding[0]
                    out.append(("conv2d", (batch, C, H, W, m.out_channels, ks, s, p, m.groups)))
                    C, H, W = m.out_channels, (H + 2 * p - ks) // s + 1, (W + 2 * p - ks) // s + 1
                else:
                    k = flat if flat is not None else C * H * W
                    if k != m.in_features:
                        raise ValueError(f"{step.name}: expects {m.in_features} inputs, plan gives {k}")
                    out.append(("matmul", (batch, m.out_features, m.in_features)))
                    flat = m.out_features
            elif isinstance(step, Pool):
                H, W = (H - step.ks) // step.stride + 1, (W - step.ks) // step.stride + 1
            elif isinstance(step, Flatten):
                flat = C * H * W
        return out

    def layer_specs(self, batch: int = 1, scheme: Sequence[Sequence[int]] | None = None) -> list[KernelSpec]:
        """KernelSpecs of the quant layers for ``batch`` and a scheme (default:
        the model's current bit-widths)."""
        shapes = self.layer_shapes(batch)
        scheme = self.scheme if scheme is None else normalize_scheme(scheme, len(shapes))
        return [KernelSpec(op, shape, qa, qw) for (op, shape), (qa, qw) in zip(shapes, scheme)]


def normalize_scheme(scheme: Sequence[Sequence[int]], n_layers: int) -> Scheme:
    """Validate a scheme (one (qa, qw) per layer, bits in {1,2,4,8})."""
    out = tuple((int(a), int(w)) for a, w in scheme)
    if len(out) != n_layers:
        raise UserError(f"the scheme has {len(out)} (qa, qw) pairs but the model has {n_layers} quantisable layers.")
    for a, w in out:
        if a not in (1, 2, 4, 8) or w not in (1, 2, 4, 8):
            raise UserError(f"bit-width pair ({a},{w}) is not supported; use bits from 1, 2, 4, 8.")
    return out


def _conv(cin, cout, qa=8, qw=8):
    return QConv2d(cin, cout, 3, stride=1, padding=1, qa=qa, qw=qw)


class LeNet(QuantModel):
    """LeNet-style CNN: conv3x3(C->16)+BN+ReLU, maxpool2, conv3x3(16->32)+BN+ReLU,
    maxpool2, flatten, linear(32*(H/4)*(W/4) -> 64)+ReLU, linear(64 -> 10)."""

    arch = "lenet"

    def __init__(self, in_ch: int = 1, hw: int = 8, num_classes: int = 10):
        super().__init__()
        self.input_shape = (in_ch, hw, hw)
        self.num_classes = num_classes
        self.conv1 = _conv(in_ch, 16)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = _conv(16, 32)
        self.bn2 = nn.BatchNorm2d(32)
        r = hw // 4
        self.fc1 = QLinear(32 * r * r, 64)
        self.fc2 = QLinear(64, num_classes, per_channel=False)
        self.plan = [Layer("conv1", "bn1"), Pool("max", 2, 2), Layer("conv2", "bn2"), Pool("max", 2, 2),
                     Flatten(), Layer("fc1"), Layer("fc2")]


class MLP(QuantModel):
    """MLP: flatten, linear(C*H*W -> 128)+ReLU, linear(128 -> 64)+ReLU, linear(64 -> 10)."""

    arch = "mlp"

    def __init__(self, in_ch: int = 1, hw: int = 8, num_classes: int = 10):
        super().__init__()
        self.input_shape = (in_ch, hw, hw)
        self.num_classes = num_classes
        self.fc1 = QLinear(in_ch * hw * hw, 128)
        self.fc2 = QLinear(128, 64)
        self.fc3 = QLinear(64, num_classes, per_channel=False)
        self.plan = [Flatten(), Layer("fc1"), Layer("fc2"), Layer("fc3")]


MODELS = {"lenet": LeNet, "mlp": MLP}
DATASET_HW = {"digits": 8, "mnist": 28, "fashionmnist": 28}


def get_model(name: str, dataset: str = "digits") -> QuantModel:
    """A fresh float model (fake quant off, 8x8 bits) for ``dataset``'s input size.
    'lenet' on 28x28 is the LeNet variant with a 32*7*7 -> 64 classifier."""
    if name not in MODELS:
        raise UserError(f"unknown model {name!r}; use one of {', '.join(sorted(MODELS))}.")
    if dataset not in DATASET_HW:
        raise UserError(f"unknown dataset {dataset!r}; use one of {', '.join(DATASET_HW)}.")
    model = MODELS[name](1, DATASET_HW[dataset], 10)
    enable_fake_quant(model, False)
    return model
