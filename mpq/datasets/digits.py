"""scikit-learn's bundled 8x8 digits: the default dataset, no download, no files."""

from __future__ import annotations

import numpy as np
import torch

from .base import Dataset

DIGITS_TEST = 360          # 1797 samples -> 1437 train / 360 test
DIGITS_SPLIT_SEED = 0      # fixed: the test set never depends on --seed


def load_digits_dataset() -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = d.target.astype(np.int64)
    idx = np.arange(len(y))
    tr, te = train_test_split(idx, test_size=DIGITS_TEST, stratify=y, random_state=DIGITS_SPLIT_SEED)
    tr, te = np.sort(tr), np.sort(te)
    t = torch.from_numpy
    return Dataset("digits", t(x[tr]).contiguous(), t(y[tr]), t(x[te]).contiguous(), t(y[te]))
