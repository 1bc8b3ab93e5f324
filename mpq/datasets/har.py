"""UCI-HAR (Human Activity Recognition Using Smartphones) from its text files.

The folder ``UCI HAR Dataset/`` holds, per split S in {train, test}:
``S/X_S.txt`` (one line per window, 561 whitespace-separated features already
scaled to [-1, 1] by the dataset's authors), ``S/y_S.txt`` (activity 1..6)
and ``S/Inertial Signals/<signal>_S.txt`` (one line per window, 128 samples
at 50 Hz) for the nine signals in ``SIGNALS``.  The train/test split is the
dataset's own (by subject: 21 train, 9 test), so the subject files are not read.

Two views of the same windows:

* ``har``: the 561 features, float32 (N, 561), mapped from [-1, 1] to [0, 1]
  as (x + 1) / 2 (clipped) -- for ``har_mlp``;
* ``har_signals``: the raw inertial signals, float32 (N, 9, 128) (channels in
  ``SIGNALS`` order), each channel z-scored with the train split's mean and
  std and mapped to [0, 1] by ``clip(0.5 + z / 8, 0, 1)`` -- for ``har_cnn1d``.

Labels are the activity minus one: 0 walking, 1 walking upstairs, 2 walking
downstairs, 3 sitting, 4 standing, 5 laying.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from harness.errors import UserError

from .base import Dataset
from .files import check_labels, data_root, read_text_table, require_file, tensors, unit_from_zscore

log = logging.getLogger(__name__)

FOLDER = "UCI HAR Dataset"
FEATURES = 561
STEPS = 128
SIGNALS = ("body_acc_x", "body_acc_y", "body_acc_z", "body_gyro_x", "body_gyro_y", "body_gyro_z",
           "total_acc_x", "total_acc_y", "total_acc_z")
ACTIVITIES = ("walking", "walking_upstairs", "walking_downstairs", "sitting", "standing", "laying")
VIEWS = {"har": (FEATURES,), "har_signals": (len(SIGNALS), STEPS)}


def har_files(name: str, data_dir: str | Path | None, split: str) -> dict[str, Path]:
    """The files of one split that ``name``'s view needs, checked to exist."""
    root = data_root(name, data_dir, (FOLDER,), "train", "UCI HAR Dataset text files")
    d = root / split
    files = {"y": require_file(d / f"y_{split}.txt", name)}
    if name == "har":
        files["x"] = require_file(d / f"X_{split}.txt", name)
    else:
        for s in SIGNALS:
            files[s] = require_file(d / "Inertial Signals" / f"{s}_{split}.txt", name)
    return files


def _read_split(name: str, data_dir: str | Path | None, split: str) -> tuple[np.ndarray, np.ndarray]:
    files = har_files(name, data_dir, split)
    y = read_text_table(files["y"], columns=1, integer=True)[:, 0]
    check_labels(y, 1, len(ACTIVITIES), files["y"])
    if name == "har":
        x, src = read_text_table(files["x"], columns=FEATURES), files["x"]
    else:
        tables = [read_text_table(files[s], columns=STEPS) for s in SIGNALS]
        for s, t in zip(SIGNALS[1:], tables[1:]):
            if len(t) != len(tables[0]):
                raise UserError(f"{files[s]} has {len(t)} lines but {files[SIGNALS[0]]} has {len(tables[0])}; "
                                "the inertial-signal files must have one line per window each.")
        x, src = np.stack(tables, axis=1), files[SIGNALS[0]]
    if len(x) != len(y):
        raise UserError(f"{src} has {len(x)} lines but {files['y']} has {len(y)} labels; the files do not belong "
                        "together.")
    return x, y - 1


def load_har(name: str, data_dir: str | Path | None) -> Dataset:
    har_files(name, data_dir, "test")            # a missing test file fails before the train split is parsed
    xtr, ytr = _read_split(name, data_dir, "train")
    xte, yte = _read_split(name, data_dir, "test")
    if name == "har":
        xtr, xte = ((np.clip(x, -1.0, 1.0) + 1.0) / 2.0 for x in (xtr, xte))
    else:
        xtr, xte = unit_from_zscore(xtr, xte, axes=(0, 2))
    log.info("loaded %s: %d train, %d test windows", name, len(ytr), len(yte))
    return Dataset(name, *tensors(xtr.astype(np.float32), ytr, xte.astype(np.float32), yte))
