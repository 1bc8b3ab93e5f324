"""MNIST / Fashion-MNIST from local IDX files (plain or .gz), never downloaded."""

from __future__ import annotations

import gzip
import logging
import struct
from pathlib import Path

import numpy as np
import torch

from harness.errors import UserError

from .base import Dataset
from .files import data_dir_of

log = logging.getLogger(__name__)

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_SUBDIRS = {
    "mnist": ("", "MNIST/raw", "mnist", "MNIST"),
    "fashionmnist": ("", "FashionMNIST/raw", "fashionmnist", "fashion-mnist", "fashion_mnist", "FashionMNIST"),
}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed) into a NumPy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise UserError(f"cannot read IDX file {path}: {e}.") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise UserError(f"{path} is not an IDX file (bad magic number).")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise UserError(f"{path} is a truncated IDX file.")
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    dt = np.dtype(_IDX_DTYPES[data[2]])
    count = int(np.prod(dims)) if dims else 1
    body = data[4 + 4 * ndim:]
    if len(body) < count * dt.itemsize:
        raise UserError(f"{path} is a truncated IDX file ({len(body)} of {count * dt.itemsize} data bytes).")
    return np.frombuffer(body, dtype=dt, count=count).reshape(dims)


def write_idx(path: str | Path, arr: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (gzip if the name ends in .gz); for tests."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    head = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(head + arr.tobytes())


def _find_idx(root: Path, dataset: str, stem: str) -> Path | None:
    for sub in _SUBDIRS[dataset]:
        d = root / sub if sub else root
        for name in (stem, stem.replace("-idx", ".idx")):
            for suffix in ("", ".gz"):
                p = d / (name + suffix)
                if p.is_file():
                    return p
    return None


def _load_idx_dataset(name: str, data_dir: str | Path | None) -> Dataset:
    root = data_dir_of(name, data_dir, "IDX files")
    found = {}
    for key, stem in IDX_FILES.items():
        p = _find_idx(root, name, stem)
        if p is None:
            raise UserError(f"{stem}[.gz] for {name} was not found under {root}; put the four {name} IDX files there.")
        found[key] = p
    xtr, ytr = read_idx(found["train_images"]), read_idx(found["train_labels"])
    xte, yte = read_idx(found["test_images"]), read_idx(found["test_labels"])
    for x, y, which in ((xtr, ytr, "train"), (xte, yte, "test")):
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise UserError(f"{name} {which} images {x.shape} and labels {y.shape} do not match.")
    log.info("loaded %s: %d train, %d test from %s", name, len(ytr), len(yte), root)

    def img(a):
        return torch.from_numpy(a.astype(np.float32) / 255.0).unsqueeze(1)

    def lab(a):
        return torch.from_numpy(a.astype(np.int64))

    return Dataset(name, img(xtr), lab(ytr), img(xte), lab(yte))
