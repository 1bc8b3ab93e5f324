"""The model base class and its plan steps.

Every model is a :class:`QuantModel`: an ordered ``plan`` of steps --
``Layer`` (a :class:`~mpq.quant.QConv2d` / :class:`~mpq.quant.QLinear`, an
optional BatchNorm, then ReLU unless it is the last layer), ``PoolStep`` and
``FlattenStep``.  Each step knows how it runs in torch (``forward``) and how it
lowers to the layer IR (``lower``); :meth:`QuantModel.lower` is the one walk
that the integer reference, codegen, deploy and the latency model consume.

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

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from harness.errors import UserError
from harness.spec import KernelSpec
from kernels import ir
from kernels.reference import BITS

Scheme = tuple[tuple[int, int], ...]


@dataclass
class _Walk:
    """State of one walk over a plan: which quant layer comes next, and (when
    lowering) the graph being built, the scheme and the integer parameters."""

    model: "QuantModel"
    layers: list
    i: int = 0
    graph: ir.Graph | None = None
    scheme: Scheme = ()
    params: list | None = None          # integer_params() per layer (None: structural graph)

    def relu_after(self) -> bool:
        """ReLU after layer i unless it is the last, or feeds a 1-bit quantiser (sign)."""
        if self.i == len(self.layers) - 1:
            return False
        nxt = self.layers[self.i + 1][1]
        return not (nxt.act_quant.enabled and nxt.qa == 1)


class Step(ABC):
    """One entry of a model's plan: how it runs in torch and how it lowers to the IR.
    The two live side by side so that they cannot drift apart."""

    @abstractmethod
    def forward(self, w: _Walk, x: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def lower(self, w: _Walk) -> None: ...


@dataclass(frozen=True)
class Layer(Step):
    """A quant layer (QConv2d / QLinear attribute ``name``), an optional BatchNorm
    (folded before deploy), then ReLU unless it is the last layer."""

    name: str
    bn: str | None = None

    def forward(self, w, x):
        x = getattr(w.model, self.name)(x)
        if self.bn is not None:
            x = getattr(w.model, self.bn)(x)
        if w.relu_after():
            x = F.relu(x)
        w.i += 1
        return x

    def lower(self, w):
        m = getattr(w.model, self.name)
        qa, qw = w.scheme[w.i]
        last = w.i == len(w.layers) - 1
        out_bits = 0 if last else w.scheme[w.i + 1][0]
        rq = weight = None
        if w.params is not None:
            p = w.params[w.i]
            if last:
                real = p["s_in"] * p["s_w"]
            else:
                real = p["s_in"] * p["s_w"] / w.params[w.i + 1]["s_in"]
            rq = ir.Requant.from_scale(p["bias"], real, relu=not last and out_bits != 1, out_bits=out_bits)
            weight = p["weight"]
        w.graph.add(m.ir_op(self.name, qa, qw, out_bits, weight, rq))
        w.i += 1


@dataclass(frozen=True)
class PoolStep(Step):
    """Max / average pooling, square window, no padding."""

    kind: str   # 'max' | 'avg'
    ks: int
    stride: int

    def forward(self, w, x):
        f = F.max_pool2d if self.kind == "max" else F.avg_pool2d
        return f(x, self.ks, self.stride)

    def lower(self, w):
        w.graph.add(ir.Pool(mode=self.kind, ks=self.ks, stride=self.stride))


@dataclass(frozen=True)
class FlattenStep(Step):
    def forward(self, w, x):
        return x.flatten(1)

    def lower(self, w):
        w.graph.add(ir.Flatten())


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
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = _Walk(self, self.quant_layers())
        x = x - self.input_offset
        for step in self.plan:
            x = step.forward(w, x)
        return x

    # ---- the layer IR ------------------------------------------------------------
    def lower(self, scheme: Sequence[Sequence[int]] | None = None, params: list | None = None) -> ir.Graph:
        """The model as an IR graph: structural (shapes and bits only) without
        ``params``, or complete with every layer's ``integer_params()``."""
        layers = self.quant_layers()
        scheme = self.scheme if scheme is None else normalize_scheme(scheme, len(layers))
        g = ir.Graph(ir.TensorType(tuple(self.input_shape), scheme[0][0]))
        w = _Walk(self, layers, graph=g, scheme=scheme, params=params)
        for step in self.plan:
            step.lower(w)
        return g

    def layer_specs(self, batch: int = 1, scheme: Sequence[Sequence[int]] | None = None) -> list[KernelSpec]:
        """KernelSpecs of the quant layers for ``batch`` and a scheme (default:
        the model's current bit-widths)."""
        return self.lower(scheme).specs(batch)


def normalize_scheme(scheme: Sequence[Sequence[int]], n_layers: int) -> Scheme:
    """Validate a scheme (one (qa, qw) per layer, bits in {1,2,4,8})."""
    out = tuple((int(a), int(w)) for a, w in scheme)
    if len(out) != n_layers:
        raise UserError(f"the scheme has {len(out)} (qa, qw) pairs but the model has {n_layers} quantisable layers.")
    for a, w in out:
        if a not in BITS or w not in BITS:
            raise UserError(f"bit-width pair ({a},{w}) is not supported; use bits from 1, 2, 4, 8.")
    return out
