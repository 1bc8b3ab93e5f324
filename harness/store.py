"""The results store: one SQLite file, WAL mode, one writer (the coordinator).

Measurements are keyed by (target fingerprint, op, shape, qa, qw).  Each result
is committed on its own, so a sweep killed at any instant loses at most the
kernels that were in flight, and a re-run skips what is already stored.

Opening is defensive, because ``--store`` is whatever path a user typed: the
file is inspected with reads only, and nothing is written (no table, no WAL
switch) unless it is empty or a mico-hil store of a schema this code knows.
A newer schema is refused, an older one is migrated in one transaction (a
read-only open reads it as it is).  Rows come back as `Measurement`s holding
real `KernelSpec`s: the shape text ("N,M,K") is parsed here and nowhere else,
and a malformed row is reported with its key.

Schema history:

1. targets(fingerprint, name, info, created_at), measurements(...), meta.
2. targets.source ('measured' | 'imported' | 'synthetic'): the provenance of a
   target's rows, so imported and measured rows never share a target name;
   ``PRAGMA application_id`` marks the file as a mico-hil store.
"""

from __future__ import annotations

import json
import logging
import math
import resource
import shutil
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from .errors import DiskFullError, MicoError, StoreError
from .spec import KernelSpec

log = logging.getLogger(__name__)

SCHEMA_VERSION = 4
#: PRAGMA application_id of a mico-hil store: "MICO"
APPLICATION_ID = 0x4D49434F
SOURCES = ("measured", "imported", "synthetic")

_VALIDATIONS = """CREATE TABLE IF NOT EXISTS validations (
    id INTEGER PRIMARY KEY,
    target TEXT NOT NULL,         -- target name as deployed on (a validation runs whole models, not one build)
    model TEXT NOT NULL,
    document TEXT NOT NULL,       -- JSON: the whole mico-validation document (schemes, predicted, measured)
    created_at REAL NOT NULL
)"""

_TABLES = (
    """CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS targets (
    fingerprint TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    info TEXT NOT NULL,           -- JSON: HELLO reply, build digests, parameters; imports: file provenance
    created_at REAL NOT NULL,
    source TEXT NOT NULL DEFAULT 'measured'    -- measured | imported | synthetic (schema 2)
)""",
    """CREATE TABLE IF NOT EXISTS measurements (
    id INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL REFERENCES targets(fingerprint),
    op TEXT NOT NULL,
    shape TEXT NOT NULL,          -- "N,M,K" / "N,C,H,W,K,KS,S,P,G"
    qa INTEGER NOT NULL,
    qw INTEGER NOT NULL,
    status TEXT NOT NULL,         -- ok | timeout | crash | mismatch | does_not_fit | unsupported
    unit TEXT,                    -- cycles | ns
    raw TEXT,                     -- JSON list of per-repeat values
    median REAL,
    iqr REAL,
    min REAL,
    checksum_ok INTEGER,
    error TEXT,                   -- one sentence + detail (last UART bytes, stderr)
    seed INTEGER,
    retries INTEGER NOT NULL DEFAULT 0,
    reconnects INTEGER NOT NULL DEFAULT 0,
    wall_s REAL,
    source TEXT NOT NULL DEFAULT 'measured',   -- measured | imported | synthetic
    created_at REAL NOT NULL,
    mode TEXT NOT NULL DEFAULT 'kernel',       -- kernel | layer (schema 3)
    out_bits INTEGER NOT NULL DEFAULT 0,       -- layer mode: output code width, 0 = int32 (schema 3)
    UNIQUE (fingerprint, op, shape, qa, qw, mode, out_bits)
)""",
    """CREATE INDEX IF NOT EXISTS meas_target_op ON measurements (fingerprint, op)""",
    """CREATE INDEX IF NOT EXISTS targets_name ON targets (name)""",
    _VALIDATIONS,
)

_MEAS_COLS_2 = ("id", "fingerprint", "op", "shape", "qa", "qw", "status", "unit", "raw", "median", "iqr", "min",
                "checksum_ok", "error", "seed", "retries", "reconnects", "wall_s", "source", "created_at")
