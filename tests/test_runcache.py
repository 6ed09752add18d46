"""The run cache: records round-trip exactly, a job's runs go in one transaction, and a second
process (another campaign sharing the cache) sees what was committed."""

import math
import sqlite3
from pathlib import Path

from sandbox.runcache import MemoryRunCache, RunCache


def _record(i: int) -> dict:
    return {"losses": [1.0 / (i + 1), math.inf, 0.1], "val_losses": [math.nan], "status": "ok", "stopped_at": None}


def test_put_many_stores_every_record_in_one_transaction(tmp_path: Path) -> None:
    cache = RunCache(tmp_path / "runs.sqlite")
    changes = []
    cache._conn.set_trace_callback(changes.append)  # the statements SQLite runs
    cache.put_many([(f"k{i}", _record(i)) for i in range(5)])
    assert sum(s.strip().upper().startswith("BEGIN") for s in changes) == 1
    assert sum(s.strip().upper().startswith("COMMIT") for s in changes) == 1
    assert len(cache) == 5
    got = cache.get("k3")
    assert got["losses"][:1] == [0.25] and got["losses"][1] == math.inf and math.isnan(got["val_losses"][0])
    cache.put("k3", _record(9))  # a single put replaces
    assert cache.get("k3")["losses"][0] == 0.1 and len(cache) == 5
    cache.close()


def test_another_connection_sees_committed_runs_and_the_file_is_wal(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    cache = RunCache(path)
    cache.put_many([("a", _record(0)), ("b", _record(1))])
    other = RunCache(path)
    assert other.get("a") == cache.get("a") and other.get("missing") is None
    assert (other.hits, other.misses) == (1, 1)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    other.close()
    cache.close()


def test_the_memory_cache_takes_the_same_calls() -> None:
    cache = MemoryRunCache()
    cache.put_many([("a", _record(0)), ("b", _record(1))])
    cache.put("c", _record(2))
    assert len(cache) == 3 and cache.get("b") == _record(1) and cache.get("z") is None
