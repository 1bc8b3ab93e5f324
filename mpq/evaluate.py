"""Evaluation: accuracy (float, fake quant, integer), BOPs, size and predicted
latency through a latency callable.

A *latency function* maps a list of KernelSpecs to ``(per_layer array, total)``
in the proxy's unit.  :func:`latency_fn_from_proxy` adapts anything with
``predict_specs(list[KernelSpec]) -> np.ndarray`` (``proxy.model.load_proxies``);
:func:`cbops_latency` is the analytic stand-in (unit ``cbops``) used when no
measured proxy is given.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from harness.spec import KernelSpec

from .integer import IntegerModel
from .models import QuantModel
from .quant import ActFakeQuant, WeightFakeQuant
from .train import accuracy

LatencyFn = Callable[[Sequence[KernelSpec]], tuple[np.ndarray, float]]


def latency_fn_from_proxy(proxy) -> LatencyFn:
    """Latency function of a proxy object with ``predict_specs(specs) -> array``."""

    def fn(specs: Sequence[KernelSpec]) -> tuple[np.ndarray, float]:
        per = np.asarray(proxy.predict_specs(list(specs)), dtype=np.float64).reshape(-1)
        if len(per) != len(specs):
            raise ValueError(f"the proxy returned {len(per)} latencies for {len(specs)} kernels")
        return per, float(per.sum())

    fn.unit = getattr(proxy, "unit", None) or "proxy"   # type: ignore[attr-defined]
    fn.mode = getattr(proxy, "mode", "kernel")          # type: ignore[attr-defined]
    return fn


def cbops_latency(specs: Sequence[KernelSpec]) -> tuple[np.ndarray, float]:
    """Analytic latency = MiCo's CBOPs (MACs x max(qa, qw)); not a measurement."""
    per = np.array([float(s.cbops) for s in specs], dtype=np.float64)
    return per, float(per.sum())


cbops_latency.unit = "cbops"   # type: ignore[attr-defined]


def bops_latency(specs: Sequence[KernelSpec]) -> tuple[np.ndarray, float]:
    """Analytic latency = BOPs (MACs x qa x qw); not a measurement."""
    per = np.array([float(s.bops) for s in specs], dtype=np.float64)
    return per, float(per.sum())


bops_latency.unit = "bops"   # type: ignore[attr-defined]


def latency_unit(fn: LatencyFn) -> str:
    return str(getattr(fn, "unit", "proxy"))


def latency_mode(fn: LatencyFn) -> str:
    """Which specs a latency function prices: "layer" (every layer as a deployed model runs
    it, the default of fitted layer proxies) or "kernel" (the MAC kernels alone)."""
    return str(getattr(fn, "mode", "kernel"))


def predicted_latency(latency_fn: LatencyFn, specs: Sequence[KernelSpec]) -> tuple[np.ndarray, float]:
    per, total = latency_fn(list(specs))
    return np.asarray(per, dtype=np.float64), float(total)


def total_bops(specs: Sequence[KernelSpec]) -> int:
    return int(sum(s.bops for s in specs))


def size_bits(specs: Sequence[KernelSpec]) -> int:
    """Weight storage in bits: sum of weight count x qw (biases excluded)."""
    return int(sum(s.weight_count * s.qw for s in specs))


@contextlib.contextmanager
def fake_quant_disabled(model: torch.nn.Module):
    """Run a quant model as its float model (restores the switches after)."""
    mods = [m for m in model.modules() if isinstance(m, (ActFakeQuant, WeightFakeQuant))]
    saved = [m.fake_quant_enabled.clone() for m in mods]
    try:
        for m in mods:
            m.fake_quant_enabled.fill_(0)
        yield model
    finally:
        for m, s in zip(mods, saved):
            m.fake_quant_enabled.copy_(s)


def float_accuracy(model: QuantModel, x: torch.Tensor, y: torch.Tensor) -> float:
    with fake_quant_disabled(model):
        return accuracy(model, x, y)


def fakequant_accuracy(model: QuantModel, x: torch.Tensor, y: torch.Tensor) -> float:
    return accuracy(model, x, y)


def integer_accuracy(int_model: IntegerModel, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> float:
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += int((int_model.predict(x[i:i + batch_size]) == y[i:i + batch_size]).sum())
    return correct / max(len(x), 1)


@dataclass
class EvalReport:
    accuracy_float: float | None
    accuracy_fakequant: float
    accuracy_integer: float | None
    bops: int
    size_bits: int
    latency_total: float
    latency_per_layer: list[float] = field(default_factory=list)
    latency_unit: str = "proxy"

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate_model(model: QuantModel, x: torch.Tensor, y: torch.Tensor, latency_fn: LatencyFn = cbops_latency,
                   int_model: IntegerModel | None = None, float_model: QuantModel | None = None,
                   batch: int = 1) -> EvalReport:
    """Accuracy of the fake-quant model (and of ``float_model`` / ``int_model``
    when given), BOPs, weight bits and predicted latency for ``batch``."""
    specs = model.layer_specs(batch)
    per, total = predicted_latency(latency_fn, specs)
    return EvalReport(
        accuracy_float=float_accuracy(float_model, x, y) if float_model is not None else None,
        accuracy_fakequant=fakequant_accuracy(model, x, y),
        accuracy_integer=integer_accuracy(int_model, x, y) if int_model is not None else None,
        bops=total_bops(specs), size_bits=size_bits(specs), latency_total=total,
        latency_per_layer=[float(v) for v in per], latency_unit=latency_unit(latency_fn))
