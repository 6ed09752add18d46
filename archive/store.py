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

The code is in parts: :mod:`archive.records` (the dataclasses), :mod:`archive.schema` (tables
and migrations), :mod:`archive.db` (the file, opening checks, row encoding, the connection),
:mod:`archive.store_programs` and :mod:`archive.store_logs` (the queries); this module puts
them together as :class:`Archive` and keeps every name importers use.
"""

from __future__ import annotations

import os
import socket
import sqlite3
from pathlib import Path
from typing import Any

from archive import schema
from archive.db import (
    BUSY_TIMEOUT_MS,
    DB_FILENAME,
    ArchiveError,
    _check_choice,
    _connect,
    _encode,
    _inspect,
    _migrate,
    _now,
    db_path,
)
from archive.records import (
    CAMPAIGN_STATUSES,
    EVALUATION_ROLES,
    HEARTBEAT_SECONDS,
    LLM_ROLES,
    PROGRAM_STATUSES,
    STAGES,
    STALE_SECONDS,
    Campaign,
    Evaluation,
    Failure,
    Job,
    LineageNode,
    LLMCall,
    ProgramRecord,
    ProgramSummary,
    Stage,
    effective_status,
)
from archive.store_logs import LogQueries
from archive.store_programs import SORT_KEYS, ProgramQueries, source_hash

# What importers take from here: the archive was once this one module, and its names stay.
__all__ = [
    "BUSY_TIMEOUT_MS", "CAMPAIGN_STATUSES", "DB_FILENAME", "EVALUATION_ROLES", "HEARTBEAT_SECONDS", "LLM_ROLES",
    "PROGRAM_STATUSES", "SORT_KEYS", "STAGES", "STALE_SECONDS", "Archive", "ArchiveError", "Campaign", "Evaluation",
    "Failure", "Job", "LLMCall", "LineageNode", "ProgramRecord", "ProgramSummary", "Stage", "db_path",
    "effective_status", "open", "open_archive", "source_hash",
]


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


# --- the archive --------------------------------------------------------------------------


class Archive(ProgramQueries, LogQueries):
    """A campaign's archive. Use :func:`open_archive` (``archive.open``) to get one.

    Writes are single transactions; reads return frozen dataclasses. Safe to share between the
    threads of one process; close it (or use it as a context manager) when done.
    """

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

