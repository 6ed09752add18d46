"""The archive's SQLite schema and its migrations.

The schema version lives in ``PRAGMA user_version``. ``MIGRATIONS[i]`` takes a database at
version ``i`` to version ``i + 1``; a fresh file is version 0 and runs all of them. The store
runs the pending ones inside one transaction, so a crash mid-migration leaves the old version
intact. To change the schema, append a function here; never edit one that has shipped.

``PRAGMA application_id`` marks a file as an archive, so opening some other SQLite database
(or one that merely happens to be empty) gives a clear error instead of a half-created archive.
"""

from __future__ import annotations

import sqlite3
from typing import Callable

APPLICATION_ID = 0x4F505444  # "OPTD": optimizer discovery
"""Written into every archive's header; a database without it is not an archive."""

JSON_COLUMNS = {
    "campaigns": ("config", "spend"),
    "programs": ("fingerprint", "parent_ids", "scores", "meta"),
    "evaluations": ("metrics", "curve"),
    "failures": (),
    "llm_calls": ("prompt",),
    "jobs": (),
    "stages": (),
}
"""Columns that hold JSON text; the store encodes and decodes them."""


def _v1_core_tables(conn: sqlite3.Connection) -> None:
    """Campaigns, programs, evaluations and failures."""
    for statement in (
        """CREATE TABLE campaigns (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            config TEXT NOT NULL DEFAULT '{}',
            seed INTEGER NOT NULL,
            status TEXT NOT NULL DEFAULT 'running',
            spend TEXT NOT NULL DEFAULT '{}',
            best_program_id INTEGER REFERENCES programs(id)
        )""",
        """CREATE TABLE programs (
            id INTEGER PRIMARY KEY,
            campaign_id INTEGER REFERENCES campaigns(id),
            code TEXT NOT NULL,
            hash TEXT NOT NULL,
            fingerprint TEXT,
            fingerprint_size INTEGER,
            fingerprint_l1 REAL,
            parent_ids TEXT NOT NULL DEFAULT '[]',
            proposer TEXT NOT NULL DEFAULT '',
            prompt TEXT,
            response TEXT,
            critique TEXT,
            tokens_in INTEGER NOT NULL DEFAULT 0,
            tokens_out INTEGER NOT NULL DEFAULT 0,
            cost_usd REAL NOT NULL DEFAULT 0,
            status TEXT NOT NULL DEFAULT 'pending',
            duplicate_of INTEGER REFERENCES programs(id),
            fitness REAL,
            fitness_spread REAL,
            heldout_fitness REAL,
            scores TEXT,
            stage TEXT,
            created_at TEXT NOT NULL,
            name TEXT,
            meta TEXT NOT NULL DEFAULT '{}'
        )""",
        "CREATE INDEX programs_hash ON programs(hash)",
        "CREATE INDEX programs_fitness ON programs(fitness)",
        """CREATE TABLE evaluations (
            id INTEGER PRIMARY KEY,
            program_id INTEGER NOT NULL REFERENCES programs(id),
            suite TEXT NOT NULL,
            task TEXT NOT NULL,
            task_version TEXT NOT NULL DEFAULT '',
            seed INTEGER NOT NULL,
            lr REAL,
            role TEXT NOT NULL,
            metrics TEXT NOT NULL DEFAULT '{}',
            curve TEXT,
            created_at TEXT NOT NULL
        )""",
        "CREATE INDEX evaluations_program ON evaluations(program_id)",
        """CREATE TABLE failures (
            id INTEGER PRIMARY KEY,
            program_id INTEGER NOT NULL REFERENCES programs(id),
            stage TEXT NOT NULL,
            reason TEXT NOT NULL,
            message TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL
        )""",
        "CREATE INDEX failures_program ON failures(program_id)",
    ):
        conn.execute(statement)


def _v2_llm_calls(conn: sqlite3.Connection) -> None:
    """Every LLM request and answer (proposer, critic, retry); lookups for cached results and
    for fingerprints (by length and L1 norm, the behavioural de-duplication prefilter)."""
    conn.execute(
        """CREATE TABLE llm_calls (
            id INTEGER PRIMARY KEY,
            program_id INTEGER REFERENCES programs(id),
            role TEXT NOT NULL,
            model TEXT NOT NULL,
            prompt TEXT NOT NULL,
            response TEXT,
            tokens_in INTEGER NOT NULL DEFAULT 0,
            tokens_out INTEGER NOT NULL DEFAULT 0,
            cost_usd REAL NOT NULL DEFAULT 0,
            cached INTEGER NOT NULL DEFAULT 0,
            outcome TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL
        )"""
    )
    conn.execute("CREATE INDEX llm_calls_program ON llm_calls(program_id)")
    conn.execute("CREATE INDEX evaluations_lookup ON evaluations(task, task_version, seed, lr)")
    conn.execute("CREATE INDEX programs_fingerprint ON programs(fingerprint_size, fingerprint_l1)")


