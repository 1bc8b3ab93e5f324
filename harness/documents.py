"""Versioned JSON documents and atomic file writes, defined once.

Every file mico-hil writes for a user (proxy files, scheme.json, deploy.json,
exports) goes through `atomic_write`: the bytes go to a temporary file in the
same folder, are fsync'ed, and replace the target by one rename, so a crash or
a full disk leaves either the old file or the new one, never a torn or
0-byte file.  Every JSON document carries ``"format"`` and ``"version"``;
`read_document` checks both, so reading a file of another kind or of a newer
mico-hil fails with one sentence instead of a KeyError three calls later.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import DiskFullError, MicoError

#: errno values that mean "no room": a full device, a quota, a file-size limit
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def _umask() -> int:
    """The process umask, read without changing it where /proc allows."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_error(path: str | Path, e: OSError, what: str = "") -> MicoError:
    """The one-sentence library error for an OSError raised while writing `path`."""
    name = f"{what} {path}".strip()
    if e.errno in NO_SPACE:
        return DiskFullError(f"disk full: cannot write {name} ({e.strerror or e}); any previous file is unchanged.")
    return MicoError(f"cannot write {name}: {e.strerror or e}.")


def atomic_write(path: str | Path, data: bytes | str, *, what: str = "") -> Path:
    """Replace `path` by `data` atomically (temp file + fsync + rename).

    `str` data is written as UTF-8.  The file gets the mode a plain open()
    would give (0666 & ~umask).  On any failure the temporary file is removed
    and the previous `path` is untouched; a full disk (ENOSPC, EDQUOT, EFBIG)
    raises `DiskFullError` ("disk full: ..."), other OS errors a `MicoError`.
    `what` names the file in messages ("proxy file", "MiCo CSV").
    """
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            raise MicoError(f"cannot write {what + ' ' if what else ''}{path}: it is a folder.")
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
        tmp = None
        _fsync_dir(path.parent)
    except OSError as e:
        raise write_error(path, e, what) from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return path


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable (best effort: some file systems refuse)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def dump_json(doc: Any) -> str:
    """The canonical text of a document: indented, no NaN/Infinity, newline-terminated."""
    try:
        return json.dumps(doc, indent=2, allow_nan=False) + "\n"
    except ValueError:
        raise MicoError("the document holds a non-finite number (NaN or infinity), which JSON cannot store.") from None


def write_document(path: str | Path, doc: dict, *, what: str = "") -> Path:
    """`atomic_write` of a JSON document (which should carry its format and version)."""
    return atomic_write(path, dump_json(doc), what=what)


def read_document(path: str | Path, format: str, version: int, *, what: str | None = None,
                  oldest: int | None = None) -> dict:
    """The JSON object of file `path`, checked to be a `format` document this code reads.

    Accepted versions are `oldest` (default: `version`) .. `version`.  Every
    failure is a `MicoError` of one sentence naming the file: missing, a
    folder, unreadable, not JSON, not an object of this format, or of a
    version this mico-hil does not read (newer: upgrade mico-hil).
    """
    path = Path(path)
    what = what or f"{format} file"
    oldest = version if oldest is None else oldest
    if path.is_dir():
        raise MicoError(f"{what} {path} is a folder, not a file.")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MicoError(f"{what} {path} does not exist.") from None
    except UnicodeDecodeError:
        raise MicoError(f"{what} {path} is not a text file, so it is not valid JSON.") from None
    except OSError as e:
        raise MicoError(f"cannot read {what} {path} ({e.strerror or e}).") from None
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise MicoError(f"{what} {path} is not valid JSON.") from None
    if not isinstance(doc, dict) or doc.get("format") != format:
        got = doc.get("format") if isinstance(doc, dict) else None
        said = f"its format is {got!r}" if isinstance(got, str) else f"it has no 'format': {format!r}"
        raise MicoError(f"{path} is not a {what} ({said}).")
    v = doc.get("version")
    if isinstance(v, bool) or not isinstance(v, int):
        raise MicoError(f"{what} {path} has no integer 'version'.")
    if v > version:
        raise MicoError(f"{what} {path} is of version {v}, newer than the version {version} this mico-hil reads; "
                        "upgrade mico-hil to read it.")
    if v < oldest:
        raise MicoError(f"{what} {path} is of version {v}, which this mico-hil no longer reads (it reads "
                        f"versions {oldest} to {version}).")
    return doc
