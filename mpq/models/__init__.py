"""Quantisable models (``QuantModel`` subclasses) and their registry.

``base.py`` holds the model base class and its plan steps; each network has a
module of its own and registers in ``MODELS`` below.
"""

from __future__ import annotations

from typing import Sequence

from harness.errors import UserError

from ..quant import enable_fake_quant
from .base import (AdaptivePoolStep, Branches, FlattenStep, Layer, PoolStep, QuantModel, Residual,  # noqa: F401
                   Scheme, ShuffleStep, Step, TiedActQuant, _Walk, normalize_scheme)
from .cmsiscnn import CMSISCNN
from .dscnn import DSCNN
from .har import HARMLP, HARCNN1d
from .layers import QConv1d
from .lenet import LeNet
from .m5 import M5
from .mlp import MLP
from .mobilenetv2 import MobileNetV2
from .resnet8 import ResNet8
from .resnet18 import ResNet18
from .shufflenet import ShuffleNet
from .squeezenet import SqueezeNet
from .transformer import KWSTransformer, ViTTiny
from .vgg import VGG

__all__ = ["AdaptivePoolStep", "Branches", "DATASET_HW", "FlattenStep", "LeNet", "Layer", "MLP", "MODELS", "PoolStep",
           "QConv1d", "QuantModel", "Residual", "Scheme", "ShuffleStep", "Step", "TiedActQuant", "build_model",
           "get_model", "normalize_scheme"]

#: the original two take (in_ch, hw, classes); every zoo model takes (input_shape, classes)
_SQUARE_ARGS = {"lenet": LeNet, "mlp": MLP}
MODELS = {"lenet": LeNet, "mlp": MLP, "resnet8": ResNet8, "dscnn": DSCNN, "mobilenetv2": MobileNetV2, "m5": M5,
          "har_cnn1d": HARCNN1d, "har_mlp": HARMLP, "cmsiscnn": CMSISCNN, "vgg": VGG, "resnet18": ResNet18,
          "squeezenet": SqueezeNet, "shufflenet": ShuffleNet, "vit_tiny": ViTTiny,
          "kws_transformer": KWSTransformer}
DATASET_HW = {"digits": 8, "mnist": 28, "fashionmnist": 28}


def dataset_input(dataset: str) -> tuple[tuple[int, ...], int]:
    """(input shape, classes) of a dataset: ``mpq.datasets.dataset_shape`` where the
    dataset package has it, else the square grey images of DATASET_HW."""
    try:
        from ..datasets import dataset_shape
    except ImportError:
        dataset_shape = None
    if dataset_shape is not None:
        shape, classes = dataset_shape(dataset)
        return tuple(int(v) for v in shape), int(classes)
    if dataset not in DATASET_HW:
        raise UserError(f"unknown dataset {dataset!r}; use one of {', '.join(DATASET_HW)}.")
    return (1, DATASET_HW[dataset], DATASET_HW[dataset]), 10


def build_model(name: str, input_shape: Sequence[int], num_classes: int = 10) -> QuantModel:
    """A fresh float model (fake quant off, 8x8 bits) for inputs of ``input_shape``."""
    if name not in MODELS:
        raise UserError(f"unknown model {name!r}; use one of {', '.join(sorted(MODELS))}.")
    shape = tuple(int(v) for v in input_shape)
    if name in _SQUARE_ARGS:
        if len(shape) != 3 or shape[1] != shape[2]:
            raise UserError(f"model {name} takes square (C, H, H) images, not inputs of shape {shape}.")
        model = _SQUARE_ARGS[name](shape[0], shape[1], num_classes)
    else:
        model = MODELS[name](shape, num_classes)
    enable_fake_quant(model, False)
    return model


def get_model(name: str, dataset: str = "digits") -> QuantModel:
    """A fresh float model (fake quant off, 8x8 bits) for ``dataset``'s input size.
    'lenet' on 28x28 is the LeNet variant with a 32*7*7 -> 64 classifier."""
    if name not in MODELS:
        raise UserError(f"unknown model {name!r}; use one of {', '.join(sorted(MODELS))}.")
    shape, classes = dataset_input(dataset)
    return build_model(name, shape, classes)
