"""Per-layer quantisation sensitivity: what the ``ilp`` (and ``surrogate``) searchers
know about a scheme before evaluating it.

The loss increase of quantising layer i is estimated to second order, with the
diagonal Fisher information as the Hessian (torch autograd, a few training
batches of the float model):

    Omega_i(qa, qw) = F_a[i] * E||Q_qa(a_i) - a_i||^2 + F_w[i] * ||Q_qw(W_i) - W_i||^2

``F_a[i]`` is the mean diagonal Fisher of an element of layer i's input (from
per-sample gradients of the input activation), ``F_w[i]`` that of a weight; the
perturbations are those of the calibrated quantisers at each width.  Summed
over layers it ranks schemes without training anything, which is what lets an
integer program search the whole space in seconds.
"""

from __future__ import annotations

import copy
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..models import QuantModel
from ..quant import enable_fake_quant, weight_scale
from ..train import calibrate, iterate_batches
from ..util import torch_threads


def fisher_traces(model: QuantModel, x: torch.Tensor, y: torch.Tensor, batches: int = 4,
                  batch_size: int = 128, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(F_a, F_w): mean diagonal empirical Fisher per input element / per weight of
    every quant layer of the float model (fake quant off, eval mode)."""
    m = copy.deepcopy(model).eval()
    enable_fake_quant(m, False)
    layers = [layer for _, layer in m.quant_layers()]
    n = len(layers)
    fa, fw = np.zeros(n), np.zeros(n)
    inputs: list = [None] * n
    hooks = []
    for i, layer in enumerate(layers):
        def pre(mod, args, i=i):
            a = args[0]
            if a.requires_grad:
                a.retain_grad()
            inputs[i] = a
        hooks.append(layer.register_forward_pre_hook(pre))
    gen = torch.Generator().manual_seed(int(seed))
    seen = 0
    try:
        with torch_threads():
            for k, (xb, yb) in enumerate(iterate_batches(x, y, batch_size, True, gen)):
                if k >= batches:
                    break
                xb = xb.clone().requires_grad_(True)
                m.zero_grad(set_to_none=True)
                loss = F.cross_entropy(m(xb), yb, reduction="sum")
                loss.backward()
                b = len(yb)
                for i, layer in enumerate(layers):
                    g = inputs[i].grad
                    if g is not None:       # per-sample gradients of the summed loss
                        fa[i] += float(g.pow(2).sum()) / max(g[0].numel(), 1)
                    fw[i] += float(layer.weight.grad.pow(2).sum()) / b / layer.weight.numel()
                seen += b
    finally:
        for h in hooks:
            h.remove()
    return fa / max(seen, 1), fw / max(1, min(batches, (len(x) + batch_size - 1) // batch_size))


@torch.no_grad()
def activation_errors(model: QuantModel, x: torch.Tensor, bits: Sequence[int], batches: int = 2,
                      batch_size: int = 128, seed: int = 0) -> dict[int, np.ndarray]:
    """qa -> per layer E||Q_qa(a) - a||^2 per sample, with calibrated quantisers
    (every layer's input at qa, weights at 8 bits)."""
    n = len(model.layer_names)
    out = {}
    for qa in bits:
        m = copy.deepcopy(model)
        m.set_scheme(((qa, 8),) * n)
        calibrate(m, x, batches, batch_size, seed)
        err = np.zeros(n)
        hooks = []
        for i, (_, layer) in enumerate(m.quant_layers()):
            def hook(mod, args, res, i=i):
                err[i] += float((res - args[0]).pow(2).sum())
            hooks.append(layer.act_quant.register_forward_hook(hook))
        xs = x[: batches * batch_size]
        try:
            with torch_threads():
                m(xs)
        finally:
            for h in hooks:
                h.remove()
        out[qa] = err / max(len(xs), 1)
    return out


def weight_errors(model: QuantModel, bits: Sequence[int]) -> dict[int, np.ndarray]:
    """qw -> per layer ||Q_qw(W) - W||^2 with the calibrated weight scales."""
    from ..quant import quantize_codes

    out = {}
    for qw in bits:
        errs = []
        for _, layer in model.quant_layers():
            w = layer.weight.detach()
            s = weight_scale(w, qw, layer.weight_quant.per_channel, layer.weight_quant.policy)
            q = quantize_codes(w, s.view((-1,) + (1,) * (w.dim() - 1)), qw) * s.view((-1,) + (1,) * (w.dim() - 1))
            errs.append(float((q - w).pow(2).sum()))
        out[qw] = np.array(errs)
    return out


def layer_sensitivity(model: QuantModel, x: torch.Tensor, y: torch.Tensor, bits: Sequence[int],
                      batches: int = 4, seed: int = 0) -> dict[tuple[int, int], np.ndarray]:
    """(qa, qw) -> Omega per layer (see the module doc) of a BN-folded float model."""
    fa, fw = fisher_traces(model, x, y, batches, seed=seed)
    ea = activation_errors(model, x, bits, seed=seed)
    ew = weight_errors(model, bits)
    return {(a, w): fa * ea[a] + fw * ew[w] for a in bits for w in bits}
