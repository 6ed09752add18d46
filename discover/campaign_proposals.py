"""A campaign's proposals: each batch's contexts (built from the archive and saved before any
proposal is made), the proposals made from them on threads, and each proposal archived in
proposal order (failed, duplicate or pending) with its LLM calls. Mixed into
:class:`discover.campaign.Campaign`."""

from __future__ import annotations

import json
import os
import random
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from archive.store import ProgramRecord
from discover.campaign_events import Event
from discover.proposers import Proposal, ProposalContext
from discover.selection import select_parents
from sandbox.contract import program_hash

CONTEXTS_FILE = "contexts.json"
"""The contexts of the latest batch, saved before its proposals are made (see Campaign._contexts)."""
_UNPROMPTED_SCORE_FIELDS = frozenset({"val_curve", "val_steps"})
"""Per-task score fields no proposer reads (see Campaign._as_dict)."""


class CampaignProposals:
    """Proposal and batch building of :class:`discover.campaign.Campaign` (its archive, config,
    proposers and spend)."""

    def _as_dict(self, record: ProgramRecord) -> dict[str, Any]:
        failure = None
        if record.status == "failed":
            fails = self.archive.failures(record.id)
            if fails:
                failure = (fails[-1].reason, fails[-1].message)
        # The proposers read each task's training-loss curve (feedback's diagnosis), never its
        # validation curve: leaving that out halves every saved context (parents, top, lineage).
        # A confirmation may still be running when a context is read (discover/confirmations.py):
        # "confirmed" reads as the "full" it was, so no saved context depends on its timing.
        scores = {task: {k: v for k, v in entry.items() if k not in _UNPROMPTED_SCORE_FIELDS}
                  if isinstance(entry, dict) else entry for task, entry in (record.scores or {}).items()}
        return {
            "id": record.id, "code": record.code, "fitness": record.fitness, "fitness_spread": record.fitness_spread,
            "scores": scores, "status": record.status, "failure": failure, "proposer": record.proposer,
            "edits": record.meta.get("edits", []), "name": record.name,
            "stage": "full" if record.stage == "confirmed" else record.stage,
            "parent_ids": record.parent_ids,
        }

    def _selection_pool(self) -> dict[int, dict[str, float]]:
        # Summaries, not records: every proposal reads this, and at thousands of programs
        # loading (and JSON-decoding) every record was most of the controller's time.
        return {s.id: s.task_scores for s in self.archive.summaries().values()
                if s.status == "evaluated" and s.stage in ("full", "confirmed") and s.task_scores}

    def _batch_indices(self, first: int, committed: int) -> list[int]:
        """Proposal indices of the next batch, no more than the evaluation budget has room for
        (``committed``: evaluations already promised to the batch before it)."""
        remaining = self.spend.remaining()["evaluations"]
        size = self.config.search.in_flight
        if remaining is not None:
            size = min(size, int(remaining) - committed)
            if committed == 0:
                size = max(1, size)
        return list(range(first, first + max(0, size)))

    def _generate(self, indices: list[int], contexts) -> list[tuple[str, Proposal]]:
        with ThreadPoolExecutor(max_workers=len(indices), thread_name_prefix="propose") as pool:
            return list(pool.map(lambda item: self._propose(*item), zip(indices, contexts)))

    def _archive_batch(self, indices, contexts, proposals) -> tuple[str | None, list[tuple[int, str]]]:
        exhausted = None
        to_evaluate = []
        seen: dict[str, int] = {}
        for index, (kind, proposal) in zip(indices, proposals):
            pid = self._archive_proposal(index, kind, proposal, seen)
            if proposal.budget_exhausted:
                exhausted = proposal.budget_exhausted
            if pid is not None:
                to_evaluate.append((pid, proposal.source))
            if proposal.context_error and self._context_error is None:
                self._context_error = proposal.context_error
        failures = [p.llm_failure for _, p in proposals if p.source is None and p.llm_failure]
        if proposals and len(failures) == len(proposals):
            self._llm_down, self._llm_failure = self._llm_down + 1, failures[-1]
        else:
            self._llm_down = 0
        return exhausted, to_evaluate

    def _context(self, index: int) -> tuple[str, ProposalContext]:
        rng = random.Random(f"{self.config.seed}:{index}")
        kinds = sorted(self.weights)
        kind = rng.choices(kinds, weights=[self.weights[k] for k in kinds], k=1)[0]
        needed = self.proposers[kind].parents_needed
        if self.config.search.selection == "random":
            # The control: mutations of the seed programs, with no selection at all.
            seeds = sorted(r.id for r in self.archive.programs(status="evaluated") if r.proposer == "reference")
            parent_ids = rng.sample(seeds, min(needed, len(seeds)))
        else:
            parent_ids = select_parents(self._selection_pool(), rng, needed)
        parents = [self._as_dict(self.archive.program(i)) for i in parent_ids]
        top = [self._as_dict(r) for r in self.archive.best(self.config.search.top_k_in_prompt)]
        # Each shown program's own first parent, read now: the context is a fixed snapshot.
        lineage = {}
        for program in parents + top:
            ids = program.get("parent_ids") or []
            lineage[program["id"]] = self._as_dict(self.archive.program(ids[0])) if ids else None
        ctx = ProposalContext(
            parents=parents, parent_of=_lineage_lookup(lineage), top=top,
            failure_counts=self.archive.failure_counts(failed_only=True), rng=rng,
            feedback_mode=self.config.search.feedback, parse_retries=self.config.search.parse_retries,
            mutation_edits=self.config.search.mutation_edits, lineage=lineage)
        return kind, ctx

    def _contexts(self, indices: list[int]) -> list[tuple[str, ProposalContext]]:
        """A batch's contexts, saved before any of its proposals is made: a campaign killed
        before the batch is archived makes the same proposals from them on resume (rebuilt from
        the archive later, they would see results the batch never saw)."""
        contexts = [self._context(i) for i in indices]
        saved = [{"index": i, "kind": kind, "parents": ctx.parents, "top": list(ctx.top), "lineage": list(ctx.lineage.items()),
                  "failure_counts": dict(ctx.failure_counts), "rng": ctx.rng.getstate()}
                 for i, (kind, ctx) in zip(indices, contexts)]
        path = self.directory / CONTEXTS_FILE
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(saved))  # the C encoder: json.dump's chunked one is ~5x slower
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        return contexts

    def _propose(self, index: int, item: tuple[str, ProposalContext]) -> tuple[str, Proposal]:
        kind, ctx = item
        if not ctx.parents:
            return kind, Proposal(kind, [], error=("invalid_code", "no evaluated parent to build on"))
        return kind, self.proposers[kind].propose(ctx)

    def _archive_proposal(self, index: int, kind: str, proposal: Proposal, seen: dict[str, int]) -> int | None:
        """Store a proposal and its LLM calls; return the program id if it should be evaluated."""
        meta = {"proposal_index": index, "edits": proposal.edits}
        common = dict(campaign_id=self.campaign_id, parent_ids=proposal.parent_ids, proposer=kind,
                      prompt=proposal.prompt, response=proposal.response, critique=proposal.critique,
                      tokens_in=sum(c.tokens_in for c in proposal.llm_calls),
                      tokens_out=sum(c.tokens_out for c in proposal.llm_calls),
                      cost_usd=sum(c.cost_usd for c in proposal.llm_calls))
        if proposal.source is None and (proposal.llm_failure or proposal.budget_exhausted):
            # Not the program's fault: no program is made. The calls (answered ones were paid
            # for, failed ones say why) are archived; `--resume` asks again for this index.
            for call in proposal.llm_calls:
                self._store_llm_call(None, call)
            if proposal.llm_failure:
                self.on_event(Event("note", None, f"{kind}: no proposal: {proposal.llm_failure}"))
            else:  # cut by a budget: archived as cancelled calls, no program, no evaluation charged
                self.on_event(Event("cancelled", None, f"{kind}: cancelled by the budget: {proposal.budget_exhausted}"))
            return None
        if proposal.source is None:
            reason, message = proposal.error or ("crashed", "the proposer produced nothing")
            code = proposal.response or ""
            pid = self.archive.add_program(code, status="failed", meta=meta, **common)
            self.archive.add_failure(pid, stage="proposal", reason=reason, message=message)
            self._store_llm_calls(pid, proposal)
            self.on_event(Event("failure", pid, f"{kind}: {reason}: {message}", reason=reason))
            return None
        phash = program_hash(proposal.source)
        original = self.archive.find_by_hash(phash)
        original_id = original.id if original else seen.get(phash)
        if original_id is not None:
            pid = self.archive.add_program(proposal.source, status="duplicate", duplicate_of=original_id, hash=phash,
                                           meta={**meta, "duplicate": "exact"}, **common)
            self._store_llm_calls(pid, proposal)
            self.on_event(Event("duplicate", pid, f"{kind}: same program as #{original_id}"))
            return None
        pid = self.archive.add_program(proposal.source, status="pending", hash=phash, meta=meta, **common)
        seen[phash] = pid
        self._store_llm_calls(pid, proposal)
        self.on_event(Event("proposal", pid, f"{kind} from {', '.join(f'#{p}' for p in proposal.parent_ids)}"))
        return pid

    def _store_llm_calls(self, pid: int, proposal: Proposal) -> None:
        for call in proposal.llm_calls:
            self._store_llm_call(pid, call)

    def _store_llm_call(self, pid: int | None, call) -> None:
        self.archive.add_llm_call(role=call.role, model=call.model, prompt=call.messages, response=call.response,
                                  program_id=pid, tokens_in=call.tokens_in, tokens_out=call.tokens_out,
                                  cost_usd=call.cost_usd, cached=call.cached, outcome=call.outcome)


def _lineage_lookup(lineage: dict[int, dict[str, Any] | None]) -> Callable[[dict[str, Any]], dict[str, Any] | None]:
    return lambda program: lineage.get(program["id"])
