"""Fake quantisation in PyTorch, bit-exact with DESIGN.md section 3.

Follows the ``torch.ao.quantization`` conventions: fake-quant modules carry
their observer state and the ``fake_quant_enabled`` / ``observer_enabled``
switches as buffers, quantised layers subclass the float layer
(``QConv2d(nn.Conv2d)``, ``QLinear(nn.Linear)``) and quantise their input
activation and their weight in ``forward``.

Codes are zero-point free:

* b >= 2: ``clamp(round(x / scale), -2^(b-1), 2^(b-1)-1)`` (round half to even,
  as ``torch.round``);
* b == 1: ``+1`` where ``x >= 0`` else ``-1``.

Fake quant returns ``codes * scale`` with a straight-through estimator: the
gradient passes where the input was not clamped (for 1 bit where
``|x / scale| <= 1``).

Scales:

* weights: symmetric per output channel, ``max|w_c| / (2^(b-1)-1)`` for b >= 4,
  ``mean|w_c|`` for b == 1 (``per_channel=False`` uses one scale over the whole
  tensor -- the models use it for the classifier so that integer logits keep the
  float ordering);
* activations: per tensor, from an exponential moving average of ``max|x|``
  (b >= 4: ``ema_max / (2^(b-1)-1)``) or of ``mean|x|`` (b == 1), updated in
  training mode only and frozen in eval mode;
* 2 bits (policy ``"mico"``, the default): a max-based scale leaves almost every
  value at code 0 (the threshold for code 1 is max/2), which cost 80 points of
  accuracy on digits; 2-bit scales are mean based instead:
  weights ``1.5 * mean|w_c|``, activations ``2 * ema(mean|x|)``.  Policy
  ``"minmax"`` uses ``max / (2^(b-1)-1)`` for every b >= 2.  The integer model
  does not care how a scale was chosen.

The bias stays a float parameter; when both quantisers are on, the forward
pass rounds it to the accumulator grid ``s_in * s_w[c]`` (STE), exactly as the
integer model stores it (``round(bias / (s_in * s_w[c]))`` as int32).

With fake quant on, a layer's forward VALUE is ``(acc + bias_int) * s_in * s_w[c]``
with ``acc`` the exact integer accumulator (computed in float64 from the codes;
``exact_acc``), while the gradient is that of the ordinary float32 fake-quant
conv/linear.  Without it, float32 summation noise around ``acc + bias == 0``
flips 1-bit activations (sign) at random: the integer model disagreed with the
fake-quant model on half the digits test set for an all-1-bit LeNet.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kernels import ir
from kernels.reference import BITS

SCALE_POLICIES = ("mico", "minmax")
#: 2-bit scales under the "mico" policy (see the module doc)
W2_MEAN_FACTOR = 1.5
A2_MEAN_FACTOR = 2.0
#: smallest scale: keeps all-zero channels / dead activations finite
EPS_SCALE = 1e-8
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def _check_bits(bits: int) -> int:
    if int(bits) not in BITS:
        raise ValueError(f"bit-width {bits!r} is not one of {BITS}")
    return int(bits)


def _check_policy(policy: str) -> str:
    if policy not in SCALE_POLICIES:
        raise ValueError(f"scale policy {policy!r} is not one of {SCALE_POLICIES}")
    return policy


def set_scale_policy(model: nn.Module, policy: str) -> None:
    """Set the scale policy of every fake-quantiser in ``model``."""
    _check_policy(policy)
    for m in quant_modules(model):
        m.policy = policy


def qrange(bits: int, unsigned: bool = False) -> tuple[int, int]:
    """(lowest, highest) integer value of a ``bits``-bit code (1 bit: -1, +1;
    ``unsigned`` at 2/4 bits: 0 .. 2^b - 1, a non-negative tensor's code)."""
    _check_bits(bits)
    if bits == 1:
        return -1, 1
    if unsigned:
        if bits not in ir.UNSIGNED_BITS:
            raise ValueError(f"unsigned codes exist at {ir.UNSIGNED_BITS} bits, not {bits}")
        return 0, (1 << bits) - 1
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def quantize_codes(x: torch.Tensor, scale: torch.Tensor | float, bits: int, unsigned: bool = False) -> torch.Tensor:
    """Integer VALUES (same float dtype as ``x``) of ``x`` quantised with ``scale``.

    ``scale`` broadcasts against ``x`` (a scalar or per-channel shaped tensor)."""
    bits = _check_bits(bits)
    if bits == 1:
        return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))
    lo, hi = qrange(bits, unsigned)
    return torch.clamp(torch.round(x / scale), lo, hi)


