"""MiCo's kernel-latency CSV layouts: import and export.

MiCo (Jiang & Lyu, ICCAD 2025) profiles kernels into one CSV per op:

- matmul: ``N,M,K,QA,QW,Time`` -- N activation rows, M outputs, K inputs;
- conv2d: ``H,W,C,K,KS,S,QA,QW,Time`` -- batch 1, no padding, groups 1
  (MiCo writes the kernel size as ``Ks`` sometimes).

Reading: header names are case-insensitive and whitespace-stripped, other
columns are ignored -- except that a conv2d CSV may carry optional ``N``, ``P``
and ``G`` columns (defaults 1, 0, 1), which are honoured rather than silently
dropped.  A conv2d row maps to ``KernelSpec("conv2d", (N,C,H,W,K,KS,S,P,G))``.
Any malformed input raises `UserError` with one sentence naming the file and
line.  ``Time`` is taken as given (MiCo's unit: cycles or ns, per target).
QA / QW may be any width some kernel family runs (``SPEC_BITS``, 1..8: MiCo
profiles BitFusion at every width 2..8); which widths a *target* runs is
its capability, checked when it measures, not here.

This module belongs to harness/ and imports nothing from proxy/ or mpq/.
"""

from __future__ import annotations

import csv
import io
import math
import re
from pathlib import Path
from typing import Iterable

from .documents import atomic_write
from .errors import UserError
from .spec import OPS, SPEC_BITS, KernelSpec, check_bits

LAYOUTS: dict[str, tuple[str, ...]] = {
    "matmul": ("N", "M", "K", "QA", "QW", "Time"),
    "conv2d": ("H", "W", "C", "K", "KS", "S", "QA", "QW", "Time"),
}
# header spelling MiCo uses when writing (Ks, not KS)
_WRITE_HEADER = {
    "matmul": ("N", "M", "K", "QA", "QW", "Time"),
    "conv2d": ("H", "W", "C", "K", "Ks", "S", "QA", "QW", "Time"),
}
_CONV_OPTIONAL = {"N": 1, "P": 0, "G": 1}
#: largest size a cell may hold (the firmware's fields are 32-bit signed)
MAX_SIZE = 2**31 - 1
#: a latency beyond a 64-bit counter is a typo, not a measurement
MAX_TIME = 2.0**63
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def _check_op(op: str) -> None:
    if op not in OPS:
        raise UserError(f"unknown op {op!r} for a MiCo CSV; use one of {', '.join(OPS)}.")


def _int_cell(text: str, col: str, where: str) -> int:
    """An integer cell, exactly ("1e30" and 10^23 are read as what they say, then refused by range)."""
    shown = text if text else "(empty)"
    if _INT.fullmatch(text):
        v = int(text)
    else:
        f = float(text) if _FLOAT.fullmatch(text) else math.nan
        if not math.isfinite(f) or f != int(f):
            raise UserError(f"{where}: {col}={shown!r} is not an integer.")
        v = int(f)
    if not 0 <= v <= MAX_SIZE:
        raise UserError(f"{where}: {col}={text} is out of range; sizes must lie between 0 and 2^31-1.")
    return v


def _time_cell(text: str, where: str) -> float:
    if not _FLOAT.fullmatch(text) and text.strip().lower() not in ("nan", "inf", "-inf", "+inf", "infinity"):
        raise UserError(f"{where}: Time={text or '(empty)'!r} is not a number.")
    t = float(text)
    if not math.isfinite(t) or t <= 0:
        raise UserError(f"{where}: Time={text} is not a positive latency.")
    if t >= MAX_TIME:
        raise UserError(f"{where}: Time={text} is not a plausible latency (it must be below 2^63).")
    return t


def _read_rows(path: Path, name: str) -> list[tuple[int, list[str]]]:
    """(first physical line, cells) of every non-blank CSV row; quotes must close on their own line."""
    rows: list[tuple[int, list[str]]] = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, strict=True)
            start = 1
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except csv.Error as e:
                    if "end of data" in str(e):
                        raise UserError(f"line {start} of {name}: a quoted cell is never closed "
                                        "(an unterminated quote).") from None
                    raise UserError(f"line {reader.line_num} of {name}: {e} (malformed quoting).") from None
                if reader.line_num != start:
                    raise UserError(f"line {start} of {name}: a quoted cell spans several lines, "
                                    "which a MiCo CSV never has.")
                if any(c.strip() for c in row):
                    rows.append((start, row))
                start = reader.line_num + 1
    except FileNotFoundError:
        raise UserError(f"MiCo CSV {name} does not exist.") from None
    except IsADirectoryError:
        raise UserError(f"MiCo CSV {name} is a directory, not a file.") from None
    except UnicodeDecodeError:
        raise UserError(f"{name} is not a text CSV file.") from None
    except OSError as e:
        raise UserError(f"cannot read MiCo CSV {name} ({e.strerror or e}).") from None
    return rows


