"""The archive: one SQLite database per campaign directory (``<dir>/archive.db``).

It holds campaigns (config, seed, status, spend), programs (code, normalised hash, behaviour
fingerprint, parents, proposer, prompt and response, tokens, fitness), evaluations (one row per
task x seed x learning rate, with metrics and a downsampled loss curve), failures and LLM calls.

Durability. The database runs in WAL mode with ``synchronous=FULL`` and every write is one
transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``). A committed transaction is in the WAL file
and fsynced before ``COMMIT`` returns, so it survives a SIGKILL of the writer *and* a power
loss (``NORMAL`` would survive the kill but could lose the last commits on power loss; the
fsync costs ~0.2 ms per commit here, nothing next to an evaluation).

Concurrency. One connection per :class:`Archive`, guarded by a lock, so a campaign's threads can
share it. Other processes (``discover archive list`` while a campaign runs) read through their
own connection: WAL lets readers proceed while a writer commits, and ``busy_timeout`` makes a
second writer wait instead of failing.

Opening never harms a file it cannot use: the file is first inspected through a read-only
connection, and anything missing, corrupt, foreign or newer than this code raises
:class:`ArchiveError` before a writable connection exists. Read-only archives
(``readonly=True``, what the browsing CLI uses) never write; an older schema is then migrated in
an in-memory copy.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import math
import os
import socket
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from archive import schema
from sandbox.contract import FAILURE_REASONS, CandidateError, program_hash

DB_FILENAME = "archive.db"
BUSY_TIMEOUT_MS = 10_000

CAMPAIGN_STATUSES = ("running", "finished", "stopped", "failed")
PROGRAM_STATUSES = ("pending", "evaluated", "failed", "duplicate", "rejected")
STAGES = ("screen", "full", "confirmed")
EVALUATION_ROLES = ("select", "measure", "screen")
LLM_ROLES = ("proposer", "critic", "retry")
SORT_KEYS = {
    "fitness": "fitness IS NULL, fitness DESC, id ASC",
    "date": "id DESC",
}
"""``programs(sort=...)`` choices -> SQL order (newest first for date; ids grow with time)."""


class ArchiveError(Exception):
    """The archive cannot do what was asked: missing, corrupt, foreign or newer file, unknown id."""


# --- records ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Campaign:
    """One campaign: its config, seed, status, spend and best program."""

    id: int
    name: str
    created_at: str
    updated_at: str
    config: dict
    seed: int
    status: str
    spend: dict
    best_program_id: int | None
    pid: int | None = None
    host: str | None = None
    heartbeat_at: str | None = None
    slots: int | None = None  # the executor's concurrent jobs, as the last session recorded it
    run_seconds: float = 0.0  # seconds run by sessions before the current (or last) one
    run_started_at: str | None = None  # when the current (or last) session began

    @property
    def seconds_run(self) -> float:
        """Wall seconds the campaign has run, over all its sessions (a resumed campaign's
        downtime not counted): earlier sessions, plus the last one up to its last heartbeat."""
        total = self.run_seconds or 0.0
        if self.run_started_at and self.heartbeat_at:
            try:
                total += max(0.0, (datetime.fromisoformat(self.heartbeat_at)
                                   - datetime.fromisoformat(self.run_started_at)).total_seconds())
            except ValueError:
                pass
        return total


HEARTBEAT_SECONDS = 10.0
"""How often a running campaign records that it is alive."""
STALE_SECONDS = 180.0
"""A 'running' campaign whose heartbeat is older than this was stopped without recording it."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: it exists
    except OSError:
        return False
    try:  # a zombie (exited, not yet reaped) is not running a campaign
        with builtins.open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def effective_status(campaign: Campaign, now: datetime | None = None) -> str:
    """The campaign's status as it really is: a campaign recorded as ``running`` whose process is
    gone (same host) or whose heartbeat went stale was killed: ``stopped (killed)``."""
    if campaign.status != "running":
        return campaign.status
    if campaign.pid is not None and campaign.host == socket.gethostname() and not _pid_alive(campaign.pid):
        return "stopped (killed)"
    beat = campaign.heartbeat_at or campaign.updated_at
    try:
        age = ((now or datetime.now(timezone.utc)) - datetime.fromisoformat(beat)).total_seconds()
    except (TypeError, ValueError):
        return campaign.status
    return "stopped (killed)" if age > STALE_SECONDS else "running"


