"""A campaign killed at any moment loses nothing that finished (shared/DESIGN.md section 4).

A writer process adds programs and their evaluations in a loop and reports each id once all of
its writes have committed; it is SIGKILLed at a random point (usually in the middle of a
transaction). The archive must then pass SQLite's integrity check, hold every reported program
with all its evaluations, and open normally to carry on writing. Writers are forked from the
test process, so each round costs milliseconds instead of an interpreter start.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
from pathlib import Path

import pytest

import archive
from sandbox.references import reference_source

RUNS_PER_PROGRAM = 12
ROUNDS = 10


def write_until_killed(directory: str, report_fd: int) -> None:
    """The writer: one program, its evaluations, its fitness, the spend; then report the id."""
    source = reference_source("adamw")
    with archive.open(directory, create=True) as store:
        campaign = store.create_campaign("durability", {"seed": 0}, seed=0)
        i = 0
        while True:
            i += 1
            pid = store.add_program(source.replace('"lr": 1e-3', f'"lr": {i}e-5'), campaign_id=campaign,
                                    proposer="offline_mutation", meta={"i": i})
            store.add_evaluations([
                dict(program_id=pid, suite="search", task=f"task{k}", seed=k, lr=1e-3, role="measure",
                     metrics={"final_loss": 1.0 / i, "score": 1.0}, curve=[1.0 / (j + 1) for j in range(200)])
                for k in range(RUNS_PER_PROGRAM)
            ])
            store.update_program(pid, status="evaluated", fitness=1.0 + i / 1000)
            store.update_spend(campaign, {"evaluations": i * RUNS_PER_PROGRAM})
            os.write(report_fd, f"{pid}\n".encode())  # one small write: atomic on a pipe


def run_and_kill(directory: Path, kill_after: int) -> list[int]:
    """Start a writer, SIGKILL it after ``kill_after`` reports; every id it reported."""
    read_fd, write_fd = os.pipe()
    writer = multiprocessing.get_context("fork").Process(target=write_until_killed, args=(str(directory), write_fd))
    writer.start()
    os.close(write_fd)
    ids: list[int] = []
    with os.fdopen(read_fd) as reports:
        try:
            while len(ids) < kill_after:
                line = reports.readline()
                assert line, f"writer died early with exit code {writer.exitcode}"
                ids.append(int(line))
            os.kill(writer.pid, signal.SIGKILL)
            writer.join(timeout=10)
            assert writer.exitcode == -signal.SIGKILL
            ids += [int(line) for line in reports.read().split()]  # committed before the kill landed
        finally:
            if writer.is_alive():
                writer.kill()
                writer.join()
    return ids


@pytest.mark.timeout(60)
def test_sigkilled_writers_lose_nothing_committed(tmp_path: Path) -> None:
    rng = random.Random()
    for round_ in range(ROUNDS):
        directory = tmp_path / f"campaign{round_}"
        ids = run_and_kill(directory, kill_after=rng.randint(1, 40))
        with archive.open(directory) as store:
            assert store.integrity_check() == "ok"
            for pid in ids:
                record = store.program(pid)
                assert record.status == "evaluated" and record.fitness == 1.0 + record.meta["i"] / 1000
                assert len(store.evaluations(pid)) == RUNS_PER_PROGRAM
            # Every transaction is all-or-nothing: no program has a partial set of evaluations.
            for record in store.programs():
                assert len(store.evaluations(record.id)) in (0, RUNS_PER_PROGRAM)
            assert store.campaign().spend["evaluations"] >= len(ids) * RUNS_PER_PROGRAM
            # The campaign carries on: the killed writer left no lock behind.
            pid = store.add_program(reference_source("lion"))
            store.add_evaluation(pid, suite="search", task="t", seed=0, role="select", metrics={})


class _InterruptAfterCommit:
    """A real SQLite connection whose COMMIT is followed by a Ctrl-C, as when SIGINT lands the
    moment the statement returns."""

    def __init__(self, conn):
        self._conn = conn

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction

    def execute(self, sql, *args):
        result = self._conn.execute(sql, *args)
        if sql == "COMMIT":
            raise KeyboardInterrupt
        return result


def test_a_ctrl_c_just_after_commit_stays_a_ctrl_c_and_keeps_the_write(tmp_path: Path) -> None:
    import sqlite3

    from archive.db import _committed

    conn = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    conn.execute("CREATE TABLE t (x INTEGER)")
    conn.execute("BEGIN IMMEDIATE")
    # Not sqlite3.OperationalError from a ROLLBACK:
    with pytest.raises(KeyboardInterrupt), _committed(_InterruptAfterCommit(conn), "write failed") as shim:
        shim.execute("INSERT INTO t VALUES (1)")
    assert conn.execute("SELECT x FROM t").fetchall() == [(1,)]  # committed before the signal
    conn.execute("BEGIN IMMEDIATE")  # and the connection is usable
    # An interrupt inside the block still rolls back:
    with pytest.raises(KeyboardInterrupt), _committed(conn, "write failed"):
        conn.execute("INSERT INTO t VALUES (2)")
        raise KeyboardInterrupt
    assert conn.execute("SELECT x FROM t").fetchall() == [(1,)] and not conn.in_transaction