def quantize_codes_np(x: np.ndarray, scale, bits: int, unsigned: bool = False) -> np.ndarray:
    """NumPy twin of :func:`quantize_codes` (np.rint rounds half to even)."""
    bits = _check_bits(bits)
    x = np.asarray(x)
    if bits == 1:
        return np.where(x >= 0, 1.0, -1.0).astype(x.dtype)
    lo, hi = qrange(bits, unsigned)
    return np.clip(np.rint(x / scale), lo, hi)


class _FakeQuantSTE(torch.autograd.Function):
    """Fake quant with the straight-through gradient for ``x`` and, when the scale
    is learned, LSQ's gradient for it (Esser et al., "Learned Step Size
    Quantization"): d(q*s)/ds = round(x/s) - x/s inside the range, the clamp
    bound outside, scaled by ``grad_scale`` (1/sqrt(numel * Qp))."""

    @staticmethod
    def forward(ctx, x, scale, bits, unsigned, grad_scale):
        s = scale.detach() if torch.is_tensor(scale) else scale
        q = quantize_codes(x, s, bits, unsigned)
        r = x / s
        if bits == 1:
            mask = r.abs() <= 1
        else:
            lo, hi = qrange(bits, unsigned)
            mask = (r >= lo - 0.5) & (r <= hi + 0.5)
        ctx.bits, ctx.grad_scale = bits, grad_scale
        ctx.scale_shape = scale.shape if torch.is_tensor(scale) else None
        ctx.save_for_backward(mask, q, r)
        return q * s

    @staticmethod
    def backward(ctx, grad):
        mask, q, r = ctx.saved_tensors
        gs = None
        if ctx.needs_input_grad[1]:
            # inside the range q - r (rounding error), outside the clamp bound q itself
            d = torch.where(mask, q - r, q) if ctx.bits > 1 else q
            g = grad * d * ctx.grad_scale
            shape = ctx.scale_shape
            dims = [i for i in range(g.dim()) if i >= len(shape) or shape[len(shape) - g.dim() + i] == 1] \
                if len(shape) == g.dim() else list(range(g.dim()))
            gs = g.sum(dim=dims, keepdim=len(shape) == g.dim()).reshape(shape)
        return grad * mask.to(grad.dtype), gs, None, None, None


def fake_quant(x: torch.Tensor, scale: torch.Tensor, bits: int, unsigned: bool = False,
               learn: bool = False) -> torch.Tensor:
    """``quantize_codes(x, scale, bits) * scale`` with a straight-through gradient
    (zero where the value was clamped; for 1 bit where ``|x/scale| > 1``).
    ``scale`` is a constant unless ``learn`` (LSQ gradient, see _FakeQuantSTE)."""
    bits = _check_bits(bits)
    if learn and torch.is_tensor(scale) and scale.requires_grad:
        lo, hi = qrange(bits, unsigned)
        n = x.numel() / max(scale.numel(), 1)
        g = 1.0 / float(np.sqrt(max(n, 1.0) * max(hi, 1)))
        return _FakeQuantSTE.apply(x, scale, bits, unsigned, g)
    return _FakeQuantSTE.apply(x, scale.detach() if torch.is_tensor(scale) else scale, bits, unsigned, 0.0)


class _RoundSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.round(x)

    @staticmethod
    def backward(ctx, grad):
        return grad


def weight_scale(w: torch.Tensor, bits: int, per_channel: bool = True, policy: str = "mico") -> torch.Tensor:
    """Symmetric weight scale, shape (out_channels,) (the same value repeated when
    ``per_channel`` is False).  Detached from autograd."""
    bits = _check_bits(bits)
    w = w.detach()
    flat = w.reshape(w.shape[0], -1) if per_channel else w.reshape(1, -1)
    if bits == 1:
        s = flat.abs().mean(dim=1)
    elif bits == 2 and policy == "mico":
        s = flat.abs().mean(dim=1) * W2_MEAN_FACTOR
    else:
        s = flat.abs().amax(dim=1) / float((1 << (bits - 1)) - 1)
    s = s.clamp_min(EPS_SCALE)
    if not per_channel:
        s = s.expand(w.shape[0]).clone()
    return s


