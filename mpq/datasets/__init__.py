"""Datasets: the bundled 8x8 digits (and views of it), and real datasets read
from local files under ``--data-dir`` -- never downloaded.

Conventions, one per kind of input (x always float32 in [0, 1], y int64):

* images: (N, C, H, W) -- digits, digits32, mnist, fashionmnist, cifar10,
  cifar100, cifar100_coarse, speechcommands (49 x 10 MFCC "image");
* 1-D signals: (N, C, L) -- digits1d, digitsseq, har_signals, speechcommands_1d;
* feature vectors: (N, F) -- digitsvec, har.

[0, 1] so the models' fixed 0.5 input offset centres every input: images
are pixel / max, non-image signals are z-scored per channel with the train
split's statistics and mapped by ``clip(0.5 + z / 8, 0, 1)``.  Each source
has a module of its own; ``load_dataset`` is the one entry point and
``dataset_shape`` gives a dataset's input shape and class count without its
files.  docs/datasets.md lists the files each needs and the preprocessing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.errors import UserError

from . import cifar, digits, har, speech_commands
from .base import Dataset
from .digits import load_digits_dataset
from .idx import _load_idx_dataset, read_idx, write_idx


@dataclass(frozen=True)
class DatasetInfo:
    """What is known about a dataset before (and without) loading it."""

    name: str
    input_shape: tuple[int, ...]           # per sample: (C, H, W), (C, L) or (F,)
    num_classes: int
    loader: Callable[[str, str | Path | None], Dataset]
    files: str | None                      # what --data-dir must hold; None: bundled
    epochs: int                            # default float-training epochs (minutes on a CPU)

    @property
    def needs_files(self) -> bool:
        return self.files is not None


def _digits(name: str, data_dir: str | Path | None) -> Dataset:
    return load_digits_dataset(name)


_INFOS = [
    *(DatasetInfo(n, s, 10, _digits, None, 30) for n, s in digits.VIEWS.items()),
    DatasetInfo("mnist", (1, 28, 28), 10, _load_idx_dataset, "the four MNIST IDX files", 3),
    DatasetInfo("fashionmnist", (1, 28, 28), 10, _load_idx_dataset, "the four Fashion-MNIST IDX files", 4),
    DatasetInfo("cifar10", (3, 32, 32), 10, cifar.load_cifar, "cifar-10-batches-bin/*.bin", 3),
    DatasetInfo("cifar100", (3, 32, 32), 100, cifar.load_cifar, "cifar-100-binary/{train,test}.bin", 3),
    DatasetInfo("cifar100_coarse", (3, 32, 32), 20, cifar.load_cifar, "cifar-100-binary/{train,test}.bin", 3),
    DatasetInfo("har", har.VIEWS["har"], len(har.ACTIVITIES), har.load_har,
                "UCI HAR Dataset/{train,test}/X_*.txt, y_*.txt", 10),
    DatasetInfo("har_signals", har.VIEWS["har_signals"], len(har.ACTIVITIES), har.load_har,
                "UCI HAR Dataset/{train,test}/Inertial Signals/*.txt, y_*.txt", 10),
    *(DatasetInfo(n, s, len(speech_commands.LABELS), speech_commands.load_speech_commands,
                  "speech_commands_v0.02/<word>/*.wav, testing_list.txt", 5)
      for n, s in speech_commands.VIEWS.items()),
]
INFOS = {i.name: i for i in _INFOS}
DATASETS = tuple(INFOS)

__all__ = ["DATASETS", "INFOS", "Dataset", "DatasetInfo", "canonical_name", "dataset_info", "dataset_shape",
           "load_dataset", "load_digits_dataset", "read_idx", "write_idx"]


def _key(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


_BY_KEY = {_key(n): n for n in DATASETS}


def canonical_name(name: str) -> str:
    """The registry's spelling of ``name`` (case, '-' and '_' are ignored)."""
    try:
        return _BY_KEY[_key(name)]
    except KeyError:
        raise UserError(f"unknown dataset {name!r}; use one of {', '.join(DATASETS)}.") from None


def dataset_info(name: str) -> DatasetInfo:
    return INFOS[canonical_name(name)]


def dataset_shape(name: str) -> tuple[tuple[int, ...], int]:
    """(per-sample input shape, number of classes) without reading any file:
    models size themselves (and the latency budget) from this."""
    info = dataset_info(name)
    return info.input_shape, info.num_classes


def load_dataset(name: str, data_dir: str | Path | None = None) -> Dataset:
    """Load ``name`` (bundled, or from its files under ``data_dir``); every
    problem with the files is a one-sentence ``UserError``."""
    info = dataset_info(name)
    return info.loader(info.name, data_dir)
