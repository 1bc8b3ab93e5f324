"""Quantisable models (``QuantModel`` subclasses) and their registry.

``base.py`` holds the model base class and its plan steps; each network has a
module of its own and registers in ``MODELS`` below.
"""

from __future__ import annotations

from harness.errors import UserError

from ..quant import enable_fake_quant
from .base import FlattenStep, Layer, PoolStep, QuantModel, Scheme, Step, _Walk, normalize_scheme  # noqa: F401
from .lenet import LeNet
from .mlp import MLP

__all__ = ["DATASET_HW", "FlattenStep", "LeNet", "Layer", "MLP", "MODELS", "PoolStep", "QuantModel", "Scheme",
           "Step", "get_model", "normalize_scheme"]

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
