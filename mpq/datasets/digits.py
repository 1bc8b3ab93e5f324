"""scikit-learn's bundled 8x8 digits: the default dataset, no download, no
files -- and the views of it that let every model of the zoo run offline.

``digits``: float32 (N, 1, 8, 8) in [0, 1] (pixel / 16), 1437 train / 360
test, a fixed stratified split.  The derived views reshape the same images
with the same split and labels, so a model's default run needs no file:

* ``digits32``: (N, 3, 32, 32), each image bilinearly resized 8x8 -> 32x32
  (``torch.nn.functional.interpolate``, ``align_corners=False``, which keeps
  values in [0, 1]) and repeated over 3 channels -- the CIFAR input shape;
* ``digits1d``: (N, 8, 8) as a 1-D signal: channel c is image row c, the 8
  steps are its columns -- the (C, L) shape of the HAR / KWS 1-D models;
* ``digitsseq``: (N, 1, 64), the image scanned row by row as one channel of
  64 steps -- for 1-D models that want a single long channel (``m5``);
* ``digitsvec``: (N, 64), the same 64 values as a feature vector -- the
  (N, F) shape of ``har``, for ``har_mlp``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from .base import Dataset

DIGITS_TEST = 360          # 1797 samples -> 1437 train / 360 test
DIGITS_SPLIT_SEED = 0      # fixed: the test set never depends on --seed

#: view name -> per-sample shape
VIEWS = {"digits": (1, 8, 8), "digits32": (3, 32, 32), "digits1d": (8, 8), "digitsseq": (1, 64), "digitsvec": (64,)}


@lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = d.target.astype(np.int64)
    idx = np.arange(len(y))
    tr, te = train_test_split(idx, test_size=DIGITS_TEST, stratify=y, random_state=DIGITS_SPLIT_SEED)
    tr, te = np.sort(tr), np.sort(te)
    return x[tr], y[tr], x[te], y[te]


def _view(name: str, x: torch.Tensor) -> torch.Tensor:
    n = len(x)
    if name == "digits32":
        up = torch.nn.functional.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
        return up.clamp(0.0, 1.0).repeat(1, 3, 1, 1).contiguous()
    return x.reshape(n, *VIEWS[name]).contiguous()       # row-major: row c -> channel c / steps 8c..8c+7


def load_digits_dataset(name: str = "digits") -> Dataset:
    """The digits split in view ``name`` (one of ``VIEWS``); fresh tensors each call."""
    xtr, ytr, xte, yte = (torch.from_numpy(a.copy()) for a in _digits_arrays())
    if name != "digits":
        xtr, xte = _view(name, xtr), _view(name, xte)
    return Dataset(name, xtr.contiguous(), ytr, xte.contiguous(), yte)