@dataclass(frozen=True)
class ProgramRecord:
    """One archived candidate program and what is known about it."""

    id: int
    campaign_id: int | None
    code: str = field(repr=False)
    hash: str
    fingerprint: list[float] | None = field(repr=False)
    parent_ids: list[int]
    proposer: str
    prompt: str | None = field(repr=False)
    response: str | None = field(repr=False)
    critique: str | None = field(repr=False)
    tokens_in: int
    tokens_out: int
    cost_usd: float
    status: str
    duplicate_of: int | None
    fitness: float | None
    fitness_spread: float | None
    heldout_fitness: float | None
    scores: dict | None
    stage: str | None
    created_at: str
    name: str | None
    meta: dict

    @property
    def confirmed_fitness(self) -> float | None:
        """The fitness re-measured on fresh seeds (would-be new bests only), else None."""
        value = self.meta.get("confirmed_fitness")
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class Evaluation:
    """One run of a program on one task, seed and learning rate."""

    id: int
    program_id: int
    suite: str
    task: str
    task_version: str
    seed: int
    lr: float | None
    role: str
    metrics: dict
    curve: list | None = field(repr=False)
    created_at: str


@dataclass(frozen=True)
class Failure:
    """Why a program failed at some stage (``reason`` is one of ``FAILURE_REASONS``)."""

    id: int
    program_id: int
    stage: str
    reason: str
    message: str
    created_at: str


@dataclass(frozen=True)
class LLMCall:
    """One request to an LLM and its answer (``prompt`` is the messages list)."""

    id: int
    program_id: int | None
    role: str
    model: str
    prompt: Any = field(repr=False)
    response: str | None = field(repr=False)
    tokens_in: int
    tokens_out: int
    cost_usd: float
    cached: bool
    outcome: str
    created_at: str


@dataclass(frozen=True)
class ProgramSummary:
    """What the campaign loop reads of every program, without its code, prompt or JSON blobs
    (:meth:`Archive.summaries`): status, stage, fitness, confirmed fitness, per-task scores."""

    id: int
    status: str
    stage: str | None
    fitness: float | None
    confirmed_fitness: float | None
    proposer: str
    name: str | None
    proposal_index: int | None
    task_scores: dict[str, float] | None  # {task: score} of an evaluated program's scores, else None


@dataclass(frozen=True)
class Job:
    """One sandbox job: a probe, or one task's runs of one stage of a program's evaluation.
    ``seconds`` is its time on a worker (0 when every run came from the run cache), ``waited``
    its time queued for a free worker; ``baseline``: runs of a tuned baseline that this
    evaluation needed first (the tuned baselines are computed inside the first evaluations)."""

    id: int
    campaign_id: int | None
    program_id: int | None
    tier: str  # search | validation | long_horizon | test
    stage: str  # probe | screen | select | measure
    task: str
    job: str  # the sandbox job's name: evaluate | probe
    baseline: bool
    runs: int
    cached_runs: int
    seconds: float
    waited: float | None
    device: str
    worker: str
    ok: bool
    started_at: str


@dataclass(frozen=True)
class Stage:
    """One evaluation of a program on a tier: its wall time (jobs queued and running, scoring)."""

    id: int
    campaign_id: int | None
    program_id: int | None
    tier: str  # search | validation | long_horizon | test
    stage: str  # screen | full (as the evaluator reports it)
    seconds: float
    runs: int
    cached_runs: int
    started_at: str


@dataclass(frozen=True)
class LineageNode:
    """A program and the trees of its parents. ``repeated`` marks an ancestor already shown
    elsewhere in the tree (crossover makes lineage a DAG); its parents are not expanded again."""

    program: ProgramRecord
    parents: list[LineageNode] = field(default_factory=list)
    repeated: bool = False
    missing_parent_ids: list[int] = field(default_factory=list)


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


