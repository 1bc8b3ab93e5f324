"""The store, imports, exports and JSON documents under hostile input (issue 9, "Store").

Every case of the issue becomes a test: a store of a newer schema, an
unrelated SQLite file, an old layout, malformed rows, absurd imported values,
imported rows colliding with measured ones, and a full disk (a real one: a
tiny tmpfs where mounting is permitted, and always RLIMIT_FSIZE in a
subprocess, which makes writes fail with EFBIG).  Each must end in one
sentence and a non-zero exit, with the files it was given left as they were.
"""

from __future__ import annotations

import json
import os
import resource
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.documents import atomic_write, read_document
from harness.errors import DiskFullError, MicoError, UserError
from harness.spec import KernelSpec
from harness.store import APPLICATION_ID, SCHEMA_VERSION, Measurement, Store
from mico_cli import mico

MM_HEADER = "N,M,K,QA,QW,Time\n"
PAIRS = [(8, 8), (4, 4), (2, 2), (1, 1)]
SHAPES = [(1, 16, 64), (1, 32, 64), (4, 8, 8)]

# the schema every store written before schema 2 has (harness/store.py at schema 1), kept verbatim as a fixture
SCHEMA_1 = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS targets (
    fingerprint TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    info TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS measurements (
    id INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL REFERENCES targets(fingerprint),
    op TEXT NOT NULL,
    shape TEXT NOT NULL,
    qa INTEGER NOT NULL,
    qw INTEGER NOT NULL,
    status TEXT NOT NULL,
    unit TEXT,
    raw TEXT,
    median REAL,
    iqr REAL,
    min REAL,
    checksum_ok INTEGER,
    error TEXT,
    seed INTEGER,
    retries INTEGER NOT NULL DEFAULT 0,
    reconnects INTEGER NOT NULL DEFAULT 0,
    wall_s REAL,
    source TEXT NOT NULL DEFAULT 'measured',
    created_at REAL NOT NULL,
    UNIQUE (fingerprint, op, shape, qa, qw)
);
CREATE INDEX IF NOT EXISTS meas_target_op ON measurements (fingerprint, op);
"""


def one_sentence(msg: str) -> bool:
    msg = msg.strip()
    return bool(msg) and "\n" not in msg and msg.endswith(".") and "Traceback" not in msg


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def cli_error(res) -> str:
    """The one `error:` line of a failed CLI run (exit 2, no traceback)."""
    assert res.exit_code == 2, (res.exit_code, res.output, res.exception)
    err = res.stderr.strip()
    assert err.startswith("error: ") and one_sentence(err), err
    return err


def files_of(path: Path) -> tuple[bytes, bytes]:
    """What a store holds: the db file's bytes and its write-ahead log's (b"" when there is none).

    (Opening a WAL database at all makes SQLite create an empty -wal and a -shm
    index, which hold no data; they are not a modification.)
    """
    wal = Path(str(path) + "-wal")
    return path.read_bytes(), wal.read_bytes() if wal.exists() else b""


def measured_store(path: Path, target: str = "host", fp: str = "f" * 16, unit: str = "ns") -> Path:
    with Store(path) as st:
        st.add_target(fp, target, {"isa": "x86_64"})
        st.put_many(Measurement(KernelSpec("matmul", s, a, w), fp, unit=unit, raw=[v, v], median=v, iqr=0.0, min=v)
                    for s in SHAPES for a, w in PAIRS for v in [float(100 * a * w + s[1])])
    return path


def v1_store(path: Path) -> Path:
    """A store exactly as the schema-1 code wrote it: WAL, meta.schema_version = 1, one measured and one imported target."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(SCHEMA_1)
    db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', '1')")
    db.execute("INSERT INTO targets VALUES ('a' || hex(randomblob(7)), 'host', '{}', 1.0)")
    fp_host = db.execute("SELECT fingerprint FROM targets").fetchone()[0]
    db.execute("INSERT INTO targets VALUES ('imp0000000000000', 'mico-board', '{\"imported_from\": \"x.csv\"}', 2.0)")
    for i, (s, (a, w)) in enumerate([(s, p) for s in SHAPES for p in PAIRS]):
        shape = ",".join(map(str, s))
        db.execute("INSERT INTO measurements (fingerprint, op, shape, qa, qw, status, unit, raw, median, iqr, min,"
                   " source, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                   (fp_host, "matmul", shape, a, w, "ok", "ns", "[5.0]", 5.0 + i, 0.0, 5.0, "measured", 3.0))
        db.execute("INSERT INTO measurements (fingerprint, op, shape, qa, qw, status, unit, raw, median, iqr, min,"
                   " source, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                   ("imp0000000000000", "matmul", shape, a, w, "ok", "ns", "[7.0]", 7.0 + i, 0.0, 7.0, "imported", 3.0))
    db.close()
    return path


# ---- schema versions -------------------------------------------------------------------------
def test_newer_schema_is_refused_and_left_unchanged(tmp_path):
    db = measured_store(tmp_path / "s.db")
    with sqlite3.connect(db) as c:
        c.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    c.close()
    before = files_of(db)
    for readonly in (False, True):
        with pytest.raises(MicoError, match="schema version 99, newer than the version") as e:
            Store(db, readonly=readonly)
        assert one_sentence(str(e.value))
    err = cli_error(cli("report", "--store", db, "-o", tmp_path / "r"))
    assert "newer" in err and "upgrade mico-hil" in err
    csv = tmp_path / "m.csv"
    csv.write_text(MM_HEADER + "1,16,64,8,8,1000\n")
    cli_error(cli("import", csv, "--target", "other", "--op", "matmul", "--store", db))
    cli_error(cli("export", "--store", db, "--target", "host", "--op", "matmul", "-o", tmp_path / "x.csv"))
    assert files_of(db) == before
    assert not (tmp_path / "x.csv").exists()


def test_schema_1_store_is_read_as_is_and_migrated_on_write(tmp_path, caplog):
    db = v1_store(tmp_path / "old.db")
    before = files_of(db)
    # read-only: read as it is, never modified
    with Store(db, readonly=True) as st:
        assert st.schema_version == 1
        rows = st.rows("host", "matmul")
        assert len(rows) == 12 and all(isinstance(m.spec, KernelSpec) and m.target == "host" for m in rows)
        assert {t["name"]: t["source"] for t in st.targets()} == {"host": "measured", "mico-board": "imported"}
    assert files_of(db) == before
    res = cli("report", "--store", db, "-o", tmp_path / "r")
    assert res.exit_code == 0, (res.output, res.exception)
    assert files_of(db) == before
    # a writer migrates, with one sentence, keeping every row
    caplog.clear()
    with Store(db) as st:
        assert st.schema_version == SCHEMA_VERSION
        assert len(st.rows()) == 24
        assert {t["name"]: t["source"] for t in st.targets()} == {"host": "measured", "mico-board": "imported"}
    warnings = [r.getMessage() for r in caplog.records if "migrated" in r.getMessage()]
    assert len(warnings) == 1 and one_sentence(warnings[0]) and f"schema version 1 to {SCHEMA_VERSION}" in warnings[0]
    c = sqlite3.connect(db)
    assert c.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    assert c.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert c.execute("SELECT source FROM targets WHERE name='mico-board'").fetchone()[0] == "imported"
    c.close()
    # migrated once: opening again says nothing
    caplog.clear()
    Store(db).close()
    assert not [r for r in caplog.records if "migrated" in r.getMessage()]
    # and the migrated provenance is enforced: measured rows cannot join the imported name
    with Store(db) as st, pytest.raises(MicoError, match="imported rows under the target name 'mico-board'"):
        st.add_target("b" * 16, "mico-board", {})


def test_unrelated_sqlite_file_is_refused_and_never_modified(tmp_path):
    other = tmp_path / "app.db"
    c = sqlite3.connect(other)
    c.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    c.execute("INSERT INTO users (name) VALUES ('ada')")
    c.commit()
    c.close()
    before = files_of(other)
    assert other.read_bytes()[18:20] == b"\x01\x01"          # rollback journal, not WAL
    with pytest.raises(MicoError, match="not a mico-hil store") as e:
        Store(other)
    assert one_sentence(str(e.value)) and "users" in str(e.value)
    csv = tmp_path / "m.csv"
    csv.write_text(MM_HEADER + "1,16,64,8,8,1000\n")
    for res in (cli("import", csv, "--target", "t", "--op", "matmul", "--store", other),
                cli("report", "--store", other, "-o", tmp_path / "r"),
                cli("fit", "--store", other, "--target", "t", "--op", "matmul", "-o", tmp_path / "p.json"),
                cli("export", "--store", other, "--target", "t", "--op", "matmul", "-o", tmp_path / "e.csv")):
        assert "not a mico-hil store" in cli_error(res)
    assert files_of(other) == before                         # no table added, not switched to WAL
    assert not Path(str(other) + "-wal").exists() and not Path(str(other) + "-journal").exists()
    c = sqlite3.connect(other)
    assert [r[0] for r in c.execute("SELECT name FROM sqlite_master")] == ["users"]
    assert c.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    c.close()


def test_other_application_id_and_garbage_files(tmp_path):
    tagged = tmp_path / "tagged.db"
    c = sqlite3.connect(tagged)
    c.execute("PRAGMA application_id = 1234")
    c.commit()
    c.close()
    before = tagged.read_bytes()
    with pytest.raises(MicoError, match="another application"):
        Store(tagged)
    assert tagged.read_bytes() == before
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"SQLite format 3\x00" + b"\xff" * 200)
    with pytest.raises(MicoError) as e:
        Store(junk)
    assert one_sentence(str(e.value)) and junk.read_bytes()[:16] == b"SQLite format 3\x00"
    folder = tmp_path / "dir.db"
    folder.mkdir()
    with pytest.raises(MicoError, match="is a folder"):
        Store(folder)


@pytest.mark.parametrize("damage,match", [
    ("ALTER TABLE measurements DROP COLUMN reconnects", "no column reconnects"),
    ("DROP TABLE targets", "no table 'targets'"),
    ("UPDATE meta SET value='two' WHERE key='schema_version'", "unreadable schema version"),
    ("DELETE FROM meta", "not a mico-hil store"),
])
def test_old_or_unknown_layout_is_one_sentence(tmp_path, damage, match):
    db = measured_store(tmp_path / "s.db")
    c = sqlite3.connect(db)
    c.execute(damage)
    c.commit()
    c.close()
    before = files_of(db)
    for readonly in (True, False):
        with pytest.raises(MicoError, match=match) as e:
            Store(db, readonly=readonly)
        assert one_sentence(str(e.value)), str(e.value)
    assert match in cli_error(cli("report", "--store", db, "-o", tmp_path / "r"))
    assert files_of(db) == before


# ---- malformed rows ----------------------------------------------------------------------------
@pytest.mark.parametrize("column,value,match", [
    ("shape", "1,x,3", "shape '1,x,3' is not a comma-separated list of integers"),
    ("shape", "1,2", "matmul shape needs 3 numbers"),
    ("qa", 9, "qa=9 is not a supported bit-width"),
    ("raw", "[1.0, 2", "raw values are not valid JSON"),
    ("raw", '{"a": 1}', "not a JSON list"),
    ("raw", '["fast"]', "is not a number"),
    ("median", "12 ns", "median '12 ns' is not a number"),
])
def test_malformed_row_is_reported_with_its_key(tmp_path, column, value, match):
    db = measured_store(tmp_path / "s.db")
    c = sqlite3.connect(db)
    rid = c.execute("SELECT id FROM measurements WHERE shape='1,32,64' AND qa=4").fetchone()[0]
    c.execute(f"UPDATE measurements SET {column}=? WHERE id=?", (value, rid))
    c.commit()
    c.close()
    with Store(db, readonly=True) as st:
        with pytest.raises(MicoError) as e:
            st.rows("host", "matmul")
    msg = str(e.value)
    assert match in msg and f"row {rid}" in msg and "host" in msg and one_sentence(msg), msg
    for res in (cli("export", "--store", db, "--target", "host", "--op", "matmul", "-o", tmp_path / "x.csv"),
                cli("fit", "--store", db, "--target", "host", "--op", "matmul", "-o", tmp_path / "p.json"),
                cli("report", "--store", db, "-o", tmp_path / "r")):
        assert f"row {rid}" in cli_error(res)


def test_malformed_target_description(tmp_path):
    db = measured_store(tmp_path / "s.db")
    c = sqlite3.connect(db)
    c.execute("UPDATE targets SET info='{not json'")
    c.commit()
    c.close()
    assert "malformed description" in cli_error(cli("report", "--store", db, "-o", tmp_path / "r"))


# ---- import validation ----------------------------------------------------------------------------
@pytest.mark.parametrize("row,match", [
    ("100000000000000000000000,4,4,8,8,10", "N=100000000000000000000000 is out of range"),
    ("4294967296,1,4,8,8,10", "N=4294967296 is out of range"),
    ("4294967297,1,4,8,8,10", "N=4294967297 is out of range"),
    ("1e30,4,4,8,8,10", "N=1e30 is out of range"),
    ("1,2147483648,4,8,8,10", "M=2147483648 is out of range"),
    ("1,-4,4,8,8,10", "M=-4 is out of range"),
    ("1,4,4,8,8,1e300", "Time=1e300 is not a plausible latency"),
    ("1,4,4,8,8,inf", "Time=inf is not a positive latency"),
    ("1,4,4,8,8,-0.0", "not a positive latency"),
    ('1,4,"4,8,8,10', "unterminated quote"),
    ('1,4,"4\n",8,8,10', "spans several lines"),
    ('1,4,"4"x,8,8,10', "malformed quoting"),
    ("1,4,4_0,8,8,10", "K='4_0' is not an integer"),
    ("1,4,0x10,8,8,10", "K='0x10' is not an integer"),
])
def test_import_refuses_absurd_rows_with_the_line_number(tmp_path, row, match):
    db = measured_store(tmp_path / "s.db", target="host")
    csv = tmp_path / "bad.csv"
    csv.write_text(MM_HEADER + "1,16,64,8,8,1000\n" + row + "\n")
    err = cli_error(cli("import", csv, "--target", "mico-board", "--op", "matmul", "--store", db))
    assert match in err and f"line 3 of {csv}" in err, err
    with Store(db, readonly=True) as st:
        assert [t["name"] for t in st.targets()] == ["host"] and st.count() == 12


def test_imported_rows_carry_provenance_and_a_fingerprint_of_their_own(tmp_path):
    db = measured_store(tmp_path / "s.db", target="host")
    csv = tmp_path / "mm.csv"
    csv.write_text(MM_HEADER + "".join(f"{s[0]},{s[1]},{s[2]},{a},{w},{1000 * a * w}\n"
                                       for s in SHAPES for a, w in PAIRS))
    res = cli("import", csv, "--target", "mico-board", "--op", "matmul", "--store", db, "--unit", "cycles")
    assert res.exit_code == 0, res.output
    with Store(db, readonly=True) as st:
        t = {x["name"]: x for x in st.targets()}
        imp = t["mico-board"]
        assert imp["source"] == "imported" and t["host"]["source"] == "measured"
        assert imp["fingerprint"] != t["host"]["fingerprint"]
        prov = imp["info"]["imported"]["matmul"]
        assert prov["file"] == str(csv.resolve()) and len(prov["sha256"]) == 64 and prov["rows"] == 12
        rows = st.rows("mico-board", "matmul")
        assert len(rows) == 12 and {m.source for m in rows} == {"imported"} and {m.unit for m in rows} == {"cycles"}
        assert len(st.rows("host", "matmul")) == 12
    # importing the op again replaces that import, it does not add to it
    csv.write_text(MM_HEADER + "1,16,64,8,8,1234\n")
    assert cli("import", csv, "--target", "mico-board", "--op", "matmul", "--store", db).exit_code == 0
    with Store(db, readonly=True) as st:
        assert [m.median for m in st.rows("mico-board", "matmul")] == [1234.0]


def test_import_under_a_measured_target_name_is_refused(tmp_path):
    db = measured_store(tmp_path / "s.db", target="host")
    csv = tmp_path / "mm.csv"
    csv.write_text(MM_HEADER + "".join(f"{s[0]},{s[1]},{s[2]},{a},{w},{1000 * a * w}\n"
                                       for s in SHAPES for a, w in PAIRS))
    err = cli_error(cli("import", csv, "--target", "host", "--op", "matmul", "--store", db))
    assert "already holds measured rows under the target name 'host'" in err
    with Store(db, readonly=True) as st:
        assert st.count() == 12 and [t["name"] for t in st.targets()] == ["host"]
    out = tmp_path / "host.csv"
    assert cli("export", "--store", db, "--target", "host", "--op", "matmul", "--format", "mico-csv",
               "-o", out).exit_code == 0
    assert len(out.read_text().splitlines()) == 1 + 12            # 12 rows, not 24
    # the other way round: a measured build cannot join an imported name either
    assert cli("import", csv, "--target", "board", "--op", "matmul", "--store", db).exit_code == 0
    with Store(db) as st, pytest.raises(MicoError, match="imported rows under the target name 'board'"):
        st.add_target("c" * 16, "board", {"hello": {}})


def test_export_of_several_builds_as_mico_csv_is_refused(tmp_path):
    db = measured_store(tmp_path / "s.db", target="host", fp="1" * 16)
    measured_store(db, target="host", fp="2" * 16)
    err = cli_error(cli("export", "--store", db, "--target", "host", "--op", "matmul", "--format", "mico-csv",
                        "-o", tmp_path / "x.csv"))
    assert "2 builds" in err
    assert cli("export", "--store", db, "--target", "1111", "--op", "matmul", "--format", "mico-csv",
               "-o", tmp_path / "x.csv").exit_code == 0


def test_absurd_times_in_a_store_do_not_crash_fit_or_report(tmp_path):
    """1e300 can still reach a store (written by other code); fit refuses it, the report shows it."""
    db = tmp_path / "s.db"
    with Store(db) as st:
        st.add_target("e" * 16, "weird", {})
        ms = []
        for s in SHAPES:
            for a, w in [(1, 1), (2, 2), (4, 4), (8, 8), (8, 2)]:
                v = 1e300 if (s, a) == (SHAPES[0], 8) else (1e-300 if (s, a) == (SHAPES[1], 1) else 100.0 * a * w)
                ms.append(Measurement(KernelSpec("matmul", s, a, w), "e" * 16, unit="ns", raw=[v], median=v,
                                      iqr=0.0, min=v))
        st.put_many(ms)
    assert "implausible" in cli_error(cli("fit", "--store", db, "--target", "weird", "--op", "matmul",
                                          "-o", tmp_path / "p.json"))
    res = cli("report", "--store", db, "-o", tmp_path / "r", "--json")
    assert res.exit_code == 0, (res.output, res.exception)
    assert (tmp_path / "r" / "index.html").is_file()
    from proxy.model import LatencyProxy, save_proxies
    specs = [m.spec for m in ms]
    p = LatencyProxy("matmul", model="gbrt").fit(specs, [1e20 * (i + 1) for i in range(len(specs))], cv=False)
    save_proxies({"matmul": p}, tmp_path / "p.json")
    res = cli("report", "--store", db, "--proxy", tmp_path / "p.json", "-o", tmp_path / "r2")
    assert res.exit_code == 0, (res.output, res.exception)


# ---- a full disk ------------------------------------------------------------------------------------
@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A real 192 KiB file system (ENOSPC), where mounting is permitted (root in a container)."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=192k", "tmpfs", str(mnt)], capture_output=True,
                           timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        pytest.skip("cannot run mount")
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode(errors='replace').strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=30)


