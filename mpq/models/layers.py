"""Quant layers the zoo adds to mpq.quant's QConv2d / QLinear: a 1-D convolution.

``QConv1d`` reuses the fake-quant machinery of the other quant layers (input
activation quantiser, per-channel weight quantiser, exact integer accumulator
in the forward value) and lowers to the IR as ``Unfold1d`` + a 1x1
``Conv2d`` + a view back to (K, L'): exact (the unfold lists every tap of a
window as its own channel), and it runs on the measured conv2d kernel with its
KernelSpec, so search, sweeps and the accelerator treat it as any conv.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from kernels import ir

from ..quant import ActFakeQuant, WeightFakeQuant, _QuantLayerMixin


class QConv1d(_QuantLayerMixin, nn.Conv1d):
    """``nn.Conv1d`` with input-activation and per-channel weight fake quant."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, groups=1, bias=True,
                 qa: int = 8, qw: int = 8, per_channel: bool = True):
        nn.Conv1d.__init__(self, in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                           groups=groups, bias=bias)
        if self.dilation != (1,) or not isinstance(self.padding, tuple):
            raise ValueError("QConv1d supports integer padding and no dilation")
        self.act_quant = ActFakeQuant(qa)
        self.weight_quant = WeightFakeQuant(qw, per_channel)
        self.exact_acc = True

    def _op(self, x, w, b):
        return F.conv1d(x, w, b, self.stride, self.padding, self.dilation, self.groups)

    def ir_op(self, name: str, qa: int, qw: int, out_bits: int, weight=None, rq=None,
              out_signed: bool = True) -> list[ir.Op]:
        """Unfold1d -> 1x1 Conv2d (the MAC op, named ``name``) -> (K, L') view.

        At qa = 1 the unfolded padding holds the VALUE 0, which bit-packed 1-bit
        codes cannot carry: that conv runs on the direct kernel (int8 values)."""
        k = self.out_channels
        w4 = None if weight is None else weight.reshape(k, -1, 1, 1)
        kernel = "direct" if qa == 1 and self.padding[0] > 0 else "auto"
        return [ir.Unfold1d(name=f"{name}.unfold", ks=self.kernel_size[0], stride=self.stride[0], pad=self.padding[0]),
                ir.Conv2d(name=name, qa=qa, qw=qw, out_bits=out_bits, weight=w4, rq=rq, out_channels=k, ks=1,
                          stride=1, pad=0, groups=self.groups, kernel=kernel, out_signed=out_signed),
                ir.Reshape(name=f"{name}.view", shape=(k, -1))]
