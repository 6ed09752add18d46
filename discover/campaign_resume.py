"""What a resumed campaign restores before its loop: the batch a kill left unarchived (made
again from its saved contexts), the programs left pending, the confirmations a kill came
before, and the evaluations already charged. Mixed into :class:`discover.campaign.Campaign`."""

from __future__ import annotations

import json
import random
from typing import Any

from archive.store import ProgramSummary
from discover.campaign_checks import _Measured
from discover.campaign_events import Event
from discover.campaign_proposals import CONTEXTS_FILE, _lineage_lookup
from discover.proposers import ProposalContext


class CampaignResume:
    """Resume bookkeeping of :class:`discover.campaign.Campaign`."""

    def _finish_pending(self) -> None:
        """After a resume: evaluate programs archived but never finished (their runs are cached)."""
        carried = {pid for pid, _ in self._carried}
        pending = [(r.id, r.code) for r in self.archive.programs(status="pending", sort="date")
                   if r.proposer != "reference" and r.id not in carried]
        pending.sort()
        if pending:
            self.on_event(Event("note", text=f"resuming: finishing {len(pending)} pending program(s)"))
            self._evaluate_all(pending, count_budget=True, kind="resumed", confirm=False)

    def _confirm_unchecked(self, evaluated: list[ProgramSummary]) -> None:
        """Run the confirmation a program would have had, where a kill came between its
        evaluation and its confirmation (``evaluated``: the archive's evaluated programs, their
        summaries as they were before the loop began, by id; a record is read only for a program
        that may need confirming, so a large archive costs no decoding). Confirmations run in
        program-id order and each compares with the ones before it, so walking the archive in
        that order finds exactly the programs an uninterrupted campaign would have confirmed (the
        others were checked and lost)."""
        best = {True: float("-inf"), False: float("-inf")}  # per kind (reference or not), as _maybe_confirm sees it
        for summary in evaluated:
            kind = summary.proposer == "reference"
            if summary.confirmed_fitness is not None and summary.fitness is not None:
                best[kind] = max(best[kind], summary.fitness)
            elif summary.stage == "full" and summary.fitness is not None and summary.fitness > best[kind]:
                rec = self.archive.program(summary.id)
                if "validation_failure" in rec.meta:
                    continue
                self._maybe_confirm(rec.id, rec.code, _Measured(rec.fitness))
                if self.archive.program(rec.id).confirmed_fitness is not None:
                    best[kind] = max(best[kind], rec.fitness)

    def _charged_evaluations(self) -> int:
        """Evaluations charged to the budget, counted from the archive: candidates whose
        evaluation finished (scored, or failed while being evaluated). The stored counter may lag
        by one when a kill lands between a result and its spend update."""
        charged = 0
        for rec in self.archive.programs(status=("evaluated", "failed")):
            if rec.proposer == "reference":
                continue
            if rec.status == "evaluated" or any(f.stage not in ("proposal", "probe") for f in self.archive.failures(rec.id)):
                charged += 1
        return charged

    def _saved_batch(self):
        """On resume: the saved batch whose proposals were not all archived, generated again
        from its saved contexts (as the loop's batch generated ahead), or None."""
        path = self.directory / CONTEXTS_FILE
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        first = self._next_index()
        if not isinstance(saved, list) or not all(isinstance(e, dict) and isinstance(e.get("index"), int) for e in saved):
            return None
        missing = [entry for entry in saved if entry["index"] >= first]
        if not missing:
            return self._ahead_of_saved(saved, first)
        if [e["index"] for e in missing] != list(range(first, first + len(missing))):
            return None
        # The batch's proposals archived before the kill are evaluated with the rest of it, as
        # they would have been (the next batch is built while the whole batch is unscored).
        head = {entry["index"] for entry in saved if entry["index"] < first}
        self._carried = [(r.id, r.code) for r in self.archive.programs(status="pending", sort="date")
                         if r.meta.get("proposal_index") in head][::-1]
        indices, contexts = [], []
        for entry in missing:
            rng = random.Random()
            version, state, gauss = entry["rng"]
            rng.setstate((version, tuple(state), gauss))
            lineage = {int(pid): _as_program(parent) for pid, parent in entry["lineage"]}
            ctx = ProposalContext(
                parents=[_as_program(p) for p in entry["parents"]], parent_of=_lineage_lookup(lineage),
                top=[_as_program(p) for p in entry["top"]], failure_counts=entry["failure_counts"], rng=rng,
                feedback_mode=self.config.search.feedback, parse_retries=self.config.search.parse_retries,
                mutation_edits=self.config.search.mutation_edits, lineage=lineage)
            indices.append(entry["index"])
            contexts.append((entry["kind"], ctx))
        self.on_event(Event("note", text=f"resuming: proposals {indices[0]}..{indices[-1]} again from their saved contexts"))
        return (indices, contexts), self._ahead_pool.submit(self._generate, indices, contexts)

    def _ahead_of_saved(self, saved: list[dict], first: int):
        """The saved batch is all archived and (pipelined) a kill came before the batch after it
        was built: build that one now, while the saved batch is still unscored, as it was."""
        if not self.pipeline or not saved or max(e["index"] for e in saved) != first - 1:
            return None
        batch = {e["index"] for e in saved}
        pending = [r for r in self.archive.programs(status="pending") if r.meta.get("proposal_index") in batch]
        if not pending:
            return None
        next_indices = self._batch_indices(first, len(pending))
        if not next_indices:
            return None
        next_contexts = self._contexts(next_indices)
        return (next_indices, next_contexts), self._ahead_pool.submit(self._generate, next_indices, next_contexts)


def _as_program(data: dict[str, Any] | None) -> dict[str, Any] | None:
    """A program dict read back from JSON, as _as_dict made it (its failure is a tuple)."""
    if data is None:
        return None
    return {**data, "failure": tuple(data["failure"]) if data.get("failure") is not None else None}
