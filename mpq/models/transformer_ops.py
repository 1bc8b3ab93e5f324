"""Fake-quant twins of the transformer IR ops (kernels/ir/attention.py, norm.py).

Each function takes float tensors that sit on their quantisers' codes and returns the
op's output with the float op's gradient and, while fake quant is on, the IR op's
integer result (``run`` on the codes, dequantised) as its value -- so a fake-quant model
built from them rounds exactly the integers its lowered IR graph computes.

``out_q`` is the quantiser whose code the op writes (its reader's input quantiser).
Before its scale is used, ``out_q`` observes the float result (in training mode, while
its observer is on) and ``suspend(out_q)`` is called: the caller switches that observer
off for the rest of the forward pass (``_Walk.suspend_observer`` in a QuantModel), since
observing the integer result would freeze a clipped scale.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kernels import ir

from ..quant import ActFakeQuant

Suspend = Callable[[ActFakeQuant], None] | None


def scale_of(q: ActFakeQuant) -> float:
    """A quantiser's scale as a number (learned LSQ scales included, no gradient)."""
    return float(q.scale().detach())


def codes(x: torch.Tensor, q: ActFakeQuant) -> np.ndarray:
    """Integer codes of a tensor already on ``q``'s grid."""
    return torch.round(x.detach() / q.scale().detach()).to(torch.int64).numpy()


def observe_first(q: ActFakeQuant, f: torch.Tensor, suspend: Suspend) -> None:
    if q.training and bool(q.observer_enabled[0]) and q.lsq_scale is None:
        q.observe(f)
        if suspend is not None:
            suspend(q)


def straight(f: torch.Tensor, y_codes: np.ndarray, scale: float) -> torch.Tensor:
    """Value of the integer result, gradient of the float one."""
    y = torch.from_numpy(np.asarray(y_codes, dtype=np.float32)).to(f.dtype) * float(scale)
    return f + (y.reshape(f.shape) - f).detach()


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    N, T, D = x.shape
    return x.reshape(N, T, heads, D // heads).transpose(1, 2)


def fq_layernorm(x: torch.Tensor, x_q: ActFakeQuant, ln: nn.LayerNorm, out_q: ActFakeQuant,
                 suspend: Suspend = None) -> torch.Tensor:
    """LayerNorm over the last axis of (N, T, D) (``ir.LayerNorm``)."""
    f = F.layer_norm(x, (x.shape[-1],), ln.weight, ln.bias, ln.eps)
    if not (x_q.enabled and out_q.enabled):
        return f
    observe_first(out_q, f, suspend)
    op = ir.LayerNorm.from_params("ln", ln.weight.detach().numpy(), ln.bias.detach().numpy(), scale_of(out_q),
                                  out_q.bits)
    return straight(f, op.run([codes(x, x_q)]), scale_of(out_q))


def fq_attn_qk(q: torch.Tensor, q_q: ActFakeQuant, k: torch.Tensor, k_q: ActFakeQuant, heads: int,
               out_q: ActFakeQuant, suspend: Suspend = None) -> torch.Tensor:
    """Scores ``q_h k_h^T / sqrt(dh)`` per head, (N, T, D) x (N, S, D) -> (N, H, T, S), written
    on ``out_q``'s code (8 bits in the zoo; ``ir.AttnMatMul`` mode qk)."""
    dh = q.shape[-1] // heads
    f = _heads(q, heads) @ _heads(k, heads).transpose(-1, -2) / math.sqrt(dh)
    if not (q_q.enabled and k_q.enabled and out_q.enabled):
        return f
    observe_first(out_q, f, suspend)
    op = ir.AttnMatMul.from_scales("qk", "qk", heads, scale_of(q_q), scale_of(k_q) / math.sqrt(dh), scale_of(out_q),
                                   out_q.bits)
    return straight(f, op.run([codes(q, q_q), codes(k, k_q)]), scale_of(out_q))


def fq_softmax(s: torch.Tensor, s_q: ActFakeQuant) -> torch.Tensor:
    """Softmax along the last axis of scores on ``s_q``'s code; probabilities on the code 1/127."""
    f = torch.softmax(s, dim=-1)
    if not s_q.enabled:
        return f
    return straight(f, ir.Softmax.from_scale("softmax", scale_of(s_q)).run([codes(s, s_q)]), 1 / ir.attention.SOFTMAX_ONE)


def fq_attn_av(p: torch.Tensor, v: torch.Tensor, v_q: ActFakeQuant, heads: int, out_q: ActFakeQuant,
               suspend: Suspend = None) -> torch.Tensor:
    """``p_h v_h`` per head, (N, H, T, S) probabilities (code 1/127) x (N, S, D) -> (N, T, D) on
    ``out_q``'s code (``ir.AttnMatMul`` mode av)."""
    N, H, T, S = p.shape
    f = (p @ _heads(v, heads)).transpose(1, 2).reshape(N, T, v.shape[-1])
    if not (v_q.enabled and out_q.enabled):
        return f
    observe_first(out_q, f, suspend)
    one = ir.attention.SOFTMAX_ONE
    op = ir.AttnMatMul.from_scales("av", "av", heads, 1 / one, scale_of(v_q), scale_of(out_q), out_q.bits)
    pc = torch.round(p.detach() * one).to(torch.int64).numpy()
    return straight(f, op.run([pc, codes(v, v_q)]), scale_of(out_q))


def fq_gelu(g: torch.Tensor, g_q: ActFakeQuant, out_q: ActFakeQuant, suspend: Suspend = None) -> torch.Tensor:
    """GELU of a tensor on ``g_q``'s code (``ir.GELU``)."""
    f = F.gelu(g)
    if not (g_q.enabled and out_q.enabled):
        return f
    observe_first(out_q, f, suspend)
    op = ir.GELU.from_scales("gelu", scale_of(g_q), scale_of(out_q), out_q.bits)
    return straight(f, op.run([codes(g, g_q)]), scale_of(out_q))


def fq_add(a: torch.Tensor, a_q: ActFakeQuant, b: torch.Tensor, b_q: ActFakeQuant, out_q: ActFakeQuant,
           suspend: Suspend = None) -> torch.Tensor:
    """A residual add of two tensors on their codes onto ``out_q``'s (``ir.Add``)."""
    f = a + b
    if not (a_q.enabled and b_q.enabled and out_q.enabled):
        return f
    observe_first(out_q, f, suspend)
    op = ir.Add.from_scales("add", [scale_of(a_q), scale_of(b_q)], scale_of(out_q), out_q.bits)
    return straight(f, op.run([codes(a, a_q), codes(b, b_q)]), scale_of(out_q))


__all__ = ["codes", "fq_add", "fq_attn_av", "fq_attn_qk", "fq_gelu", "fq_layernorm", "fq_softmax", "observe_first",
           "scale_of", "straight"]