class WeightFakeQuant(nn.Module):
    """Per-output-channel symmetric weight fake-quantiser (scale from the weights)."""

    def __init__(self, bits: int = 8, per_channel: bool = True, policy: str = "mico"):
        super().__init__()
        self.bits = _check_bits(bits)
        self.per_channel = bool(per_channel)
        self.policy = _check_policy(policy)
        self.register_buffer("fake_quant_enabled", torch.tensor([0], dtype=torch.uint8))
        self.lsq_scale: nn.Parameter | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.fake_quant_enabled[0])

    def start_lsq(self, w: torch.Tensor) -> None:
        """Learn the per-channel scales from now on (LSQ), starting at today's ones
        (one shared value when not per channel: the classifier keeps one scale)."""
        s = self.scale(w).detach().clone()
        self.lsq_scale = nn.Parameter(s[:1].clone() if not self.per_channel else s)

    def stop_lsq(self, w: torch.Tensor) -> None:
        self.lsq_scale = None

    def scale(self, w: torch.Tensor) -> torch.Tensor:
        ls = getattr(self, "lsq_scale", None)
        if ls is not None:
            s = ls.abs().clamp_min(EPS_SCALE)
            return s.expand(w.shape[0]) if s.numel() == 1 else s
        return weight_scale(w, self.bits, self.per_channel, self.policy)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return w
        ls = getattr(self, "lsq_scale", None)
        s = self.scale(w).view((-1,) + (1,) * (w.dim() - 1))
        return fake_quant(w, s, self.bits, learn=ls is not None)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, per_channel={self.per_channel}, policy={self.policy}"