def _v3_campaign_runner(conn: sqlite3.Connection) -> None:
    """Who runs a campaign (process id and host) and when it last said so (a heartbeat), so a
    campaign killed without a chance to record it is not shown as running forever."""
    for column in ("pid INTEGER", "host TEXT", "heartbeat_at TEXT"):
        conn.execute(f"ALTER TABLE campaigns ADD COLUMN {column}")


def _v4_timings(conn: sqlite3.Connection) -> None:
    """Where a campaign's time goes. ``jobs``: one row per sandbox job (a probe, or one task's
    runs of one stage: screen, select or measure), with its seconds on a worker, its wait in the
    queue, the device and the worker (process id) that ran it; runs answered from the run cache
    are counted, at zero seconds. ``stages``: one row per evaluation of a program on a tier (the
    wall time of screen or full scoring on search, validation, long_horizon or test). Campaigns
    gain their executor's slot count and the seconds they ran (summed over resumed sessions), so
    idle worker time is slots x run time - busy seconds."""
    for statement in (
        """CREATE TABLE jobs (
            id INTEGER PRIMARY KEY,
            campaign_id INTEGER REFERENCES campaigns(id),
            program_id INTEGER REFERENCES programs(id),
            tier TEXT NOT NULL,
            stage TEXT NOT NULL,
            task TEXT NOT NULL DEFAULT '',
            job TEXT NOT NULL DEFAULT 'evaluate',
            baseline INTEGER NOT NULL DEFAULT 0,
            runs INTEGER NOT NULL DEFAULT 0,
            cached_runs INTEGER NOT NULL DEFAULT 0,
            seconds REAL NOT NULL DEFAULT 0,
            waited REAL,
            device TEXT NOT NULL DEFAULT '',
            worker TEXT NOT NULL DEFAULT '',
            ok INTEGER NOT NULL DEFAULT 1,
            started_at TEXT NOT NULL
        )""",
        "CREATE INDEX jobs_program ON jobs(program_id)",
        "CREATE INDEX jobs_campaign ON jobs(campaign_id)",
        """CREATE TABLE stages (
            id INTEGER PRIMARY KEY,
            campaign_id INTEGER REFERENCES campaigns(id),
            program_id INTEGER REFERENCES programs(id),
            tier TEXT NOT NULL,
            stage TEXT NOT NULL,
            seconds REAL NOT NULL DEFAULT 0,
            runs INTEGER NOT NULL DEFAULT 0,
            cached_runs INTEGER NOT NULL DEFAULT 0,
            started_at TEXT NOT NULL
        )""",
        "CREATE INDEX stages_program ON stages(program_id)",
        "CREATE INDEX stages_campaign ON stages(campaign_id)",
        "ALTER TABLE campaigns ADD COLUMN slots INTEGER",
        "ALTER TABLE campaigns ADD COLUMN run_seconds REAL NOT NULL DEFAULT 0",
        "ALTER TABLE campaigns ADD COLUMN run_started_at TEXT",
    ):
        conn.execute(statement)


def _v5_status_index(conn: sqlite3.Connection) -> None:
    """Programs by status and fitness: a campaign asks for the best evaluated programs and for
    the failed ones every proposal. Without it each such query read every program row, and a
    row holds the code, prompt, response and scores (kilobytes, in SQLite's overflow pages), so
    the controller's time per proposal grew with the archive."""
    conn.execute("CREATE INDEX programs_status_fitness ON programs(status, fitness)")


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_v1_core_tables, _v2_llm_calls, _v3_campaign_runner,
                                                          _v4_timings, _v5_status_index]
"""``MIGRATIONS[i]`` upgrades a database from version ``i`` to ``i + 1``."""

SCHEMA_VERSION = len(MIGRATIONS)
"""The version this code writes and reads."""


def migrate(conn: sqlite3.Connection, from_version: int) -> None:
    """Run the migrations after ``from_version`` on ``conn`` (the caller holds a transaction)."""
    for version in range(from_version, SCHEMA_VERSION):
        MIGRATIONS[version](conn)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
