"""The dataset record every loader returns, and the train/validation split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Dataset:
    """One dataset in memory: x float32 in [0, 1], shaped per kind (see the
    package docstring), y int64 class indices; the test split is fixed."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def split_validation(self, frac: float = 0.2, seed: int = 0, max_val: int | None = None):
        """Stratified hold-out of the TRAIN split: (x_tr, y_tr, x_val, y_val).
        The test split is never touched."""
        from sklearn.model_selection import train_test_split

        n = len(self.y_train)
        n_val = max(int(round(frac * n)), 10)
        if max_val is not None:
            n_val = min(n_val, int(max_val))
        idx = np.arange(n)
        tr, va = train_test_split(idx, test_size=n_val, stratify=self.y_train.numpy(), random_state=seed)
        tr, va = np.sort(tr), np.sort(va)
        return self.x_train[tr], self.y_train[tr], self.x_train[va], self.y_train[va]
