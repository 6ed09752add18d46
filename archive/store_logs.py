"""What the archive logs about programs as they are evaluated: runs (evaluations, also the
evaluation cache), failures, LLM calls, and where the time went (sandbox jobs, stages); and
SQLite's integrity check. A part of :class:`archive.store.Archive`.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from archive.db import _COLUMNS, ArchiveBase, _check_choice, _now
from archive.records import EVALUATION_ROLES, LLM_ROLES, Evaluation, Failure, Job, LLMCall, Stage
from sandbox.contract import FAILURE_REASONS


class LogQueries(ArchiveBase):
    """:class:`archive.store.Archive`'s evaluations, failures, LLM calls and timings."""

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