def read_mico_csv(path: str | Path, op: str) -> list[tuple[KernelSpec, float]]:
    """[(KernelSpec, Time)] from one of MiCo's CSVs; UserError (one sentence) on bad input.

    Sizes are integers in 0 .. 2^31-1 (then checked by KernelSpec), QA/QW
    supported bit-widths, Time a finite positive number below 2^63; a row
    that breaks any of these is refused with its line number.
    """
    _check_op(op)
    path = Path(path)
    name = str(path)
    numbered = _read_rows(path, name)

    want = LAYOUTS[op]
    if not numbered:
        raise UserError(f"{name} is empty; a MiCo {op} CSV starts with the header {','.join(want)}.")
    header_line, header = numbered[0]
    cols = [c.strip().upper() for c in header]
    index: dict[str, int] = {}
    for j, c in enumerate(cols):
        if c in index and c in {w.upper() for w in want} | set(_CONV_OPTIONAL):
            raise UserError(f"line {header_line} of {name}: column {header[j].strip()!r} appears twice.")
        index.setdefault(c, j)
    missing = [w for w in want if w.upper() not in index]
    if missing:
        raise UserError(
            f"line {header_line} of {name}: the header lacks column(s) {', '.join(missing)}; "
            f"a MiCo {op} CSV has {','.join(want)}."
        )
    if len(numbered) == 1:
        raise UserError(f"{name} has a header but no rows.")

    out: list[tuple[KernelSpec, float]] = []
    seen: dict[KernelSpec, int] = {}
    for lineno, row in numbered[1:]:
        where = f"line {lineno} of {name}"
        if len(row) != len(header):
            raise UserError(f"{where}: has {len(row)} cells but the header has {len(header)}.")
        cell = {c: row[j].strip() for c, j in index.items()}
        v = {c: _int_cell(cell[c.upper()], c, where) for c in want if c != "Time"}
        try:
            check_bits("QA", v["QA"], SPEC_BITS)
            check_bits("QW", v["QW"], SPEC_BITS)
        except UserError as e:
            raise UserError(f"{where}: {e}") from None
        t = _time_cell(cell["TIME"], where)
        if op == "matmul":
            shape = (v["N"], v["M"], v["K"])
        else:
            extra = {c: (_int_cell(cell[c], c, where) if c in cell else d) for c, d in _CONV_OPTIONAL.items()}
            shape = (extra["N"], v["C"], v["H"], v["W"], v["K"], v["KS"], v["S"], extra["P"], extra["G"])
        try:
            spec = KernelSpec(op, shape, v["QA"], v["QW"])
        except UserError as e:
            raise UserError(f"{where}: {e}") from None
        if spec in seen:
            raise UserError(f"{where}: repeats the kernel {spec} of line {seen[spec]}; keep one measurement per kernel.")
        seen[spec] = lineno
        out.append((spec, t))
    return out


def _row_value(row) -> tuple[KernelSpec, float]:
    """(spec, value) from a (KernelSpec, value) pair or a Measurement (its median)."""
    if hasattr(row, "spec") and hasattr(row, "median"):
        return row.spec, row.median
    try:
        spec, value = row
    except (TypeError, ValueError):
        raise UserError("rows to write must be (KernelSpec, time) pairs or Measurements.") from None
    return spec, value


def _fmt_time(t: float) -> str:
    return str(int(t)) if float(t).is_integer() and abs(t) < 2**53 else repr(float(t))


def write_mico_csv(rows: Iterable, op: str, path: str | Path) -> Path:
    """Write (KernelSpec, time) pairs or Measurements (Time = median) in MiCo's `op` layout.

    Kernels MiCo's layout cannot express (conv2d with batch != 1, padding or
    groups; another op; no value) raise UserError and nothing is written.
    """
    _check_op(op)
    path = Path(path)
    out_rows: list[list[str]] = []
    for spec, t in map(_row_value, rows):
        if not isinstance(spec, KernelSpec) or spec.op != op:
            raise UserError(f"cannot write {spec} into a MiCo {op} CSV; write one file per op.")
        try:
            t = float(t)
        except (TypeError, ValueError):
            t = math.nan
        if not math.isfinite(t) or t <= 0:
            raise UserError(f"kernel {spec} has no positive measured time to write.")
        d = spec.dims
        if op == "matmul":
            cells = [d["N"], d["M"], d["K"]]
        else:
            if d["N"] != 1 or d["P"] != 0 or d["G"] != 1:
                raise UserError(
                    f"kernel {spec} has batch {d['N']}, padding {d['P']}, groups {d['G']}; "
                    "MiCo's conv2d CSV holds only batch 1, no padding, groups 1."
                )
            cells = [d["H"], d["W"], d["C"], d["K"], d["KS"], d["S"]]
        out_rows.append([*map(str, cells), str(spec.qa), str(spec.qw), _fmt_time(t)])
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(_WRITE_HEADER[op])
    w.writerows(out_rows)
    atomic_write(path, buf.getvalue(), what="MiCo CSV")
    return path


def measurements_from_mico_csv(path: str | Path, op: str, fingerprint: str, unit: str = "cycles") -> list:
    """Store `Measurement`s (source 'imported', status ok) from a MiCo CSV, ready for Store.put_many."""
    from .store import Measurement

    return [
        Measurement(spec=s, fingerprint=fingerprint, status="ok", unit=unit, raw=[t], median=t, iqr=None,
                    min=t, checksum_ok=None, source="imported")
        for s, t in read_mico_csv(path, op)
    ]


__all__ = ["LAYOUTS", "read_mico_csv", "write_mico_csv", "measurements_from_mico_csv"]
