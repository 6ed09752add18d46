"""The archive's SQLite file: where it lives, connecting to it, checking it before any write,
migrating it, how records are encoded into rows, and the locked connection with one-transaction
writes that :class:`archive.store.Archive` is built on.

Opening never harms a file it cannot use: the file is first inspected through a read-only
connection (:func:`_inspect`), and anything missing, corrupt, foreign or newer than this code
raises :class:`ArchiveError` before a writable connection exists.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from archive import schema
from archive.records import (
    Campaign,
    Evaluation,
    Failure,
    Job,
    LLMCall,
    ProgramRecord,
    ProgramSummary,
    Stage,
)

DB_FILENAME = "archive.db"
BUSY_TIMEOUT_MS = 10_000


class ArchiveError(Exception):
    """The archive cannot do what was asked: missing, corrupt, foreign or newer file, unknown id."""


_RECORDS = {
    "campaigns": Campaign,
    "programs": ProgramRecord,
    "evaluations": Evaluation,
    "failures": Failure,
    "llm_calls": LLMCall,
    "jobs": Job,
    "stages": Stage,
}
_COLUMNS = {table: tuple(f.name for f in fields(record)) for table, record in _RECORDS.items()}
_BOOL_COLUMNS = {"llm_calls": ("cached",), "jobs": ("baseline", "ok")}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _check_choice(what: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{what} must be one of {', '.join(choices)}; got {value!r}")


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as None: JSON has no such numbers (Python would write
    ``Infinity``, which other JSON readers, SQLite's json functions among them, reject)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _encode(table: str, values: dict[str, Any]) -> dict[str, Any]:
    out = dict(values)
    for column in schema.JSON_COLUMNS[table]:
        if column in out and out[column] is not None:
            out[column] = json.dumps(_finite(out[column]), allow_nan=False)
    for column in _BOOL_COLUMNS.get(table, ()):
        if column in out:
            out[column] = int(bool(out[column]))
    return out


def _decode(table: str, row: sqlite3.Row) -> Any:
    values = {name: row[name] for name in _COLUMNS[table]}
    for column in schema.JSON_COLUMNS[table]:
        if values[column] is not None:
            values[column] = json.loads(values[column])
    for column in _BOOL_COLUMNS.get(table, ()):
        values[column] = bool(values[column])
    return _RECORDS[table](**values)


def db_path(path: str | Path) -> Path:
    """The database file for ``path``: a campaign directory's ``archive.db``, or the file itself."""
    path = Path(path).expanduser()
    if path.is_dir() or (not path.exists() and path.suffix != ".db"):
        return path / DB_FILENAME
    return path


def _uri(path: Path, mode: str) -> str:
    quoted = str(path.resolve()).replace("%", "%25").replace("?", "%3F").replace("#", "%23")
    return f"file:{quoted}?mode={mode}"


def _connect(path: Path, mode: str) -> sqlite3.Connection:
    conn = sqlite3.connect(_uri(path, mode), uri=True, isolation_level=None, check_same_thread=False,
                           timeout=BUSY_TIMEOUT_MS / 1000)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return conn


def _inspect(path: Path, allow_empty: bool) -> int:
    """The schema version of the archive at ``path``, checked through a read-only connection."""
    try:
        conn = _connect(path, "ro")
    except sqlite3.Error as exc:
        raise ArchiveError(f"cannot open archive {path}: {exc}") from None
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    except sqlite3.DatabaseError as exc:
        raise ArchiveError(f"{path} is not a readable archive database ({exc})") from None
    finally:
        conn.close()
    if app_id == 0 and version == 0 and not tables:
        if allow_empty:
            return 0
        raise ArchiveError(f"{path} is an empty database, not an archive (a campaign creates one with `discover run`)")
    if app_id != schema.APPLICATION_ID:
        raise ArchiveError(f"{path} is an SQLite database but not an optimizer-discovery archive")
    if version > schema.SCHEMA_VERSION:
        raise ArchiveError(
            f"archive {path} has schema version {version}, newer than this optimizer-discovery "
            f"understands ({schema.SCHEMA_VERSION}); upgrade optimizer-discovery to read it")
    return version


def _migrate(conn: sqlite3.Connection, file: Path) -> None:
    """Bring ``conn`` to the current schema in one transaction (re-checking the version under
    the write lock, so two processes opening an old archive at once migrate it once)."""
    if conn.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    with _committed(conn, f"migrating archive {file} to schema version {schema.SCHEMA_VERSION} failed"):
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version < schema.SCHEMA_VERSION:
            schema.migrate(conn, version)


@contextmanager
def _committed(conn: sqlite3.Connection, failed: str) -> Iterator[sqlite3.Connection]:
    """Commit the transaction ``conn`` began when the block ends, or roll it back on any error;
    an SQLite error becomes an :class:`ArchiveError` reading ``"<failed>: <error>"``."""
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException as exc:
        # A Ctrl-C can land just after COMMIT returned: the write is in, nothing is left to roll
        # back, and a ROLLBACK would raise over the KeyboardInterrupt (a traceback, a failed campaign).
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise ArchiveError(f"{failed}: {exc}") from None
        raise


class ArchiveBase:
    """An archive's connection and its plumbing (one write transaction at a time, reads that
    decode rows into records); :class:`archive.store.Archive` adds the queries."""

    def __init__(self, path: Path, conn: sqlite3.Connection, readonly: bool):
        self.path = path
        self.readonly = readonly
        self._conn = conn
        self._lock = threading.RLock()
        # Archive.summaries' cache: refreshed for the programs this connection wrote since the
        # last call (and new ids), rebuilt when another connection committed (data_version).
        self._summaries: dict[int, ProgramSummary] = {}
        self._summaries_dirty: set[int] = set()
        self._summaries_version: int | None = None

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; rolled back on any error."""
        if self.readonly:
            raise ArchiveError(f"archive {self.path} was opened read-only")
        with self._lock:
            conn = self._live()
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise ArchiveError(f"cannot write to archive {self.path}: {exc}") from None
            with _committed(conn, f"write to archive {self.path} failed"):
                yield conn

    def _live(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ArchiveError(f"archive {self.path} is closed")
        return self._conn

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._live().execute(sql, params).fetchall()
            except sqlite3.DatabaseError as exc:
                raise ArchiveError(f"reading archive {self.path} failed: {exc}") from None

    def _records(self, table: str, where: str = "", params: Sequence[Any] = (), order: str = "id ASC",
                 limit: int | None = None) -> list[Any]:
        sql = f"SELECT * FROM {table}" + (f" WHERE {where}" if where else "") + f" ORDER BY {order}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [_decode(table, row) for row in self._query(sql, params)]

    @staticmethod
    def _insert(conn: sqlite3.Connection, table: str, values: dict[str, Any]) -> int:
        values = _encode(table, values)
        names = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        return conn.execute(f"INSERT INTO {table} ({names}) VALUES ({marks})", list(values.values())).lastrowid

    @staticmethod
    def _require(conn: sqlite3.Connection, table: str, row_id: int, what: str) -> None:
        if conn.execute(f"SELECT 1 FROM {table} WHERE id = ?", (row_id,)).fetchone() is None:
            raise ArchiveError(f"no {what} with id {row_id}")