_MEAS_COLS = _MEAS_COLS_2 + ("mode", "out_bits")
#: columns each schema version must have, per table (an "old layout" lacks some)
_REQUIRED = {
    1: {"meta": ("key", "value"), "targets": ("fingerprint", "name", "info", "created_at"),
        "measurements": _MEAS_COLS_2},
    2: {"meta": ("key", "value"), "targets": ("fingerprint", "name", "info", "created_at", "source"),
        "measurements": _MEAS_COLS_2},
    3: {"meta": ("key", "value"), "targets": ("fingerprint", "name", "info", "created_at", "source"),
        "measurements": _MEAS_COLS},
    4: {"meta": ("key", "value"), "targets": ("fingerprint", "name", "info", "created_at", "source"),
        "measurements": _MEAS_COLS, "validations": ("id", "target", "model", "document", "created_at")},
}

#: schema N -> N+1, run in one transaction with the version bump
_MIGRATIONS = {
    1: (
        "ALTER TABLE targets ADD COLUMN source TEXT NOT NULL DEFAULT 'measured'",
        # a target whose every row was imported (or synthetic) gets that provenance
        "UPDATE targets SET source = (SELECT MIN(m.source) FROM measurements m WHERE m.fingerprint = targets.fingerprint)"
        " WHERE fingerprint IN (SELECT fingerprint FROM measurements GROUP BY fingerprint"
        " HAVING MIN(source) = MAX(source) AND MIN(source) IN ('imported', 'synthetic'))",
        "CREATE INDEX IF NOT EXISTS targets_name ON targets (name)",
        f"PRAGMA application_id = {APPLICATION_ID}",
    ),
    # the measurement mode joins the key: SQLite cannot change a UNIQUE constraint, so the table is rebuilt
    2: (
        _TABLES[2].replace("IF NOT EXISTS measurements", "measurements_v3"),
        f"INSERT INTO measurements_v3 ({', '.join(_MEAS_COLS_2)}, mode, out_bits)"
        f" SELECT {', '.join(_MEAS_COLS_2)}, 'kernel', 0 FROM measurements",
        "DROP TABLE measurements",
        "ALTER TABLE measurements_v3 RENAME TO measurements",
        _TABLES[3],
    ),
    # whole-model validations (mico validate) are kept next to the kernels they were predicted from
    3: (_VALIDATIONS,),
}


@dataclass
class Measurement:
    spec: KernelSpec
    fingerprint: str
    status: str = "ok"
    unit: str | None = None
    raw: list[float] = field(default_factory=list)
    median: float | None = None
    iqr: float | None = None
    min: float | None = None
    checksum_ok: bool | None = None
    error: str | None = None
    seed: int | None = None
    retries: int = 0
    reconnects: int = 0
    wall_s: float | None = None
    source: str = "measured"
    created_at: float = field(default_factory=time.time)
    #: the target's name, filled in by `Store.rows` (None when built elsewhere)
    target: str | None = None

    @property
    def rel_iqr(self) -> float | None:
        if self.median and self.iqr is not None:
            return self.iqr / self.median
        return None

    def to_dict(self) -> dict:
        d = {
            "op": self.spec.op, "shape": list(self.spec.shape), "qa": self.spec.qa, "qw": self.spec.qw,
            "fingerprint": self.fingerprint, "status": self.status, "unit": self.unit,
            "value": self.median, "median": self.median, "iqr": self.iqr, "min": self.min,
            "rel_iqr": self.rel_iqr, "repeats": len(self.raw), "checksum_ok": self.checksum_ok,
            "error": self.error, "seed": self.seed, "retries": self.retries,
            "reconnects": self.reconnects, "wall_s": self.wall_s,
        }
        return d


def _is_disk_full(e: sqlite3.Error, path: Path) -> bool:
    """SQLITE_FULL, or an I/O error while the disk or the file-size limit is exhausted.

    SQLite reports ENOSPC as SQLITE_FULL but a write refused whole with EFBIG
    (RLIMIT_FSIZE) or EDQUOT only as a generic I/O error, so that case is
    recognised by looking at the free space and the process's file-size limit.
    """
    code = getattr(e, "sqlite_errorcode", None)
    if code == sqlite3.SQLITE_FULL or "disk is full" in str(e):
        return True
    if code is None or code & 0xFF != sqlite3.SQLITE_IOERR or str(path) == ":memory:":
        return False
    try:
        if shutil.disk_usage(path.parent).free < (1 << 20):
            return True
    except OSError:
        pass
    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if soft == resource.RLIM_INFINITY:
        return False
    sizes = []
    for suffix in ("", "-wal", "-journal"):
        try:
            sizes.append(Path(str(path) + suffix).stat().st_size)
        except OSError:
            pass
    return bool(sizes) and max(sizes) + (1 << 16) >= soft