def _fill(folder: Path) -> None:
    """Fill the file system of `folder` to the last byte."""
    fd = os.open(folder / f"filler-{uuid.uuid4().hex}", os.O_WRONLY | os.O_CREAT)
    try:
        for size in (65536, 4096, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)


def _limit_fsize(n: int):
    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (n, n))
    return apply


def test_atomic_write_on_a_full_disk_keeps_the_old_file(tiny_tmpfs):
    target = tiny_tmpfs / "doc.json"
    atomic_write(target, "old contents\n")
    _fill(tiny_tmpfs)
    with pytest.raises(DiskFullError, match="^disk full: cannot write") as e:
        atomic_write(target, "x" * 300_000)
    assert one_sentence(str(e.value))
    assert target.read_text() == "old contents\n"
    assert not list(tiny_tmpfs.glob(".doc.json.*"))          # no temporary left behind


def test_export_to_a_full_disk_says_disk_full_and_keeps_the_old_file(tmp_path, tiny_tmpfs):
    db = measured_store(tmp_path / "s.db")
    out = tiny_tmpfs / "mm.csv"
    out.write_text("previous export\n")
    _fill(tiny_tmpfs)
    for fmt in ("mico-csv", "csv", "parquet"):
        err = cli_error(cli("export", "--store", db, "--target", "host", "--op", "matmul", "--format", fmt,
                            "-o", out))
        assert err.startswith("error: disk full:"), err
        assert out.read_text() == "previous export\n"
    assert sorted(p.name for p in tiny_tmpfs.iterdir() if not p.name.startswith("filler")) == ["mm.csv"]


