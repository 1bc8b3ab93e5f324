"""Finding and reading a dataset's local files, with one-sentence errors.

Every file-backed loader resolves ``--data-dir`` the same way (the folder
itself or one of the names the dataset's archive extracts to), so a user can
point at either the parent or the extracted folder.  Every problem with a file
-- missing, truncated, malformed -- becomes a ``UserError`` of one sentence
that names the file; loaders never let a NumPy or struct traceback through.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from harness.errors import UserError


def data_dir_of(name: str, data_dir: str | Path | None, what: str) -> Path:
    """``--data-dir`` as an existing folder; ``what`` names the files in the error."""
    if data_dir is None:
        raise UserError(f"dataset {name} needs its {what}; pass --data-dir pointing at the folder that holds them.")
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise UserError(f"data directory {root} does not exist; pass --data-dir pointing at the {name} {what}.")
    return root


def data_root(name: str, data_dir: str | Path | None, subdirs: Iterable[str], marker: str, what: str) -> Path:
    """The folder under ``data_dir`` (itself or one of ``subdirs``) that holds
    ``marker``; ``what`` names the files in the error."""
    root = data_dir_of(name, data_dir, what)
    for sub in ("", *subdirs):
        d = root / sub if sub else root
        if (d / marker).exists():
            return d
    tried = ", ".join(repr(s) for s in subdirs)
    raise UserError(f"{marker} for {name} was not found under {root} (nor in its sub-folder {tried}); "
                    f"put the {what} there.")


def require_file(path: Path, name: str) -> Path:
    if not path.is_file():
        raise UserError(f"{path.name} for {name} was not found in {path.parent}.")
    return path


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}.") from None


def _first_bad_line(path: Path, lines: list[str], columns: int | None, kind: type) -> str:
    """Why the text table in ``lines`` did not parse: the first offending line."""
    for i, line in enumerate(lines, 1):
        toks = line.split()
        if not toks:
            continue
        if columns is not None and len(toks) != columns:
            return f"line {i} of {path} has {len(toks)} values, expected {columns}"
        for t in toks:
            try:
                kind(t)
            except ValueError:
                return f"line {i} of {path} holds {t[:20]!r}, which is not a number"
    return f"{path} is not a table of numbers"


def read_text_table(path: Path, columns: int | None = None, integer: bool = False) -> np.ndarray:
    """A whitespace-separated numeric text file (UCI style) as a 2-D array
    (float64, or int64 with ``integer``); ``columns`` is the exact width
    required.  Blank lines are skipped."""
    try:
        text = path.read_text(encoding="ascii")
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}.") from None
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a text file of numbers (it holds non-ASCII bytes).") from None
    if not text.strip():
        raise UserError(f"{path} is empty.")
    kind = int if integer else float
    try:
        arr = np.loadtxt(io.StringIO(text), dtype=np.float64, ndmin=2)
    except ValueError:      # ragged rows or a token that is not a number
        raise UserError(_first_bad_line(path, text.splitlines(), columns, kind) + ".") from None
    lines = text.splitlines()
    if arr.ndim != 2 or (columns is not None and arr.shape[1] != columns):
        raise UserError(_first_bad_line(path, lines, columns, kind) + ".")
    if not np.isfinite(arr).all():
        row = int(np.argwhere(~np.isfinite(arr))[0][0]) + 1
        raise UserError(f"line {row} of {path} holds a value that is not a finite number.")
    if integer:
        if (arr != np.round(arr)).any():
            row = int(np.argwhere(arr != np.round(arr))[0][0]) + 1
            raise UserError(f"line {row} of {path} holds a value that is not an integer.")
        return arr.astype(np.int64)
    return arr


def check_labels(labels: np.ndarray, low: int, high: int, path: Path | str) -> None:
    """Labels must lie in [low, high]; name the first record that does not."""
    bad = np.flatnonzero((labels < low) | (labels > high))
    if bad.size:
        raise UserError(f"record {int(bad[0])} of {path} has label {int(labels[bad[0]])}, "
                        f"outside {low}..{high}; the file is corrupted or not this dataset's.")


def unit_from_zscore(train: np.ndarray, test: np.ndarray, axes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel z-score with the TRAIN split's mean and std (reduced over
    ``axes``), mapped to [0, 1] as ``clip(0.5 + z / 8, 0, 1)``: +-4 sigma spans
    the 8-bit input range the models quantise, and their 0.5 input offset
    centres it.  Both splits use the train statistics, so the test split never
    leaks into the preprocessing."""
    mean = train.mean(axis=axes, keepdims=True)
    std = train.std(axis=axes, keepdims=True)
    std = np.where(std > 0, std, 1.0)

    def f(a: np.ndarray) -> np.ndarray:
        return np.clip(0.5 + (a - mean) / (8.0 * std), 0.0, 1.0).astype(np.float32)

    return f(train), f(test)


def tensors(*arrays: np.ndarray) -> list[torch.Tensor]:
    """NumPy -> contiguous torch tensors: float arrays as float32, the rest as int64."""
    out = []
    for a in arrays:
        a = np.ascontiguousarray(a, dtype=np.float32 if a.dtype.kind == "f" else np.int64)
        out.append(torch.from_numpy(a))
    return out