def source_hash(code: str) -> str:
    """The exact-duplicate key of ``code``: :func:`program_hash` of the normalised program, or,
    for text that does not even parse, a hash of the raw text (so resubmitting it still matches)."""
    try:
        return program_hash(code)
    except CandidateError:
        return "raw:" + hashlib.sha256(code.encode()).hexdigest()[:16]


# --- opening ------------------------------------------------------------------------------


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


def open_archive(path: str | Path, create: bool = False, readonly: bool = False) -> Archive:
    """Open the archive in a campaign directory (or a ``.db`` file).

    ``create=True`` makes the directory and database when missing (a campaign does this);
    otherwise a missing archive is an :class:`ArchiveError`. An older schema is migrated in one
    transaction (in memory when ``readonly``). Raise :class:`ArchiveError` for anything that
    is not a usable archive, without writing to it.
    """
    if create and readonly:
        raise ValueError("an archive cannot be created read-only")
    file = db_path(path)
    if file.is_dir():
        raise ArchiveError(f"{file} is a directory, not an archive database")
    if not file.exists():
        if not create:
            where = f"campaign directory {file.parent}" if file.name == DB_FILENAME else str(file)
            raise ArchiveError(f"no archive at {where} (expected {file}; `discover run` creates one)")
        file.parent.mkdir(parents=True, exist_ok=True)
        conn = _connect(file, "rwc")
        conn.close()
    version = _inspect(file, allow_empty=create)
    if readonly:
        conn = _connect(file, "ro")
        if version < schema.SCHEMA_VERSION:
            memory = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
            memory.row_factory = sqlite3.Row
            conn.backup(memory)
            conn.close()
            conn = memory
            _migrate(conn, file)
        return Archive(file, conn, readonly=True)
    conn = _connect(file, "rw")
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        _migrate(conn, file)
    except sqlite3.Error as exc:
        conn.close()
        raise ArchiveError(f"cannot open archive {file} for writing: {exc}") from None
    return Archive(file, conn, readonly=False)


open = open_archive  # `archive.open(path)`, as the package exposes it


def _migrate(conn: sqlite3.Connection, file: Path) -> None:
    """Bring ``conn`` to the current schema in one transaction (re-checking the version under
    the write lock, so two processes opening an old archive at once migrate it once)."""
    if conn.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version < schema.SCHEMA_VERSION:
            schema.migrate(conn, version)
        conn.execute("COMMIT")
    except BaseException as exc:
        conn.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise ArchiveError(f"migrating archive {file} to schema version {schema.SCHEMA_VERSION} failed: {exc}") from None
        raise


# --- the archive --------------------------------------------------------------------------