def test_import_on_a_full_disk_says_disk_full_and_keeps_the_store(tiny_tmpfs):
    db = tiny_tmpfs / "s.db"
    measured_store(db)
    csv = tiny_tmpfs / "mm.csv"
    csv.write_text(MM_HEADER + "".join(f"1,{m},{k},{a},{w},{m * k * a}\n" for m in range(1, 40)
                                       for k in (8, 16, 32) for a, w in PAIRS))
    _fill(tiny_tmpfs)
    err = cli_error(cli("import", csv, "--target", "mico-board", "--op", "matmul", "--store", db))
    assert err.startswith("error: disk full:") and "format" not in err, err
    with Store(db, readonly=True) as st:
        assert st.count() == 12 and [t["name"] for t in st.targets()] == ["host"]
    # a new store on the full disk leaves no 0-byte file behind
    err = cli_error(cli("import", csv, "--target", "x", "--op", "matmul", "--store", tiny_tmpfs / "new.db"))
    assert "disk full" in err
    assert not list(tiny_tmpfs.glob("new.db*"))


def test_sqlite_disk_full_mid_sweep_keeps_committed_rows(tiny_tmpfs):
    db = tiny_tmpfs / "s.db"
    with Store(db) as st:
        st.add_target("f" * 16, "host", {})
        n = 0
        with pytest.raises(DiskFullError) as e:
            for m in range(1, 100_000):
                st.put(Measurement(KernelSpec("matmul", (1, m, 8), 8, 8), "f" * 16, unit="ns", raw=[1.0] * 40,
                                   median=1.0, error="x" * 300))
                n += 1
    assert one_sentence(str(e.value)) and n > 0
    with Store(db, readonly=True) as st:
        assert st.count() == n


