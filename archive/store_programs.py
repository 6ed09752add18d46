"""The archive's programs: storing and updating them, reading them back (one, a ranking, a
count, the best, every program's summary, the winner), de-duplication lookups (by normalised
hash, by behaviour fingerprint), children and lineage. A part of :class:`archive.store.Archive`.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from typing import Any, Iterable, Sequence

from archive.db import _COLUMNS, ArchiveBase, ArchiveError, _check_choice, _encode, _now
from archive.records import PROGRAM_STATUSES, STAGES, LineageNode, ProgramRecord, ProgramSummary
from sandbox.contract import CandidateError, program_hash

SORT_KEYS = {
    "fitness": "fitness IS NULL, fitness DESC, id ASC",
    "date": "id DESC",
}
"""``programs(sort=...)`` choices -> SQL order (newest first for date; ids grow with time)."""


def source_hash(code: str) -> str:
    """The exact-duplicate key of ``code``: :func:`program_hash` of the normalised program, or,
    for text that does not even parse, a hash of the raw text (so resubmitting it still matches)."""
    try:
        return program_hash(code)
    except CandidateError:
        return "raw:" + hashlib.sha256(code.encode()).hexdigest()[:16]


class ProgramQueries(ArchiveBase):
    """:class:`archive.store.Archive`'s programs."""

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

