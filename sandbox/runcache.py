"""A persistent cache of training runs, so nothing is evaluated twice.

Key: (record format, normalised program hash, task key (name@variant), task version, seed, lr, steps, device kind). The
value is the raw run record a worker sent back (losses, final loss, test metric, status), never
a score: scores are recomputed by the controller from raw losses, so a change of scoring rule
never needs a re-run. Baselines are just the reference programs' entries in the same cache.

One SQLite file (WAL, so several processes may share it); a cache hit costs no budget.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def default_cache_dir() -> Path:
    """``$DISCOVER_CACHE_DIR``, else ``$XDG_CACHE_HOME/optimizer-discovery``, else ``~/.cache/...``."""
    explicit = os.environ.get("DISCOVER_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "optimizer-discovery"


RECORD_FORMAT = 2
"""Bumped when a run record gains fields every scorer needs (2: validation curves), so that no
record of an older format is ever read back as if it had them."""


def run_key(program_hash: str, task: str, task_version: int | str, seed: int, lr: float, steps: int,
            device: str) -> str:
    """``task`` is the task's key (``name`` or ``name@variant``)."""
    kind = "cuda" if device.startswith("cuda") else "cpu"
    return f"r{RECORD_FORMAT}|{program_hash}|{task}|v{task_version}|s{seed}|lr{lr!r}|T{steps}|{kind}"


class RunCache:
    """Thread-safe key -> JSON record store in one SQLite file."""

    def __init__(self, path: str | Path | None = None):
        path = Path(path) if path is not None else default_cache_dir() / "runs.sqlite"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
        with self._lock, self._conn:
            self._conn.execute("PRAGMA journal_mode=WAL")
            # A cache: in WAL mode NORMAL keeps the file consistent through any crash and at worst
            # loses the last commits to a power cut (those runs run again). FULL synced every
            # commit, which cost a campaign's controller more than scoring its runs did.
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("CREATE TABLE IF NOT EXISTS runs (key TEXT PRIMARY KEY, record TEXT NOT NULL)")
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn.execute("SELECT record FROM runs WHERE key = ?", (key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return json.loads(row[0])

    def put(self, key: str, record: dict[str, Any]) -> None:
        self.put_many([(key, record)])

    def put_many(self, items: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """Store several records in one transaction (a job's runs come back together)."""
        rows = [(key, json.dumps(record, allow_nan=True)) for key, record in items]
        with self._lock, self._conn:
            self._conn.executemany("INSERT OR REPLACE INTO runs (key, record) VALUES (?, ?)", rows)

    def __len__(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class MemoryRunCache(RunCache):
    """The same interface held in memory (for `--no-cache` and tests)."""

    def __init__(self) -> None:  # noqa: D107 - deliberately skips the file
        self._data: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self.path = None
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            record = self._data.get(key)
        if record is None:
            self.misses += 1
        else:
            self.hits += 1
        return record

    def put_many(self, items: Iterable[tuple[str, dict[str, Any]]]) -> None:
        with self._lock:
            self._data.update(items)

    def __len__(self) -> int:
        return len(self._data)

    def close(self) -> None:
        return None
