"""Accuracy of a scheme on the validation split (held out from TRAIN, never the test set)."""

from __future__ import annotations

import copy
from typing import Sequence

import torch

from ..models import QuantModel, Scheme
from ..train import accuracy, qat, quantize


class PTQEvaluator:
    """Accuracy of a scheme: a BN-folded copy of the float model is quantised,
    calibrated on ``calib_batches`` training batches, optionally fine-tuned for
    ``qat_steps`` steps (``lsq``: with learned scales), and scored on the validation
    split.  Cached."""

    def __init__(self, float_model: QuantModel, x_train: torch.Tensor, y_train: torch.Tensor,
                 x_val: torch.Tensor, y_val: torch.Tensor, calib_batches: int = 4, calib_batch_size: int = 128,
                 qat_steps: int = 0, qat_lr: float = 1e-3, qat_batch_size: int = 64, seed: int = 0,
                 lsq: bool = False):
        from ..fold import fold_model

        self.base = copy.deepcopy(float_model).eval()
        fold_model(self.base)
        self.x_train, self.y_train = x_train, y_train
        self.x_val, self.y_val = x_val, y_val
        self.calib_batches, self.calib_batch_size = calib_batches, calib_batch_size
        self.qat_steps, self.qat_lr, self.qat_batch_size = qat_steps, qat_lr, qat_batch_size
        self.seed = seed
        self.lsq = bool(lsq)
        self.cache: dict[Scheme, float] = {}

    def model_for(self, scheme: Sequence[Sequence[int]]) -> QuantModel:
        torch.manual_seed(self.seed)
        m = quantize(self.base, scheme, self.x_train, self.calib_batches, self.calib_batch_size, self.seed)
        if self.qat_steps > 0:
            # the short fine-tuning of a candidate skips the exact float64 accumulators (about
            # half the step time); scoring below runs with them again
            layers = [layer for _, layer in m.quant_layers()]
            for layer in layers:
                layer.exact_acc = False
            try:
                qat(m, self.x_train, self.y_train, epochs=None, steps=self.qat_steps, lr=self.qat_lr,
                    batch_size=self.qat_batch_size, seed=self.seed, lsq=self.lsq)
            finally:
                for layer in layers:
                    layer.exact_acc = True
        return m

    def sensitivity(self, bits) -> dict:
        """(qa, qw) -> per-layer sensitivity of the float model (cached; see sensitivity.py)."""
        from .sensitivity import layer_sensitivity

        key = tuple(bits)
        if getattr(self, "_sens_key", None) != key:
            self._sens = layer_sensitivity(self.base, self.x_train, self.y_train, key, seed=self.seed)
            self._sens_key = key
        return self._sens

    def __call__(self, scheme: Sequence[Sequence[int]]) -> float:
        key = tuple((int(a), int(w)) for a, w in scheme)
        if key not in self.cache:
            self.cache[key] = accuracy(self.model_for(key), self.x_val, self.y_val)
        return self.cache[key]