class Archive:
    """A campaign's archive. Use :func:`open_archive` (``archive.open``) to get one.

    Writes are single transactions; reads return frozen dataclasses. Safe to share between the
    threads of one process; close it (or use it as a context manager) when done.
    """

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

    # plumbing
    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Archive({str(self.path)!r}{', readonly' if self.readonly else ''})"

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
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise ArchiveError(f"write to archive {self.path} failed: {exc}") from None
                raise

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

    # campaigns
    def create_campaign(self, name: str, config: dict, seed: int) -> int:
        """Record a new running campaign; return its id."""
        now = _now()
        with self._write() as conn:
            return self._insert(conn, "campaigns", dict(
                name=name, created_at=now, updated_at=now, config=config, seed=int(seed),
                status="running", spend={}))

    def _update_campaign(self, campaign_id: int, **values: Any) -> None:
        values = _encode("campaigns", {**values, "updated_at": _now()})
        with self._write() as conn:
            self._require(conn, "campaigns", campaign_id, "campaign")
            sets = ", ".join(f"{name} = ?" for name in values)
            conn.execute(f"UPDATE campaigns SET {sets} WHERE id = ?", [*values.values(), campaign_id])

    def set_campaign_status(self, campaign_id: int, status: str) -> None:
        """Mark a campaign running, finished, stopped or failed (a final status is also the
        session's last heartbeat: its run time ends there)."""
        _check_choice("campaign status", status, CAMPAIGN_STATUSES)
        if status == "running":
            self._update_campaign(campaign_id, status=status)
        else:
            self._update_campaign(campaign_id, status=status, heartbeat_at=_now())

    def set_campaign_runner(self, campaign_id: int, pid: int | None = None, host: str | None = None,
                            slots: int | None = None) -> None:
        """Record the process running the campaign (default: this one) and beat its heart; a new
        session begins (the previous one's run time, up to its last heartbeat, is banked).
        ``slots``: how many jobs its executor runs at once (for idle worker time)."""
        previous = self.campaign(campaign_id)
        banked = previous.seconds_run
        now = _now()
        values: dict[str, Any] = dict(pid=os.getpid() if pid is None else int(pid),
                                      host=socket.gethostname() if host is None else host, heartbeat_at=now,
                                      run_seconds=banked, run_started_at=now)
        if slots is not None:
            values["slots"] = int(slots)
        self._update_campaign(campaign_id, **values)

    def heartbeat(self, campaign_id: int) -> None:
        """Record that the campaign's process is still alive (see :func:`effective_status`)."""
        self._update_campaign(campaign_id, heartbeat_at=_now())

    def update_spend(self, campaign_id: int, spend: dict) -> None:
        """Replace the campaign's running totals (tokens, dollars, evaluations, seconds, ...)."""
        self._update_campaign(campaign_id, spend=dict(spend))

    def set_best_program(self, campaign_id: int, program_id: int | None) -> None:
        """Record the campaign's confirmed best program."""
        if program_id is not None:
            self.program(program_id)
        self._update_campaign(campaign_id, best_program_id=program_id)

    def campaign(self, campaign_id: int | None = None) -> Campaign:
        """The campaign with ``campaign_id``, or the most recent one."""
        if campaign_id is None:
            found = self._records("campaigns", order="id DESC", limit=1)
            if not found:
                raise ArchiveError(f"archive {self.path} holds no campaign yet")
        else:
            found = self._records("campaigns", "id = ?", (campaign_id,))
            if not found:
                raise ArchiveError(f"no campaign with id {campaign_id} in {self.path}")
        return found[0]

    def campaigns(self) -> list[Campaign]:
        """All campaigns in this archive, oldest first."""
        return self._records("campaigns")

    # programs
    def add_program(self, code: str, *, campaign_id: int | None = None, parent_ids: Iterable[int] = (),
                    proposer: str = "", status: str = "pending", hash: str | None = None,
                    **fields_: Any) -> int:
        """Store a program; return its id.

        ``hash`` defaults to :func:`source_hash` of ``code``. Any other column of
        :class:`ProgramRecord` (``prompt``, ``response``, ``critique``, ``tokens_in``,
        ``fingerprint``, ``name``, ``meta``, ``duplicate_of``, ...) may be given by keyword.
        Parents must already be archived.
        """
        parent_ids = [int(p) for p in parent_ids]
        values = dict(code=code, campaign_id=campaign_id, parent_ids=parent_ids, proposer=proposer,
                      status=status, hash=hash or source_hash(code), created_at=_now(), meta={})
        values.update(self._program_fields(fields_))
        _check_choice("program status", values["status"], PROGRAM_STATUSES)
        with self._write() as conn:
            for parent in parent_ids:
                self._require(conn, "programs", parent, "parent program")
            if campaign_id is not None:
                self._require(conn, "campaigns", campaign_id, "campaign")
            pid = self._insert(conn, "programs", values)
            self._summaries_dirty.add(pid)
            return pid

    @staticmethod
    def _program_fields(values: dict[str, Any]) -> dict[str, Any]:
        settable = set(_COLUMNS["programs"]) - {"id", "created_at"}
        unknown = sorted(set(values) - settable)
        if unknown:
            raise ValueError(f"programs have no field {', '.join(unknown)}; settable: {', '.join(sorted(settable))}")
        if "status" in values:
            _check_choice("program status", values["status"], PROGRAM_STATUSES)
        if values.get("stage") is not None:
            _check_choice("stage", values["stage"], STAGES)
        if "fingerprint" in values:
            # The length and L1 norm are indexed: the prefilter of behavioural de-duplication.
            from archive.dedup import l1_norm

            fingerprint = values["fingerprint"]
            fingerprint = None if fingerprint is None else [float(x) for x in fingerprint]
            values = {**values, "fingerprint": fingerprint,
                      "fingerprint_size": None if fingerprint is None else len(fingerprint),
                      "fingerprint_l1": None if fingerprint is None else l1_norm(fingerprint)}
        return values

    def update_program(self, program_id: int, **fields_: Any) -> None:
        """Set columns of a program (status, fitness, scores, stage, fingerprint, ...)."""
        values = _encode("programs", self._program_fields(fields_))
        if not values:
            return
        with self._write() as conn:
            self._require(conn, "programs", program_id, "program")
            sets = ", ".join(f"{name} = ?" for name in values)
            conn.execute(f"UPDATE programs SET {sets} WHERE id = ?", [*values.values(), program_id])
            self._summaries_dirty.add(int(program_id))

    def program(self, program_id: int) -> ProgramRecord:
        """The program with ``program_id``; :class:`ArchiveError` if there is none."""
        found = self._records("programs", "id = ?", (int(program_id),))
        if not found:
            count = self._query("SELECT count(*), min(id), max(id) FROM programs")[0]
            known = f"ids {count[1]}..{count[2]}" if count[0] else "it holds no programs"
            raise ArchiveError(f"no program with id {program_id} in {self.path} ({known})")
        return found[0]

    def programs(self, top: int | None = None, sort: str = "fitness",
                 status: str | Sequence[str] | None = None) -> list[ProgramRecord]:
        """Programs, best first (``sort="fitness"``, unscored last) or newest first (``"date"``),
        optionally only those with the given status(es), at most ``top`` of them."""
        if sort not in SORT_KEYS:
            raise ValueError(f"sort must be one of {', '.join(SORT_KEYS)}; got {sort!r}")
        where, params = self._status_filter(status)
        return self._records("programs", where, params, order=SORT_KEYS[sort], limit=top)

    def program_count(self, status: str | Sequence[str] | None = None) -> int:
        """How many programs (with the given status(es), if any) the archive holds."""
        where, params = self._status_filter(status)
        return self._query("SELECT count(*) FROM programs" + (f" WHERE {where}" if where else ""), params)[0][0]

    @staticmethod
    def _status_filter(status: str | Sequence[str] | None) -> tuple[str, list[str]]:
        statuses = [status] if isinstance(status, str) else list(status or ())
        for s in statuses:
            _check_choice("program status", s, PROGRAM_STATUSES)
        return (f"status IN ({', '.join('?' for _ in statuses)})" if statuses else ""), statuses

    def best(self, n: int = 1) -> list[ProgramRecord]:
        """The ``n`` evaluated programs with the highest fitness."""
        # SORT_KEYS' order without its "fitness IS NULL" term (constant here), so that SQLite
        # walks the (status, fitness) index instead of reading and sorting every program row.
        return self._records("programs", "status = 'evaluated' AND fitness IS NOT NULL",
                             order="fitness DESC, id ASC", limit=n)

    _SUMMARY_SQL = (
        "SELECT id, status, stage, fitness, proposer, name, "
        "CASE WHEN json_type(meta, '$.proposal_index') = 'integer' THEN json_extract(meta, '$.proposal_index') END, "
        "CASE WHEN json_type(meta, '$.confirmed_fitness') IN ('integer', 'real') "
        "THEN json_extract(meta, '$.confirmed_fitness') END FROM programs")
    _SUMMARY_SCORES_SQL = ("SELECT p.id, j.key, json_extract(j.value, '$.score') FROM programs p, json_each(p.scores) j "
                           "WHERE p.status = 'evaluated' AND p.scores IS NOT NULL")

    def summaries(self) -> dict[int, ProgramSummary]:
        """Every program's :class:`ProgramSummary`, by id. A campaign reads these for every
        proposal (parents, the best so far, the next proposal index), so they are cached: each
        call reads back only the programs this archive wrote since the last one, so its cost
        does not grow with the archive (a change by another process rebuilds the cache)."""
        with self._lock:
            conn = self._live()
            try:
                version = conn.execute("PRAGMA data_version").fetchone()[0]
                if version != self._summaries_version:
                    self._summaries, where, params = {}, "", []
                else:
                    dirty = sorted(self._summaries_dirty)
                    if not dirty:
                        return dict(self._summaries)
                    where = f" WHERE id IN ({', '.join('?' for _ in dirty)})"
                    params = dirty
                self._summaries_dirty = set()
                self._summaries_version = version
                rows = conn.execute(self._SUMMARY_SQL + where, params).fetchall()
                scores: dict[int, dict[str, float]] = {}
                score_where = where.replace(" WHERE id", " AND p.id")
                for pid, task, score in conn.execute(self._SUMMARY_SCORES_SQL + score_where, params):
                    scores.setdefault(pid, {})[task] = score
            except sqlite3.DatabaseError as exc:
                self._summaries_version = None
                raise ArchiveError(f"reading archive {self.path} failed: {exc}") from None
            for pid, status, stage, fitness, proposer, name, index, confirmed in rows:
                self._summaries[pid] = ProgramSummary(
                    id=pid, status=status, stage=stage, fitness=fitness,
                    confirmed_fitness=None if confirmed is None else float(confirmed), proposer=proposer, name=name,
                    proposal_index=index, task_scores=scores.get(pid))
            return dict(self._summaries)

    def winner(self) -> ProgramRecord | None:
        """The archive's best program, as a campaign announces it: the highest fitness confirmed
        on fresh seeds; if nothing was confirmed, the highest fitness measured on the full suite
        (then at any stage). Ties go to the older program. None before anything is evaluated."""
        evaluated = [r for r in self.summaries().values() if r.status == "evaluated" and r.fitness is not None]
        confirmed = [r for r in evaluated if r.confirmed_fitness is not None]
        if confirmed:
            best = max(confirmed, key=lambda r: (r.confirmed_fitness, -r.id))
        else:
            full = [r for r in evaluated if r.stage != "screen"] or evaluated
            if not full:
                return None
            best = max(full, key=lambda r: (r.fitness, -r.id))
        return self.program(best.id)

    def _original(self, record: ProgramRecord) -> ProgramRecord:
        """Follow ``duplicate_of`` links to the program that was actually evaluated."""
        seen = {record.id}
        while record.duplicate_of is not None and record.duplicate_of not in seen:
            seen.add(record.duplicate_of)
            record = self.program(record.duplicate_of)
        return record

    def find_by_hash(self, code_hash: str, exclude_id: int | None = None) -> ProgramRecord | None:
        """The original (non-duplicate) program whose normalised hash is ``code_hash``
        (ignoring program ``exclude_id``, e.g. the candidate itself once stored)."""
        found = self._records("programs", "hash = ? AND id IS NOT ?", (code_hash, exclude_id), limit=1)
        return self._original(found[0]) if found else None

    def find_by_fingerprint(self, fingerprint: Sequence[float], rtol: float | None = None,
                            atol: float | None = None, exclude_id: int | None = None) -> ProgramRecord | None:
        """The original program whose behaviour fingerprint equals ``fingerprint`` within
        tolerance (default: :data:`archive.dedup.RTOL`, :data:`~archive.dedup.ATOL`), ignoring
        ``exclude_id``; None when nothing matches."""
        from archive.dedup import ATOL, RTOL, first_match, l1_bounds, l1_norm

        rtol = RTOL if rtol is None else rtol
        atol = ATOL if atol is None else atol
        l1 = l1_norm(fingerprint)
        if l1 is None:
            return None
        low, high = l1_bounds(l1, len(fingerprint), rtol, atol)
        rows = self._query("SELECT id, fingerprint FROM programs WHERE fingerprint_size = ? "
                           "AND fingerprint_l1 BETWEEN ? AND ? AND id IS NOT ? ORDER BY id",
                           (len(fingerprint), low, high, exclude_id))
        candidates = [(row["id"], json.loads(row["fingerprint"])) for row in rows]
        match = first_match(fingerprint, candidates, rtol=rtol, atol=atol)
        return None if match is None else self._original(self.program(match))

    def children(self, program_id: int) -> list[ProgramRecord]:
        """Programs that name ``program_id`` among their parents."""
        return self._records("programs", "id IN (SELECT p.id FROM programs p, json_each(p.parent_ids) j "
                                         "WHERE j.value = ?)", (int(program_id),))

    def lineage(self, program_id: int, max_depth: int = 64) -> LineageNode:
        """The tree of ``program_id``'s ancestors (each node's ``parents`` are its parents' trees)."""
        shown: set[int] = set()

        def build(record: ProgramRecord, depth: int) -> LineageNode:
            if record.id in shown or depth >= max_depth:
                return LineageNode(record, repeated=record.id in shown)
            shown.add(record.id)
            parents, missing = [], []
            for parent_id in record.parent_ids:
                found = self._records("programs", "id = ?", (parent_id,))
                if found:
                    parents.append(build(found[0], depth + 1))
                else:
                    missing.append(parent_id)
            return LineageNode(record, parents, missing_parent_ids=missing)

        return build(self.program(program_id), 0)

    # evaluations
    def add_evaluation(self, program_id: int, *, suite: str, task: str, seed: int, role: str,
                       metrics: dict, lr: float | None = None, task_version: str = "",
                       curve: Sequence[float] | None = None) -> int:
        """Store one run (task x seed x lr) of a program; return its id."""
        return self.add_evaluations([dict(program_id=program_id, suite=suite, task=task, seed=seed, role=role,
                                          metrics=metrics, lr=lr, task_version=task_version, curve=curve)])[0]

    def add_evaluations(self, rows: Iterable[dict[str, Any]]) -> list[int]:
        """Store several runs in one transaction (all or none); return their ids.
        Each row has the keyword arguments of :meth:`add_evaluation`."""
        now = _now()
        prepared = []
        allowed = set(_COLUMNS["evaluations"]) - {"id", "created_at"}
        for row in rows:
            unknown = sorted(set(row) - allowed)
            if unknown:
                raise ValueError(f"evaluations have no field {', '.join(unknown)}")
            _check_choice("evaluation role", row.get("role"), EVALUATION_ROLES)
            curve = row.get("curve")
            prepared.append({"lr": None, **row, "task_version": str(row.get("task_version", "")), "created_at": now,
                             "curve": None if curve is None else [float(x) for x in curve]})
        with self._write() as conn:
            ids = []
            for values in prepared:
                self._require(conn, "programs", values["program_id"], "program")
                ids.append(self._insert(conn, "evaluations", values))
            return ids

    def evaluations(self, program_id: int, suite: str | None = None) -> list[Evaluation]:
        """The runs of a program (on one suite, if given), in the order they were stored."""
        if suite is None:
            return self._records("evaluations", "program_id = ?", (program_id,))
        return self._records("evaluations", "program_id = ? AND suite = ?", (program_id, suite))

    def cached_evaluation(self, code_hash: str, task: str, task_version: str | int, seed: int,
                          lr: float | None) -> Evaluation | None:
        """A stored run of any program with normalised hash ``code_hash`` on exactly this task
        version, seed and lr (the evaluation cache key), or None."""
        found = self._records(
            "evaluations",
            "task = ? AND task_version = ? AND seed = ? AND lr IS ? "
            "AND program_id IN (SELECT id FROM programs WHERE hash = ?)",
            (task, str(task_version), seed, lr, code_hash), limit=1)
        return found[0] if found else None

    # failures
    def add_failure(self, program_id: int, *, stage: str, reason: str, message: str = "") -> int:
        """Record why a program failed; ``reason`` is one of ``sandbox.contract.FAILURE_REASONS``."""
        _check_choice("failure reason", reason, FAILURE_REASONS)
        with self._write() as conn:
            self._require(conn, "programs", program_id, "program")
            return self._insert(conn, "failures", dict(program_id=program_id, stage=stage, reason=reason,
                                                       message=message, created_at=_now()))

    def failures(self, program_id: int | None = None) -> list[Failure]:
        """Failure records, of one program or of all."""
        if program_id is None:
            return self._records("failures")
        return self._records("failures", "program_id = ?", (program_id,))

    def failure_counts(self, failed_only: bool = False) -> dict[str, int]:
        """How many programs failed for each reason (a program counts once per reason, however
        many of its runs failed), most common first. ``failed_only``: only programs that failed
        outright, not scored programs that failed on some task."""
        where = " WHERE program_id IN (SELECT id FROM programs WHERE status = 'failed')" if failed_only else ""
        rows = self._query(f"SELECT reason, count(DISTINCT program_id) AS n FROM failures{where} "
                           "GROUP BY reason ORDER BY n DESC, reason")
        return {row["reason"]: row["n"] for row in rows}

    # LLM calls
    def add_llm_call(self, *, role: str, model: str, prompt: Any, response: str | None = None,
                     program_id: int | None = None, tokens_in: int = 0, tokens_out: int = 0,
                     cost_usd: float = 0.0, cached: bool = False, outcome: str = "") -> int:
        """Record one LLM request (``prompt``: the messages list) and its answer; return its id."""
        _check_choice("LLM call role", role, LLM_ROLES)
        with self._write() as conn:
            if program_id is not None:
                self._require(conn, "programs", program_id, "program")
            return self._insert(conn, "llm_calls", dict(
                program_id=program_id, role=role, model=model, prompt=prompt, response=response,
                tokens_in=int(tokens_in), tokens_out=int(tokens_out), cost_usd=float(cost_usd),
                cached=cached, outcome=outcome, created_at=_now()))

    def llm_calls(self, program_id: int | None = None) -> list[LLMCall]:
        """LLM calls, of one program or of all, oldest first."""
        if program_id is None:
            return self._records("llm_calls")
        return self._records("llm_calls", "program_id = ?", (program_id,))

    # timings
    def add_jobs(self, rows: Iterable[dict[str, Any]]) -> list[int]:
        """Store sandbox jobs (keyword fields of :class:`Job` but ``id``) in one transaction."""
        allowed = set(_COLUMNS["jobs"]) - {"id"}
        prepared = []
        for row in rows:
            unknown = sorted(set(row) - allowed)
            if unknown:
                raise ValueError(f"jobs have no field {', '.join(unknown)}")
            prepared.append({"started_at": _now(), **row})
        if not prepared:
            return []
        with self._write() as conn:
            return [self._insert(conn, "jobs", values) for values in prepared]

    def add_stage(self, *, program_id: int | None, tier: str, stage: str, seconds: float, runs: int = 0,
                  cached_runs: int = 0, campaign_id: int | None = None, started_at: str | None = None) -> int:
        """Store the wall time of one evaluation of a program on a tier."""
        with self._write() as conn:
            return self._insert(conn, "stages", dict(
                campaign_id=campaign_id, program_id=program_id, tier=tier, stage=stage, seconds=float(seconds),
                runs=int(runs), cached_runs=int(cached_runs), started_at=started_at or _now()))

    def jobs(self, program_id: int | None = None, campaign_id: int | None = None) -> list[Job]:
        """Sandbox jobs, of one program or one campaign (or all), oldest first."""
        return self._timing_records("jobs", program_id, campaign_id)

    def stages(self, program_id: int | None = None, campaign_id: int | None = None) -> list[Stage]:
        """Evaluation wall times, of one program or one campaign (or all), oldest first."""
        return self._timing_records("stages", program_id, campaign_id)

    def _timing_records(self, table: str, program_id: int | None, campaign_id: int | None) -> list:
        if program_id is not None:
            return self._records(table, "program_id = ?", (int(program_id),))
        if campaign_id is not None:
            return self._records(table, "campaign_id = ?", (int(campaign_id),))
        return self._records(table)

    # integrity
    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check``: ``"ok"`` or the first problems found."""
        return "\n".join(row[0] for row in self._query("PRAGMA integrity_check"))