class ActFakeQuant(nn.Module):
    """Per-tensor activation fake-quantiser with an EMA observer.

    Buffers: ``ema_max`` (EMA of max|x|), ``ema_mean`` (EMA of mean|x|),
    ``initialized`` (the first observation sets the EMA), ``fake_quant_enabled``,
    ``observer_enabled``.  The observer runs only in training mode."""

    def __init__(self, bits: int = 8, momentum: float = 0.1, policy: str = "mico"):
        super().__init__()
        self.bits = _check_bits(bits)
        self.policy = _check_policy(policy)
        self.momentum = float(momentum)
        self.register_buffer("ema_max", torch.tensor(1.0))
        self.register_buffer("ema_mean", torch.tensor(0.5))
        self.register_buffer("initialized", torch.tensor([0], dtype=torch.uint8))
        self.register_buffer("fake_quant_enabled", torch.tensor([0], dtype=torch.uint8))
        self.register_buffer("observer_enabled", torch.tensor([1], dtype=torch.uint8))
        self._unsigned = False
        self.lsq_scale: nn.Parameter | None = None

    @property
    def unsigned(self) -> bool:
        """Whether this quantiser's code is unsigned (0 .. 2^b - 1): set by the model
        from its structure (every writer of the tensor ends in a ReLU, b in 2, 4)."""
        return self._unsigned and self.bits in ir.UNSIGNED_BITS

    @unsigned.setter
    def unsigned(self, value: bool) -> None:
        self._unsigned = bool(value)

    @property
    def enabled(self) -> bool:
        return bool(self.fake_quant_enabled[0])

    def start_lsq(self) -> None:
        """Learn the scale from now on (LSQ): a parameter initialised at the current scale.
        The observer stops steering it."""
        s = float(self.observed_scale())
        if self.lsq_scale is None:
            self.lsq_scale = nn.Parameter(torch.tensor(s))
        else:
            with torch.no_grad():
                self.lsq_scale.fill_(s)

    def stop_lsq(self) -> None:
        """Freeze the learned scale into the observer state and go back to observed scales."""
        if self.lsq_scale is not None:
            s = float(self.scale())
            self.lsq_scale = None
            self.set_scale(s)

    def reset(self) -> None:
        self.initialized.zero_()

    @torch.no_grad()
    def observe(self, x: torch.Tensor) -> None:
        xa = x.detach().abs()
        mx = xa.max().to(self.ema_max.dtype)
        mn = xa.mean().to(self.ema_mean.dtype)
        if not bool(self.initialized[0]):
            self.ema_max.copy_(mx)
            self.ema_mean.copy_(mn)
            self.initialized.fill_(1)
        else:
            m = self.momentum
            self.ema_max.mul_(1 - m).add_(m * mx)
            self.ema_mean.mul_(1 - m).add_(m * mn)

    def _top(self) -> float:
        """The largest code a max-based scale maps max|x| to."""
        return float(qrange(self.bits, self.unsigned)[1])

    def observed_scale(self) -> torch.Tensor:
        if self.bits == 1:
            s = self.ema_mean
        elif self.bits == 2 and self.policy == "mico":
            s = self.ema_mean * A2_MEAN_FACTOR
        else:
            s = self.ema_max / self._top()
        return s.clamp_min(EPS_SCALE)

    def scale(self) -> torch.Tensor:
        """The scale in use: the learned one under LSQ (float32, > 0), else the observed one."""
        if self.lsq_scale is not None:
            return self.lsq_scale.abs().clamp_min(EPS_SCALE)
        return self.observed_scale()

    def set_scale(self, scale: float) -> None:
        """Freeze the quantiser at ``scale`` (sets the EMA state accordingly)."""
        with torch.no_grad():
            if self.bits == 1:
                self.ema_mean.fill_(scale)
            elif self.bits == 2 and self.policy == "mico":
                self.ema_mean.fill_(scale / A2_MEAN_FACTOR)
            else:
                self.ema_max.fill_(scale * self._top())
            self.initialized.fill_(1)
            if self.lsq_scale is not None:
                self.lsq_scale.fill_(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and bool(self.observer_enabled[0]) and self.lsq_scale is None:
            self.observe(x)
        if not self.enabled:
            return x
        return fake_quant(x, self.scale().to(x.dtype), self.bits, self.unsigned, learn=self.lsq_scale is not None)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, momentum={self.momentum}, policy={self.policy}"


class _QuantLayerMixin:
    """Shared parts of QConv2d / QLinear."""

    act_quant: ActFakeQuant
    weight_quant: WeightFakeQuant

    @property
    def qa(self) -> int:
        return self.act_quant.bits

    @property
    def qw(self) -> int:
        return self.weight_quant.bits

    def set_bits(self, qa: int, qw: int) -> None:
        self.act_quant.bits = _check_bits(qa)
        self.weight_quant.bits = _check_bits(qw)

    @property
    def quant_enabled(self) -> bool:
        return self.act_quant.enabled and self.weight_quant.enabled

    def input_scale(self) -> torch.Tensor:
        return self.act_quant.scale()

    def weight_scales(self) -> torch.Tensor:
        return self.weight_quant.scale(self.weight)

    def _bias_int(self, s_in: torch.Tensor, s_w: torch.Tensor) -> torch.Tensor:
        """round(bias / (s_in * s_w[c])) clamped to int32 (float tensor), the
        stored int32 bias; computed once here for forward and export alike."""
        grid = s_in.to(self.bias.dtype) * s_w.to(self.bias.dtype)
        return torch.round(torch.clamp(self.bias.detach() / grid, INT32_MIN, INT32_MAX))

    def _quant_params(self):
        """(fake-quant weight, bias on the accumulator grid) used by forward."""
        w = self.weight_quant(self.weight)
        b = self.bias
        if b is not None and self.quant_enabled:
            grid = (self.act_quant.scale().to(b.dtype) * self.weight_scales().to(b.dtype))
            b = _RoundSTE.apply(torch.clamp(b / grid, INT32_MIN, INT32_MAX)) * grid
        return w, b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xq = self.act_quant(x)
        w, b = self._quant_params()
        out = self._op(xq, w, b)
        if self.quant_enabled and self.exact_acc:
            out = out + (self._exact_forward(xq).to(out.dtype) - out).detach()
        return out

    @torch.no_grad()
    def _exact_forward(self, xq: torch.Tensor) -> torch.Tensor:
        """``(acc + bias_int) * s_in * s_w[c]`` with acc the EXACT integer
        accumulator (float64 on integer codes): the value the float path computes
        up to float32 rounding, but with the sign (and zero) of ``acc + bias``
        exactly as the integer model -- which decides every 1-bit activation."""
        s_in = self.act_quant.scale().double()
        s_w = self.weight_scales().double()
        shape = (-1,) + (1,) * (self.weight.dim() - 1)
        ca = torch.round(xq.double() / s_in)
        cw = quantize_codes(self.weight.detach(), self.weight_scales().view(shape), self.qw).double()
        acc = self._op(ca, cw, None)
        oshape = (1, -1) + (1,) * (acc.dim() - 2)
        if self.bias is not None:
            acc = acc + self._bias_int(self.act_quant.scale(), self.weight_scales()).double().view(oshape)
        return acc * (s_in * s_w).view(oshape)

    def integer_params(self) -> dict:
        """Integer weight values, per-channel scales and int32 bias exactly as the
        fake-quant forward pass uses them (numpy, float64 scales)."""
        with torch.no_grad():
            s_in = self.act_quant.scale()
            s_w = self.weight_scales()
            shape = (-1,) + (1,) * (self.weight.dim() - 1)
            codes = quantize_codes(self.weight, s_w.view(shape), self.qw)
            if self.bias is not None:
                bias = self._bias_int(s_in, s_w)
            else:
                bias = torch.zeros(self.weight.shape[0])
        return {
            "weight": codes.cpu().numpy().astype(np.int8),
            "bias": bias.cpu().numpy().astype(np.int64).astype(np.int32),
            "s_in": float(s_in),
            "s_w": s_w.double().cpu().numpy(),
        }


class QConv2d(_QuantLayerMixin, nn.Conv2d):
    """``nn.Conv2d`` with input-activation and per-channel weight fake quant."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 groups=1, bias=True, qa: int = 8, qw: int = 8, per_channel: bool = True):
        nn.Conv2d.__init__(self, in_channels, out_channels, kernel_size, stride=stride,
                           padding=padding, groups=groups, bias=bias)
        if self.kernel_size[0] != self.kernel_size[1] or self.stride[0] != self.stride[1] \
                or self.padding[0] != self.padding[1] or self.dilation != (1, 1):
            raise ValueError("QConv2d supports square kernels, equal strides/padding, no dilation")
        self.act_quant = ActFakeQuant(qa)
        self.weight_quant = WeightFakeQuant(qw, per_channel)
        self.exact_acc = True

    def _op(self, x, w, b):
        return F.conv2d(x, w, b, self.stride, self.padding, self.dilation, self.groups)

    def ir_op(self, name: str, qa: int, qw: int, out_bits: int, weight=None, rq=None,
              out_signed: bool = True) -> ir.Conv2d:
        """This layer as an IR op (weights and requantisation optional: structural)."""
        return ir.Conv2d(name=name, qa=qa, qw=qw, out_bits=out_bits, weight=weight, rq=rq,
                         out_channels=self.out_channels, ks=self.kernel_size[0], stride=self.stride[0],
                         pad=self.padding[0], groups=self.groups, out_signed=out_signed)


class QLinear(_QuantLayerMixin, nn.Linear):
    """``nn.Linear`` with input-activation and per-channel weight fake quant."""

    def __init__(self, in_features, out_features, bias=True, qa: int = 8, qw: int = 8,
                 per_channel: bool = True):
        nn.Linear.__init__(self, in_features, out_features, bias=bias)
        self.act_quant = ActFakeQuant(qa)
        self.weight_quant = WeightFakeQuant(qw, per_channel)
        self.exact_acc = True

    def _op(self, x, w, b):
        return F.linear(x, w, b)

    def ir_op(self, name: str, qa: int, qw: int, out_bits: int, weight=None, rq=None,
              out_signed: bool = True) -> ir.Linear:
        """This layer as an IR op (weights and requantisation optional: structural)."""
        return ir.Linear(name=name, qa=qa, qw=qw, out_bits=out_bits, weight=weight, rq=rq,
                         out_features=self.out_features, out_signed=out_signed)


QUANT_LAYERS = (QConv2d, QLinear)


def quant_modules(model: nn.Module) -> Iterator[nn.Module]:
    for m in model.modules():
        if isinstance(m, (ActFakeQuant, WeightFakeQuant)):
            yield m


def enable_fake_quant(model: nn.Module, enabled: bool = True) -> None:
    """Switch every fake-quantiser of ``model`` on or off (off = float model)."""
    for m in quant_modules(model):
        m.fake_quant_enabled.fill_(int(bool(enabled)))


def enable_observer(model: nn.Module, enabled: bool = True) -> None:
    for m in model.modules():
        if isinstance(m, ActFakeQuant):
            m.observer_enabled.fill_(int(bool(enabled)))


def reset_observers(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, ActFakeQuant):
            m.reset()
