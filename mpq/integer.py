"""The integer model that deploy runs: a complete layer-IR graph plus the input quantiser.

:func:`build_integer_model` lowers a BN-folded, calibrated (or QAT'd) quant
model to the IR with every layer's integer weights, int32 bias on the
accumulator grid and per-channel fixed-point requantiser (``kernels.ir.Requant``,
the one requantisation: ``kernels.reference.requant`` == ``mico_requant``):

    t = (int64)(acc + bias[c]) * mult[c]
    y = (t + 2^(shift[c]-1)) >> shift[c]         (arithmetic shift)
    relu -> max(y, 0); clamp to out_bits;  out_bits == 1 -> acc + bias >= 0 ? +1 : -1

Each quant layer's output is requantised to the NEXT layer's input bits right
after the ReLU and before any pooling; the last layer (``out_bits == 0``)
returns ``acc + bias`` as int32 logits.  ``mult / 2^shift`` approximates the
real multiplier ``s_in * s_w[c] / s_out`` (for the last layer: the dequant
scale ``s_in * s_w[c]``, informational).

What happens between float images and codes (``quantize_input``) is the only
part of the integer model outside the graph: it is the first fake-quantiser's
float arithmetic, so it stays in torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from harness.spec import KernelSpec
from kernels import ir
from kernels.ir.types import MULT_LIMIT, MULT_MIN, quantize_multiplier, quantize_multipliers  # noqa: F401

from .fold import is_folded
from .models import QuantModel
from .quant import quantize_codes


@dataclass
class IntegerModel:
    """What deploy runs.  ``quantize_input`` maps float images to integer VALUES
    (the first layer's qa), ``forward_int`` maps those to int32 logits (N, classes)."""

    graph: ir.Graph
    input_scale: float = 1.0
    input_offset: float = 0.0     # subtracted from the float input before quantising
    num_classes: int = 10

    # ---- structure --------------------------------------------------------------
    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.graph.input.shape

    @property
    def input_bits(self) -> int:
        return self.graph.input.bits

    @property
    def ops(self) -> list[ir.Op]:
        return [n.op for n in self.graph.nodes]

    @property
    def layers(self) -> list[ir.Op]:
        """The MAC ops (conv / linear) in order."""
        return [n.op for n in self.graph.mac_nodes]

    @property
    def scheme(self) -> tuple[tuple[int, int], ...]:
        return self.graph.scheme

    def specs(self, batch: int = 1) -> list[KernelSpec]:
        """KernelSpec of every kernel op, for the latency model."""
        return self.graph.specs(batch)

    def bops(self, batch: int = 1) -> int:
        return int(sum(s.bops for s in self.specs(batch)))

    @property
    def size_bits(self) -> int:
        """Weight storage in bits (weights x qw; biases, multipliers and shifts excluded)."""
        return self.graph.weight_bits

    @property
    def param_bits(self) -> int:
        """Everything the device stores per layer: weights, int32 bias, int32 mult, uint8 shift."""
        return self.graph.param_bits

    # ---- running ------------------------------------------------------------------
    def quantize_input(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """float (N, C, H, W) -> int8 VALUES with the first layer's qa and scale
        (the same float32 arithmetic as the fake-quant model's first quantiser)."""
        x = torch.as_tensor(x, dtype=torch.float32)
        if x.dim() == len(self.input_shape):
            x = x.unsqueeze(0)
        v = quantize_codes(x - self.input_offset, torch.tensor(self.input_scale, dtype=torch.float32),
                           self.input_bits)
        return v.to(torch.int8)

    @torch.no_grad()
    def forward_int(self, x_vals: torch.Tensor | np.ndarray, trace: bool = False):
        """Integer inference: int VALUES (N, *input_shape) -> int32 logits (N, classes).
        ``trace=True`` also returns every op's output."""
        x = x_vals.numpy() if torch.is_tensor(x_vals) else np.asarray(x_vals)
        try:
            y, outs = self.graph.run(x, trace=True)
        except ir.IRError as e:
            if "overflow" in str(e):
                raise OverflowError(str(e)) from None
            raise
        y = torch.from_numpy(y.astype(np.int32))
        return (y, [torch.from_numpy(o) for o in outs]) if trace else y

    def predict(self, x_float: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Class indices from float images (quantize_input + forward_int + argmax)."""
        return self.forward_int(self.quantize_input(x_float)).argmax(1)


# ---- construction ----------------------------------------------------------------

def build_integer_model(model: QuantModel) -> IntegerModel:
    """IntegerModel of a BN-folded quant model with fake quant on and calibrated
    activation scales (eval mode; nothing in ``model`` changes)."""
    if not is_folded(model):
        raise ValueError("fold BatchNorm (mpq.fold.fold_model) before building the integer model")
    layers = model.quant_layers()
    if not all(m.quant_enabled for _, m in layers):
        raise ValueError("fake quant must be enabled (and calibrated) to build the integer model")
    model.sync_signedness()              # the input scales depend on each code's signedness
    params = [m.integer_params() for _, m in layers]
    graph = model.lower(params=params)
    return IntegerModel(graph, input_scale=params[0]["s_in"], input_offset=float(model.input_offset),
                        num_classes=int(getattr(model, "num_classes", 10)))