def test_export_past_the_file_size_limit_keeps_the_old_file(tmp_path):
    """EFBIG (RLIMIT_FSIZE) is a full disk too; works without mount rights."""
    db = measured_store(tmp_path / "s.db")
    out = tmp_path / "mm.csv"
    out.write_text("previous export\n")
    r = mico("export", "--store", db, "--target", "host", "--op", "matmul", "--format", "csv", "-o", out,
             check=False, preexec_fn=_limit_fsize(200))
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.startswith("error: disk full:") and one_sentence(r.stderr), r.stderr
    assert out.read_text() == "previous export\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".mm.csv")] == []


def test_import_past_the_file_size_limit_keeps_the_store(tmp_path):
    db = measured_store(tmp_path / "s.db")
    with sqlite3.connect(db) as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()
    size = max(p.stat().st_size for p in tmp_path.glob("s.db*"))
    csv = tmp_path / "mm.csv"
    csv.write_text(MM_HEADER + "".join(f"1,{m},{k},{a},{w},{m * k * a}\n" for m in range(1, 60)
                                       for k in (8, 16, 32) for a, w in PAIRS))
    r = mico("import", csv, "--target", "mico-board", "--op", "matmul", "--store", db, check=False,
             preexec_fn=_limit_fsize(size + 8192))
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.startswith("error: disk full:") and one_sentence(r.stderr), r.stderr
    with Store(db, readonly=True) as st:
        assert st.count() == 12 and [t["name"] for t in st.targets()] == ["host"]


