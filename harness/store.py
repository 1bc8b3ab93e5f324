"""The results store: one SQLite file, WAL mode, one writer (the coordinator).

Measurements are keyed by (target fingerprint, op, shape, qa, qw).  Each result
is committed on its own, so a sweep killed at any instant loses at most the
kernels that were in flight, and a re-run skips what is already stored.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from .errors import UserError
from .spec import KernelSpec

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS targets (
    fingerprint TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    info TEXT NOT NULL,           -- JSON: HELLO reply, build digests, parameters
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS measurements (
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
    source TEXT NOT NULL DEFAULT 'measured',   -- measured | imported
    created_at REAL NOT NULL,
    UNIQUE (fingerprint, op, shape, qa, qw)
);
CREATE INDEX IF NOT EXISTS meas_target_op ON measurements (fingerprint, op);
"""


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


class Store:
    """SQLite-backed measurement store.  Open with a path; ``:memory:`` works."""

    def __init__(self, path: str | Path, readonly: bool = False):
        self.path = Path(path)
        if readonly and not self.path.exists():
            raise UserError(f"store {self.path} does not exist; run `mico sweep --store {self.path}` first.")
        if not readonly:
            parent = self.path.parent if str(path) != ":memory:" else None
            if parent is not None:
                try:
                    parent.mkdir(parents=True, exist_ok=True)
                except OSError as e:
                    raise UserError(f"cannot create the folder for store {self.path}: {e.strerror}.") from None
        try:
            uri = f"file:{self.path}?mode=ro" if readonly else str(self.path)
            self.db = sqlite3.connect(uri, uri=readonly, timeout=30, isolation_level=None)
            if not readonly:
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
                self.db.executescript(SCHEMA)
                self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            else:
                self.db.execute("SELECT 1 FROM measurements LIMIT 1")
        except sqlite3.DatabaseError as e:
            msg = str(e)
            if "readonly" in msg or "unable to open" in msg:
                raise UserError(f"store {self.path} is not writable ({msg}); choose a path you can write to.") from None
            raise UserError(f"store {self.path} is not a mico-hil SQLite store ({msg}).") from None

    def close(self) -> None:
        self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- targets --------------------------------------------------------------
    def add_target(self, fingerprint: str, name: str, info: dict) -> None:
        self.db.execute(
            "INSERT INTO targets VALUES (?,?,?,?) ON CONFLICT(fingerprint) DO UPDATE SET info=excluded.info",
            (fingerprint, name, json.dumps(info, sort_keys=True), time.time()),
        )

    def targets(self) -> list[dict]:
        rows = self.db.execute("SELECT fingerprint, name, info, created_at FROM targets ORDER BY created_at").fetchall()
        return [{"fingerprint": f, "name": n, "info": json.loads(i), "created_at": c} for f, n, i, c in rows]

    def resolve_target(self, name_or_fp: str) -> list[str]:
        """Fingerprints for a target name (all builds) or a fingerprint (prefix)."""
        rows = self.db.execute(
            "SELECT fingerprint FROM targets WHERE name=? OR fingerprint LIKE ? ORDER BY created_at",
            (name_or_fp, name_or_fp + "%"),
        ).fetchall()
        return [r[0] for r in rows]

    # ---- measurements -----------------------------------------------------------
    def done_keys(self, fingerprint: str) -> set[tuple]:
        rows = self.db.execute(
            "SELECT op, shape, qa, qw FROM measurements WHERE fingerprint=?", (fingerprint,)
        ).fetchall()
        return {tuple(r) for r in rows}

    def done_among(self, fingerprint: str, keys: Iterable[tuple]) -> set[tuple]:
        """Which of `keys` ((op, shape text, qa, qw), a sweep's batch) are stored: reads only those rows."""
        keys = set(keys)
        found: set[tuple] = set()
        for op in sorted({k[0] for k in keys}):
            shapes = sorted({k[1] for k in keys if k[0] == op})
            for i in range(0, len(shapes), 500):
                part = shapes[i:i + 500]
                rows = self.db.execute(
                    "SELECT op, shape, qa, qw FROM measurements WHERE fingerprint=? AND op=? AND shape IN "
                    f"({','.join('?' * len(part))})", (fingerprint, op, *part)).fetchall()
                found |= {tuple(r) for r in rows} & keys
        return found

    def put(self, m: Measurement, replace: bool = False) -> bool:
        """Insert one measurement in its own transaction.  Returns False if the key existed."""
        verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
        cur = self.db.execute(
            f"{verb} INTO measurements (fingerprint, op, shape, qa, qw, status, unit, raw, median, iqr, min,"
            " checksum_ok, error, seed, retries, reconnects, wall_s, source, created_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                m.fingerprint, m.spec.op, m.spec.shape_str, m.spec.qa, m.spec.qw, m.status, m.unit,
                json.dumps(m.raw), m.median, m.iqr, m.min,
                None if m.checksum_ok is None else int(m.checksum_ok), m.error, m.seed,
                m.retries, m.reconnects, m.wall_s, m.source, m.created_at,
            ),
        )
        return cur.rowcount > 0

    def put_many(self, ms: Iterable[Measurement], replace: bool = False) -> int:
        """All-or-nothing insert (used by import)."""
        n = 0
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for m in ms:
                n += self.put(m, replace=replace)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return n

    def iter_measurements(self, fingerprints: list[str] | None = None, op: str | None = None,
                          status: str | None = None) -> Iterator[Measurement]:
        q = ("SELECT fingerprint, op, shape, qa, qw, status, unit, raw, median, iqr, min, checksum_ok, error,"
             " seed, retries, reconnects, wall_s, source, created_at FROM measurements WHERE 1=1")
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
        q += " ORDER BY id"
        for r in self.db.execute(q, args):
            spec = KernelSpec(r[1], tuple(int(x) for x in r[2].split(",")), r[3], r[4])
            yield Measurement(
                spec=spec, fingerprint=r[0], status=r[5], unit=r[6], raw=json.loads(r[7] or "[]"),
                median=r[8], iqr=r[9], min=r[10], checksum_ok=None if r[11] is None else bool(r[11]),
                error=r[12], seed=r[13], retries=r[14], reconnects=r[15], wall_s=r[16], source=r[17],
                created_at=r[18],
            )

    def frame(self, target: str | None = None, op: str | None = None, status: str | None = "ok"):
        """Measurements as a pandas DataFrame.

        Columns: target, fingerprint, op, shape (str), one column per shape field
        (N, M, K or N, C, H, W, K, KS, S, P, G), qa, qw, value (median), iqr, unit,
        status, checksum_ok, retries, reconnects, source.  ``target`` may be a
        target name or a fingerprint prefix; unknown names raise UserError.
        """
        import pandas as pd

        fps = None
        if target is not None:
            fps = self.resolve_target(target)
            if not fps:
                known = sorted({t["name"] for t in self.targets()})
                raise UserError(
                    f"store {self.path} has no measurements for target {target!r}"
                    + (f"; it has {', '.join(known)}." if known else "; it is empty.")
                )
        names = {t["fingerprint"]: t["name"] for t in self.targets()}
        rows = []
        for m in self.iter_measurements(fps, op, status):
            d = {"target": names.get(m.fingerprint, "?"), "fingerprint": m.fingerprint, "op": m.spec.op,
                 "shape": m.spec.shape_str, "qa": m.spec.qa, "qw": m.spec.qw, "value": m.median,
                 "iqr": m.iqr, "unit": m.unit, "status": m.status, "checksum_ok": m.checksum_ok,
                 "retries": m.retries, "reconnects": m.reconnects, "source": m.source}
            d.update(m.spec.dims)
            rows.append(d)
        return pd.DataFrame(rows)

    def count(self, fingerprint: str | None = None) -> int:
        if fingerprint:
            return self.db.execute("SELECT COUNT(*) FROM measurements WHERE fingerprint=?", (fingerprint,)).fetchone()[0]
        return self.db.execute("SELECT COUNT(*) FROM measurements").fetchone()[0]
