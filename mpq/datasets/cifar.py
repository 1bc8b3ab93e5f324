"""CIFAR-10 / CIFAR-100 from the BINARY distribution (never the Python-pickle
one: nothing here unpickles anything).

Both are flat files of fixed-size records.  CIFAR-10 record: 1 label byte
(0..9) then 3072 pixel bytes (1024 red, 1024 green, 1024 blue, each a 32x32
row-major plane).  CIFAR-100 record: 1 coarse label byte (0..19), 1 fine label
byte (0..99), then the same 3072 pixel bytes.  Images come out float32 in
[0, 1] (byte / 255), shape (N, 3, 32, 32).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.errors import UserError

from .base import Dataset
from .files import check_labels, data_root, read_bytes, require_file, tensors

log = logging.getLogger(__name__)

PIXELS = 3 * 32 * 32


@dataclass(frozen=True)
class CifarFormat:
    """Where a CIFAR variant's files are and how its records are laid out."""

    folder: str                      # what the archive extracts to
    train: tuple[str, ...]
    test: tuple[str, ...]
    label_bytes: int                 # bytes before the pixels
    label_index: int                 # which of them is the label used
    num_classes: int

    @property
    def record(self) -> int:
        return self.label_bytes + PIXELS


CIFAR10 = CifarFormat("cifar-10-batches-bin", tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
                      ("test_batch.bin",), 1, 0, 10)
CIFAR100 = CifarFormat("cifar-100-binary", ("train.bin",), ("test.bin",), 2, 1, 100)
CIFAR100_COARSE = CifarFormat("cifar-100-binary", ("train.bin",), ("test.bin",), 2, 0, 20)

FORMATS = {"cifar10": CIFAR10, "cifar100": CIFAR100, "cifar100_coarse": CIFAR100_COARSE}


def read_cifar_records(path: Path, fmt: CifarFormat) -> tuple[np.ndarray, np.ndarray]:
    """One binary file -> (uint8 images (N, 3, 32, 32), int64 labels (N,))."""
    data = read_bytes(path)
    if not data:
        raise UserError(f"{path} is empty.")
    if len(data) % fmt.record:
        raise UserError(f"{path} is truncated or not a CIFAR binary file: its {len(data)} bytes are not a "
                        f"whole number of {fmt.record}-byte records.")
    rec = np.frombuffer(data, dtype=np.uint8).reshape(-1, fmt.record)
    labels = rec[:, fmt.label_index].astype(np.int64)
    # CIFAR-100: check both label bytes, whichever one is used
    for i, n in ((0, 20), (1, 100)) if fmt.label_bytes == 2 else ((0, fmt.num_classes),):
        check_labels(rec[:, i].astype(np.int64), 0, n - 1, path)
    return rec[:, fmt.label_bytes:].reshape(-1, 3, 32, 32), labels


def cifar_files(name: str, data_dir: str | Path | None) -> tuple[list[Path], list[Path]]:
    """The train and test files, all checked to exist (no parsing)."""
    fmt = FORMATS[name]
    root = data_root(name, data_dir, (fmt.folder,), fmt.train[0], "binary-version files")
    return ([require_file(root / f, name) for f in fmt.train], [require_file(root / f, name) for f in fmt.test])


def load_cifar(name: str, data_dir: str | Path | None) -> Dataset:
    fmt = FORMATS[name]
    train_files, test_files = cifar_files(name, data_dir)

    def read(files: list[Path]) -> tuple[np.ndarray, np.ndarray]:
        parts = [read_cifar_records(p, fmt) for p in files]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    xtr, ytr = read(train_files)
    xte, yte = read(test_files)
    log.info("loaded %s: %d train, %d test from %s", name, len(ytr), len(yte), train_files[0].parent)
    x_train, x_test = (x.astype(np.float32) / np.float32(255.0) for x in (xtr, xte))
    return Dataset(name, *tensors(x_train, ytr, x_test, yte))