# ---- versioned JSON documents ----------------------------------------------------------------------
@pytest.mark.parametrize("content,match", [
    (None, "does not exist"),
    ("{oops", "is not valid JSON"),
    (b"\xff\xfe\x00garbage", "not a text file"),
    ("[1, 2]", "is not a mico-thing file"),
    (json.dumps({"format": "other", "version": 1}), "its format is 'other'"),
    (json.dumps({"format": "mico-thing"}), "has no integer 'version'"),
    (json.dumps({"format": "mico-thing", "version": 7}), "version 7, newer than the version 2"),
    (json.dumps({"format": "mico-thing", "version": 0}), "no longer reads"),
])
def test_read_document_errors_are_one_sentence(tmp_path, content, match):
    p = tmp_path / "doc.json"
    if isinstance(content, bytes):
        p.write_bytes(content)
    elif content is not None:
        p.write_text(content)
    with pytest.raises(UserError, match=match) as e:
        read_document(p, "mico-thing", 2, oldest=1)
    assert one_sentence(str(e.value)) and str(p) in str(e.value) and isinstance(e.value, ValueError)


def test_read_document_accepts_its_versions_and_atomic_write_replaces(tmp_path):
    p = tmp_path / "sub" / "doc.json"
    atomic_write(p, json.dumps({"format": "mico-thing", "version": 1, "x": 1}))
    assert read_document(p, "mico-thing", 2, oldest=1)["x"] == 1
    atomic_write(p, json.dumps({"format": "mico-thing", "version": 2, "x": 2}).encode())
    assert read_document(p, "mico-thing", 2, oldest=1)["x"] == 2
    assert oct(p.stat().st_mode & 0o777) != oct(0o600)       # the mode open() would give, not mkstemp's
    assert [q.name for q in p.parent.iterdir()] == ["doc.json"]
    with pytest.raises(UserError, match="is a folder"):
        atomic_write(tmp_path / "sub", "x")


def test_library_errors_are_value_errors_and_name_no_cli_flag(tmp_path):
    from harness.errors import MicoError as Base
    assert issubclass(UserError, ValueError) and UserError is Base
    with pytest.raises(ValueError) as e:
        Store(tmp_path / "missing.db", readonly=True)
    assert "--" not in str(e.value) and "`mico" not in str(e.value)
    with pytest.raises(ValueError) as e:
        KernelSpec("matmul", (1, 2, 3), 9, 8)
    assert str(e.value) == "qa=9 is not a supported bit-width; use one of 1, 2, 3, 4, 5, 6, 7, 8."


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
