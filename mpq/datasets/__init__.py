"""Datasets: sklearn's 8x8 digits (bundled, no download) and MNIST /
Fashion-MNIST read from local IDX files (``--data-dir``; plain or ``.gz``).

Images are float32 in [0, 1], shape (N, C, H, W); labels int64.  Each source
has a module of its own; ``load_dataset`` is the one entry point.
"""

from __future__ import annotations

from pathlib import Path

from harness.errors import UserError

from .base import Dataset
from .digits import load_digits_dataset
from .idx import _load_idx_dataset, read_idx, write_idx

DATASETS = ("digits", "mnist", "fashionmnist")

__all__ = ["DATASETS", "Dataset", "load_dataset", "load_digits_dataset", "read_idx", "write_idx"]


def load_dataset(name: str, data_dir: str | Path | None = None) -> Dataset:
    """'digits' (sklearn, bundled) or 'mnist' / 'fashionmnist' (IDX files under data_dir)."""
    name = name.lower().replace("-", "").replace("_", "")
    if name == "digits":
        return load_digits_dataset()
    if name in ("mnist", "fashionmnist"):
        return _load_idx_dataset(name, data_dir)
    raise UserError(f"unknown dataset {name!r}; use one of {', '.join(DATASETS)}.")