def _number(v, what: str) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{what} {v!r} is not a number")
    return float(v)


class Store:
    """SQLite-backed measurement store.  Open with a path; ``:memory:`` works.

    Raises `StoreError` (one sentence) for a path that is not a mico-hil
    store, a schema newer than this code, an unknown layout, or a read-only
    open of a missing file; `DiskFullError` when a write finds no space (what
    was committed before stays).
    """

    def __init__(self, path: str | Path, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        memory = str(path) == ":memory:"
        if not memory and self.path.is_dir():
            raise StoreError(f"store {self.path} is a folder, not an SQLite file.")
        existed = memory or self.path.exists()
        if readonly and not existed:
            raise StoreError(f"store {self.path} does not exist.")
        if not readonly and not memory:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StoreError(f"cannot create the folder for store {self.path}: {e.strerror}.") from None
        self.db: sqlite3.Connection | None = None
        try:
            self.db = self._connect()
            self.schema_version = self._inspect()
            if not readonly:
                self._prepare()
        except sqlite3.Error as e:
            self._close_quietly()
            if not existed:
                self._remove_new_file()
            raise self._translate(e) from None
        except MicoError:
            self._close_quietly()
            if not existed:
                self._remove_new_file()
            raise

    # ---- opening ----------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        if not self.readonly:
            return sqlite3.connect(str(self.path), timeout=30, isolation_level=None)
        uri = self.path.resolve().as_uri()   # percent-encoded: '?' or '#' in a name stay part of it
        db = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=30, isolation_level=None)
        try:
            db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
            return db
        except sqlite3.Error as e:
            db.close()
            wal = Path(str(self.path) + "-wal")
            if not _is_disk_full(e, self.path) or (wal.exists() and wal.stat().st_size):
                raise
        # a reader of a WAL file needs room for its -shm index; on a full disk, with no
        # pending log, the file alone is the whole store and can be read as immutable
        return sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, timeout=30, isolation_level=None)

    def _translate(self, e: sqlite3.Error) -> MicoError:
        msg = str(e)
        if _is_disk_full(e, self.path):
            return DiskFullError(f"disk full: cannot write to store {self.path}; what it held before is intact.")
        if "readonly" in msg or "unable to open" in msg:
            return StoreError(f"store {self.path} cannot be opened for writing ({msg}); choose a path you can write to.")
        if "not a database" in msg or "malformed" in msg:
            return StoreError(f"{self.path} is not a mico-hil SQLite store (it is not an SQLite database at all).")
        if "locked" in msg or "busy" in msg:
            return StoreError(f"store {self.path} is locked by another process ({msg}); try again when it is done.")
        return StoreError(f"store {self.path} cannot be used ({msg}).")

    def _close_quietly(self) -> None:
        if self.db is not None:
            try:
                self.db.close()
            except sqlite3.Error:
                pass
            self.db = None

    def _remove_new_file(self) -> None:
        """A store this call created and could not initialise leaves no 0-byte file behind."""
        if str(self.path) == ":memory:":
            return
        for suffix in ("", "-wal", "-shm", "-journal"):
            p = Path(str(self.path) + suffix)
            try:
                if p.is_file() and (suffix or p.stat().st_size == 0):
                    p.unlink()
            except OSError:
                pass

    def _inspect(self) -> int:
        """The schema version of the file, 0 for an empty file; reads only.

        StoreError for anything that is not an empty file or a mico-hil store
        whose schema this code reads or can migrate.
        """
        db = self.db
        objects = db.execute("SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'").fetchall()
        app_id = db.execute("PRAGMA application_id").fetchone()[0]
        if not objects:
            if app_id not in (0, APPLICATION_ID):
                raise StoreError(f"{self.path} is an SQLite database of another application "
                                 f"(application_id {app_id:#x}), not a mico-hil store; it was left unchanged.")
            if self.readonly:
                raise StoreError(f"store {self.path} is empty, so it holds no measurements yet.")
            return 0
        tables = {n for t, n in objects if t == "table"}
        version_text = None
        if "meta" in tables:
            try:
                row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            except sqlite3.OperationalError:
                row = None
            version_text = row[0] if row else None
        if version_text is None:
            shown = ", ".join(sorted(tables)[:6]) or "none"
            raise StoreError(f"{self.path} is an SQLite database but not a mico-hil store (its tables: {shown}); "
                             "it was left unchanged.")
        try:
            version = int(version_text)
        except (TypeError, ValueError):
            raise StoreError(f"store {self.path} has an unreadable schema version {version_text!r}; "
                             "it was left unchanged.") from None
        if version > SCHEMA_VERSION:
            raise StoreError(f"store {self.path} has schema version {version}, newer than the version "
                             f"{SCHEMA_VERSION} this mico-hil reads; upgrade mico-hil (the store was left unchanged).")
        if version not in _REQUIRED:
            raise StoreError(f"store {self.path} has schema version {version}, which this mico-hil cannot read.")
        for table, cols in _REQUIRED[version].items():
            have = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
            missing = [c for c in cols if c not in have]
            if missing:
                what = f"has no table {table!r}" if not have else \
                    f"has an old or unknown layout of table {table!r} (no column {', '.join(missing)})"
                raise StoreError(f"store {self.path} (schema version {version}) {what}; it was left unchanged.")
        return version

    def _prepare(self) -> None:
        """WAL mode, then create or migrate the schema in one immediate transaction."""
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("BEGIN IMMEDIATE")
        start = 0
        try:
            version = self._inspect()   # again, under the write lock: another process may have moved on
            if version == 0:
                for stmt in _TABLES:
                    self.db.execute(stmt)
                self.db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                self.db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            start = version
            while 0 < version < SCHEMA_VERSION:
                for stmt in _MIGRATIONS[version]:
                    self.db.execute(stmt)
                version += 1
                self.db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(version),))
            self.db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        if 0 < start < SCHEMA_VERSION:
            log.warning("store %s was migrated from schema version %d to %d.", self.path, start, SCHEMA_VERSION)
        self.schema_version = SCHEMA_VERSION

    def _rollback(self) -> None:
        if self.db is not None and self.db.in_transaction:
            try:
                self.db.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    def _write(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        """One write statement; sqlite errors become one-sentence library errors."""
        try:
            return self.db.execute(sql, args)
        except sqlite3.Error as e:
            raise self._translate(e) from None

    def close(self) -> None:
        self._close_quietly()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- targets --------------------------------------------------------------
    def add_target(self, fingerprint: str, name: str, info: dict, source: str = "measured") -> None:
        """Record a target build; refuses a name that holds rows of another provenance.

        Imported (or synthetic) rows and measured rows never share a target
        name, so a name always means one kind of number.
        """
        if source not in SOURCES:
            raise MicoError(f"unknown target source {source!r}; use one of {', '.join(SOURCES)}.")
        for other_fp, other_source in self._sources_of(name):
            if other_fp != fingerprint and other_source != source:
                raise StoreError(
                    f"store {self.path} already holds {other_source} rows under the target name {name!r}; "
                    f"{source} rows cannot join them, so use another name for one of the two or another store."
                )
        try:
            info_text = json.dumps(info, sort_keys=True, allow_nan=False)
        except (TypeError, ValueError):
            raise MicoError(f"the description of target {name!r} is not JSON-serialisable.") from None
        self._write(
            "INSERT INTO targets (fingerprint, name, info, created_at, source) VALUES (?,?,?,?,?)"
            " ON CONFLICT(fingerprint) DO UPDATE SET info=excluded.info",
            (fingerprint, name, info_text, time.time(), source),
        )

    def _sources_of(self, name: str) -> list[tuple[str, str]]:
        """(fingerprint, source) of every target called `name`."""
        if self.schema_version >= 2:
            return [tuple(r) for r in self.db.execute("SELECT fingerprint, source FROM targets WHERE name=?", (name,))]
        # schema 1 (read-only open): derive the provenance from the rows
        out = []
        for (fp,) in self.db.execute("SELECT fingerprint FROM targets WHERE name=?", (name,)).fetchall():
            srcs = {r[0] for r in self.db.execute("SELECT DISTINCT source FROM measurements WHERE fingerprint=?", (fp,))}
            out.append((fp, srcs.pop() if len(srcs) == 1 and srcs & {"imported", "synthetic"} else "measured"))
        return out

    def targets(self) -> list[dict]:
        """Every target build: fingerprint, name, info (dict), created_at, source."""
        rows = self.db.execute("SELECT fingerprint, name, info, created_at FROM targets ORDER BY created_at").fetchall()
        out = []
        for f, n, i, c in rows:
            try:
                info = json.loads(i)
            except (json.JSONDecodeError, TypeError, RecursionError):
                raise StoreError(f"store {self.path}: target {n!r} ({str(f)[:12]}) has a malformed description "
                                 "(not JSON).") from None
            out.append({"fingerprint": f, "name": n, "info": info, "created_at": c})
        sources = {}
        for t in out:
            sources.update(dict(self._sources_of(t["name"])))
        for t in out:
            t["source"] = sources.get(t["fingerprint"], "measured")
        return out

    def resolve_target(self, name_or_fp: str) -> list[str]:
        """Fingerprints for a target name (all builds) or a fingerprint (prefix)."""
        like = name_or_fp.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = self.db.execute(
            "SELECT fingerprint FROM targets WHERE name=? OR fingerprint LIKE ? ESCAPE '\\' ORDER BY created_at",
            (name_or_fp, like),
        ).fetchall()
        return [r[0] for r in rows]

    def target_fingerprints(self, target: str) -> list[str]:
        """`resolve_target`, but an unknown name is a one-sentence StoreError."""
        fps = self.resolve_target(target)
        if not fps:
            known = sorted({t["name"] for t in self.targets()})
            raise StoreError(
                f"store {self.path} has no measurements for target {target!r}"
                + (f"; it has {', '.join(known)}." if known else "; it is empty.")
            )
        return fps

    # ---- measurements -----------------------------------------------------------
    def _meas_columns(self) -> str:
        """The measurement columns; a store of an older schema, read as it is, has kernel-mode rows only."""
        if self.schema_version >= 3:
            return ", ".join(_MEAS_COLS)
        return ", ".join(_MEAS_COLS_2) + ", 'kernel', 0"

    def done_keys(self, fingerprint: str) -> set[tuple]:
        """Keys (``KernelSpec.key()``) of every stored spec of a build."""
        rows = self.db.execute(
            "SELECT op, shape, qa, qw, mode, out_bits FROM measurements WHERE fingerprint=?", (fingerprint,)
        ).fetchall()
        return {tuple(r) for r in rows}

    def done_among(self, fingerprint: str, keys: Iterable[tuple]) -> set[tuple]:
        """Which of `keys` (``KernelSpec.key()``, a sweep's batch) are stored: reads only those rows."""
        keys = set(keys)
        found: set[tuple] = set()
        for op in sorted({k[0] for k in keys}):
            shapes = sorted({k[1] for k in keys if k[0] == op})
            for i in range(0, len(shapes), 500):
                part = shapes[i:i + 500]
                rows = self.db.execute(
                    "SELECT op, shape, qa, qw, mode, out_bits FROM measurements WHERE fingerprint=? AND op=? AND shape IN "
                    f"({','.join('?' * len(part))})", (fingerprint, op, *part)).fetchall()
                found |= {tuple(r) for r in rows} & keys
        return found

    def get_among(self, fingerprint: str, specs: Iterable[KernelSpec]) -> dict[tuple, Measurement]:
        """The stored measurements of `specs` (a plan's chosen kernels), by ``KernelSpec.key()``."""
        keys = {s.key() for s in specs}
        names = {f: n for f, n in self.db.execute("SELECT fingerprint, name FROM targets")}
        out: dict[tuple, Measurement] = {}
        for op in sorted({k[0] for k in keys}):
            shapes = sorted({k[1] for k in keys if k[0] == op})
            for i in range(0, len(shapes), 500):
                part = shapes[i:i + 500]
                rows = self.db.execute(
                    f"SELECT {self._meas_columns()} FROM measurements WHERE fingerprint=? AND op=? AND shape IN "
                    f"({','.join('?' * len(part))})", (fingerprint, op, *part)).fetchall()
                for r in rows:
                    m = self._decode(r, names)
                    if m.spec.key() in keys:
                        out[m.spec.key()] = m
        return out

    def put(self, m: Measurement, replace: bool = False) -> bool:
        """Insert one measurement in its own transaction.  Returns False if the key existed."""
        verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
        try:
            raw = json.dumps([float(v) for v in m.raw], allow_nan=False)
        except (TypeError, ValueError):
            raise MicoError(f"measurement {m.spec} has non-numeric or non-finite raw values.") from None
        cur = self._write(
            f"{verb} INTO measurements (fingerprint, op, shape, qa, qw, status, unit, raw, median, iqr, min,"
            " checksum_ok, error, seed, retries, reconnects, wall_s, source, created_at, mode, out_bits)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                m.fingerprint, m.spec.op, m.spec.shape_str, m.spec.qa, m.spec.qw, m.status, m.unit,
                raw, m.median, m.iqr, m.min,
                None if m.checksum_ok is None else int(m.checksum_ok), m.error, m.seed,
                m.retries, m.reconnects, m.wall_s, m.source, m.created_at, m.spec.mode, m.spec.out_bits,
            ),
        )
        return cur.rowcount > 0

    def put_many(self, ms: Iterable[Measurement], replace: bool = False) -> int:
        """All-or-nothing insert (used by import)."""
        n = 0
        self._write("BEGIN IMMEDIATE")
        try:
            for m in ms:
                n += self.put(m, replace=replace)
            self._write("COMMIT")
        except BaseException:
            self._rollback()
            raise
        return n

    def import_rows(self, fingerprint: str, name: str, op: str, info: dict, ms: list[Measurement],
                    source: str = "imported") -> int:
        """Replace target `name`'s `op` rows by `ms` in one transaction (the import of one file).

        The target's description keeps one provenance entry per op
        (``info["imported"][op]``); the refusal of `add_target` applies, so
        imported rows never join a measured target.  Returns the rows stored.
        """
        if any(m.fingerprint != fingerprint or m.spec.op != op for m in ms):
            raise MicoError(f"every imported row must be a {op} kernel of target {name!r}.")
        self._write("BEGIN IMMEDIATE")
        try:
            old = self.db.execute("SELECT info FROM targets WHERE fingerprint=?", (fingerprint,)).fetchone()
            merged: dict = {}
            if old is not None:
                try:
                    merged = json.loads(old[0])
                except (json.JSONDecodeError, TypeError):
                    merged = {}
                if not isinstance(merged, dict):
                    merged = {}
            per_op = merged.get("imported") if isinstance(merged.get("imported"), dict) else {}
            merged["imported"] = {**per_op, op: info}
            self.add_target(fingerprint, name, merged, source=source)
            self._write("DELETE FROM measurements WHERE fingerprint=? AND op=?", (fingerprint, op))
            n = sum(self.put(m) for m in ms)
            self._write("COMMIT")
        except BaseException:
            self._rollback()
            raise
        return n

    def _decode(self, r: tuple, names: dict[str, str]) -> Measurement:
        """One measurements row -> Measurement; StoreError naming the row's key when malformed."""
        (rid, fp, op, shape, qa, qw, status, unit, raw, median, iqr, mn, ck, err, seed, retries, reconnects,
         wall_s, source, created_at, mode, out_bits) = r
        try:
            try:
                dims = tuple(int(x) for x in str(shape).split(","))
            except ValueError:
                raise ValueError(f"its shape {shape!r} is not a comma-separated list of integers") from None
            try:
                spec = KernelSpec(op, dims, qa, qw, mode, out_bits)
            except MicoError as e:
                raise ValueError(str(e).rstrip(".")) from None
            try:
                values = json.loads(raw) if raw else []
            except (json.JSONDecodeError, TypeError, RecursionError):
                raise ValueError("its raw values are not valid JSON") from None
            if not isinstance(values, list):
                raise ValueError("its raw values are not a JSON list")
            values = [_number(v, "raw value") for v in values]
            median, iqr, mn = (_number(v, k) for v, k in ((median, "median"), (iqr, "IQR"), (mn, "min")))
            for v, k in ((median, "median"), (iqr, "IQR"), (mn, "min")):
                if v is not None and not math.isfinite(v):
                    raise ValueError(f"its {k} is not finite")
        except ValueError as e:
            raise StoreError(
                f"store {self.path} holds a malformed measurement (row {rid}: {op} [{shape}] {qa}x{qw} of target "
                f"{names.get(fp, '?')} {str(fp)[:12]}): {e}."
            ) from None
        return Measurement(
            spec=spec, fingerprint=fp, status=status, unit=unit, raw=values,
            median=median, iqr=iqr, min=mn, checksum_ok=None if ck is None else bool(ck),
            error=err, seed=seed, retries=retries, reconnects=reconnects, wall_s=wall_s, source=source,
            created_at=created_at, target=names.get(fp),
        )

    def iter_measurements(self, fingerprints: list[str] | None = None, op: str | None = None,
                          status: str | None = None, mode: str | None = None) -> Iterator[Measurement]:
        """Measurements in insertion order, each with its KernelSpec and target name."""
        q = f"SELECT {self._meas_columns()} FROM measurements WHERE 1=1"
        args: list = []
        if fingerprints is not None:
            q += f" AND fingerprint IN ({','.join('?' * len(fingerprints))})"
            args += fingerprints
        if op:
            q += " AND op=?"
            args.append(op)
        if status:
            q += " AND status=?"
            args.append(status)
        if mode and self.schema_version >= 3:
            q += " AND mode=?"
            args.append(mode)
        elif mode and mode != "kernel":
            return
        q += " ORDER BY id"
        names = {f: n for f, n in self.db.execute("SELECT fingerprint, name FROM targets")}
        for r in self.db.execute(q, args).fetchall():
            yield self._decode(r, names)

    def rows(self, target: str | None = None, op: str | None = None, status: str | None = "ok",
             mode: str | None = None) -> list[Measurement]:
        """Measurements of `target` (name or fingerprint prefix; None: all), `op` and `status` (None: any).

        Each has a real `KernelSpec` and its target name; an unknown target is
        a one-sentence StoreError.
        """
        fps = None if target is None else self.target_fingerprints(target)
        return list(self.iter_measurements(fps, op, status, mode))

    def frame(self, target: str | None = None, op: str | None = None, status: str | None = "ok",
              mode: str | None = None):
        """`rows` as a pandas DataFrame (the adapter for reports and the CLI).

        Columns: target, fingerprint, op, shape (str), one column per shape field
        (N, M, K or N, C, H, W, K, KS, S, P, G), qa, qw, value (median), iqr, unit,
        status, checksum_ok, retries, reconnects, source.
        """
        import pandas as pd

        out = []
        for m in self.rows(target, op, status, mode):
            d = {"target": m.target or "?", "fingerprint": m.fingerprint, "op": m.spec.op,
                 "shape": m.spec.shape_str, "qa": m.spec.qa, "qw": m.spec.qw, "mode": m.spec.mode,
                 "out_bits": m.spec.out_bits, "value": m.median,
                 "iqr": m.iqr, "unit": m.unit, "status": m.status, "checksum_ok": m.checksum_ok,
                 "retries": m.retries, "reconnects": m.reconnects, "source": m.source}
            d.update(m.spec.dims)
            out.append(d)
        return pd.DataFrame(out)

    def count(self, fingerprint: str | None = None) -> int:
        if fingerprint:
            return self.db.execute("SELECT COUNT(*) FROM measurements WHERE fingerprint=?", (fingerprint,)).fetchone()[0]
        return self.db.execute("SELECT COUNT(*) FROM measurements").fetchone()[0]

    # ---- whole-model validations ------------------------------------------------
    def add_validation(self, document: dict) -> int:
        """Keep one `mico validate` document (model, target, every scheme); returns its row id."""
        try:
            text = json.dumps(document, sort_keys=True, allow_nan=False)
        except (TypeError, ValueError):
            raise MicoError("the validation document is not JSON-serialisable.") from None
        cur = self._write("INSERT INTO validations (target, model, document, created_at) VALUES (?,?,?,?)",
                          (str(document.get("target", "?")), str(document.get("model", "?")), text, time.time()))
        return int(cur.lastrowid)

    def validations(self, target: str | None = None, model: str | None = None) -> list[dict]:
        """Stored validation documents, oldest first (each with its `id` and `created_at`)."""
        if self.schema_version < 4:
            return []
        sql, args = "SELECT id, document, created_at FROM validations", []
        conds = []
        if target:
            conds.append("target=?")
            args.append(target)
        if model:
            conds.append("model=?")
            args.append(model)
        if conds:
            sql += " WHERE " + " AND ".join(conds)
        out = []
        for rid, text, created in self.db.execute(sql + " ORDER BY id", args):
            d = json.loads(text)
            d.update(id=rid, created_at=created)
            out.append(d)
        return out
