"""The discovery campaign: propose -> validate -> de-duplicate -> evaluate -> archive -> feed back.

The loop runs in *batches* of ``search.in_flight`` proposals. Every proposal in a batch sees the
archive as it was when the batch began, and results are archived in proposal order, so a
campaign with the offline proposer (or a replayed LLM cache) reruns identically from its seed,
however the threads interleave. Within a batch, LLM requests and sandbox evaluations of
different proposals overlap; a batch's confirmations (validation tier, long-horizon check) run
beside the next batch's evaluation (``discover/confirmations.py``).

Every random choice of proposal ``i`` comes from ``random.Random(f"{seed}:{i}")``: a resumed
campaign continues with exactly the proposals it would have made.

Durability: each program, evaluation, failure and LLM call is written in its own transaction
the moment it exists; a campaign killed at any point resumes with ``--resume`` and re-evaluates
only programs that were still pending (their finished runs come from the run cache).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, Callable

import archive as archive_store
from archive.store import HEARTBEAT_SECONDS, Archive, ArchiveError, ProgramRecord, ProgramSummary
from archive.timings import probe_rows, record_timings
from discover.budget import Budget, Spend
from discover.config import CampaignConfig, seed_source, to_toml
from discover.confirmations import ConfirmationQueue
from discover.devices import resolve_device
from discover.errors import UserError
from discover.proposers import Proposal, ProposalContext, Proposer, make_proposers
from discover.selection import select_parents
from sandbox.contract import program_hash
from sandbox import scoring
from sandbox.evaluate import EvalSettings, EvaluationResult, Evaluator, beats_adamw
from sandbox.executor import ExecutorUnavailable, make_executor
from sandbox.jobbound import TimeBoundExecutor
from sandbox.halving import RECOMMENDED
from sandbox.population_executor import PopulationExecutor
from sandbox.runcache import RunCache
from sandbox.scoring import downsample
from sandbox.tasks import get_task
from sandbox.tasks import suite as suite_tasks

CONFIG_FILE = "config.toml"
CONTEXTS_FILE = "contexts.json"
"""The contexts of the latest batch, saved before its proposals are made (see Campaign._contexts)."""
LLM_KINDS = ("full", "diff", "textgrad", "crossover")
LLM_DOWN_BATCHES = 3
"""A campaign stops (resumable) after this many batches in a row whose every LLM request failed."""
COMPACT_BELOW = 8192
"""llm.compact_prompt = auto: compact prompts for a server whose context is under this (tokens)."""
_UNPROMPTED_SCORE_FIELDS = frozenset({"val_curve", "val_steps"})
"""Per-task score fields no proposer reads (see Campaign._as_dict)."""


@dataclass
class Event:
    """Something the live view or a log line should show."""

    kind: str  # setup | proposal | duplicate | failure | evaluated | confirming | new_best | heldout | note
    program_id: int | None = None
    text: str = ""
    fitness: float | None = None
    reason: str | None = None  # failure reason, for failure events
    done: int | None = None  # setup events: task results of the seed programs scored so far ...
    total: int | None = None  # ... out of this many (the tuned baselines are computed among them)
    data: dict[str, Any] | None = None  # llm_request events: the request's details (LLMClient._report)


@dataclass
class CampaignSummary:
    directory: Path
    campaign_id: int
    stop_reason: str
    best_id: int | None
    best_fitness: float | None
    spend: dict[str, Any]
    counts: dict[str, int]
    failure_counts: dict[str, int]
    proposals: int
    seconds: float
    offline: bool
    notes: list[str] = field(default_factory=list)
    status: str = "finished"  # finished | stopped (interrupted, or the LLM endpoint failed)
    interrupted: bool = False


def new_campaign_dir(config: CampaignConfig) -> Path:
    """``<output_dir>/<name>-<YYYYmmdd-HHMMSS>`` (suffixed if taken) and a ``latest`` link to it."""
    root = Path(config.output_dir)
    root.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    directory = root / f"{config.name}-{stamp}"
    n = 1
    while directory.exists():
        n += 1
        directory = root / f"{config.name}-{stamp}-{n}"
    directory.mkdir()
    latest = root / "latest"
    try:
        if latest.is_symlink() or latest.exists():
            latest.unlink()
        latest.symlink_to(directory.name)
    except OSError:
        pass  # filesystems without symlinks: `discover campaigns` still lists every directory
    return directory


class Campaign:
    """One discovery campaign in one directory (archive.db + config.toml)."""

    def __init__(self, config: CampaignConfig, directory: Path | None, *, resume: bool = False,
                 on_event: Callable[[Event], None] | None = None, cache: RunCache | None = None,
                 checked: list[tuple[str, Any]] | None = None):
        """``directory`` None: a new one under ``config.output_dir``, made only once the
        executor is up (a config that cannot run leaves no directory behind)."""
        self.config = config
        self.on_event = on_event or (lambda event: None)
        self.notes: list[str] = []
        self.archive: Archive | None = None
        if resume:
            # A damaged, foreign or missing archive is the user's to fix: one line, before any
            # worker starts or anything is written.
            self.directory = Path(directory)
            try:
                self.archive = archive_store.open(self.directory)
            except ArchiveError as exc:
                raise UserError(str(exc)) from None
        # On Ray the cluster's GPUs count, not this machine's: that executor resolves the device.
        on_ray = config.evaluation.executor == "ray"
        try:
            self.device = config.evaluation.device if on_ray else resolve_device(config.evaluation.device)
            self.executor = _make_executor(config, self.device)
        except BaseException:
            if self.archive is not None:
                self.archive.close()
            raise
        try:
            self._setup(config, directory, resume, cache, checked)
        except BaseException as exc:
            self.executor.close()
            if self.archive is not None:
                self.archive.close()
            if isinstance(exc, ArchiveError):  # e.g. a truncated file that opened but cannot be read
                raise UserError(str(exc)) from None
            raise

    def _setup(self, config: CampaignConfig, directory: Path | None, resume: bool, cache: RunCache | None,
               checked: list[tuple[str, Any]] | None) -> None:
        self.device = getattr(self.executor, "device", self.device)
        if not resume:  # a resumed campaign keeps the batch size its config.toml recorded
            in_flight = in_flight_for(config, self.executor.capacity)
            if in_flight != config.search.in_flight:
                config = self.config = config.model_copy(
                    update={"search": config.search.model_copy(update={"in_flight": in_flight})})
                self.notes.append(f"search.in_flight = {in_flight}: enough proposals per batch to keep the "
                                  f"executor's {self.executor.capacity} slots busy (set it to pin the batch size)")
            config = self.config = self._resolve_compact_prompt(config)
            self.directory = Path(directory) if directory is not None else new_campaign_dir(config)
            self.archive = archive_store.open(self.directory, create=True)
        b = config.budget
        budget = Budget(max_tokens=b.max_tokens, max_usd=b.max_usd, max_evaluations=b.max_evaluations,
                        max_seconds=b.max_seconds)
        if resume:
            existing = self.archive.campaigns()
            if not existing:
                raise UserError(f"{self.directory} holds no campaign to resume")
            self.campaign_id = existing[-1].id
            self.spend = Spend.from_dict(existing[-1].spend or {}, budget)
            self.spend.evaluations = self._charged_evaluations()
            self.archive.set_campaign_status(self.campaign_id, "running")
        else:
            (self.directory / CONFIG_FILE).write_text(to_toml(config), encoding="utf-8")
            self.campaign_id = self.archive.create_campaign(config.name, config.model_dump(mode="json"), config.seed)
            self.spend = Spend(budget)
        self.llm = self._make_llm()
        if self.llm is not None:
            self.llm.on_request = self._llm_request_event
        self._record_checks(checked or [])
        self._context_error: str | None = None  # a prompt did not fit the server's context: stop
        self._carried: list[tuple[int, str]] = []  # on resume: a batch's programs archived before a kill
        self._confirmed_search: dict[bool, float] | None = None  # see _best_confirmed_search
        self._ahead = None  # ((indices, contexts), future): the next batch, generated while one is evaluated
        self._llm_down = 0  # batches in a row whose every LLM request failed
        self._llm_failure: str | None = None
        weights = dict(config.search.proposers)
        if self.llm is None and any(weights.get(k, 0) > 0 for k in LLM_KINDS):
            dropped = [k for k in LLM_KINDS if weights.pop(k, 0) > 0]
            self.notes.append(f"no LLM endpoint configured (llm.base_url): dropped {', '.join(dropped)}; "
                              "using the offline symbolic-mutation proposer")
            weights.setdefault("mutation", 1.0)
        elif self.llm is None:
            self.notes.append("no LLM endpoint configured: using the offline symbolic-mutation proposer")
        self.constrained = None
        if self.llm is not None and config.llm.constrained != "off":
            from discover.constrained import ConstrainedDecoding

            self.constrained = ConstrainedDecoding(config.llm.constrained, config.llm.base_url)
        compact = self.llm is not None and config.llm.compact_prompt == "on"
        self.proposers: dict[str, Proposer] = make_proposers(weights, self.llm, self.constrained, compact)
        self.weights = {k: weights[k] for k in self.proposers}
        pipeline = config.search.pipeline
        # Offline proposals take milliseconds: overlapping them with evaluation buys nothing and
        # would make parents one batch staler, so by default only LLM campaigns pipeline.
        self.pipeline = self.llm is not None if pipeline is None else pipeline
        self._ahead_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="propose-ahead")
        self._confirmations = ConfirmationQueue()
        self.cache = cache or RunCache()
        ev = config.evaluation
        self.settings = EvalSettings(
            suite=ev.suite, tasks=tuple(ev.tasks), validation_tasks=tuple(ev.validation_tasks),
            test_tasks=tuple(ev.test_tasks), selection_seeds=tuple(ev.selection_seeds),
            measure_seeds=tuple(ev.measure_seeds), confirm_seeds=tuple(ev.confirm_seeds), test_seeds=tuple(ev.test_seeds),
            lr_grid=tuple(ev.lr_grid), screen=ev.screen, screen_threshold=ev.screen_threshold, device=self.device,
            job_timeout=ev.job_timeout, steps_scale=ev.steps_scale, halving=RECOMMENDED if ev.halving else None)
        self.evaluator = Evaluator(self.executor, self.cache, self.settings)

    def _resolve_compact_prompt(self, config: CampaignConfig) -> CampaignConfig:
        """``llm.compact_prompt = "auto"`` becomes "on" or "off" by the context the server reports
        (under COMPACT_BELOW tokens: on), recorded in config.toml so a resumed or replayed
        campaign sends the same prompts."""
        if config.offline or config.llm.compact_prompt != "auto" or config.llm.cache == "replay":
            return config
        from discover.llm import server_context

        context = server_context(config.llm.base_url)
        mode = "on" if context is not None and context < COMPACT_BELOW else "off"
        if mode == "on":
            self.notes.append(f"llm.compact_prompt = on: the server's context is {context:,} tokens "
                              f"(under {COMPACT_BELOW:,}), so prompts are the short ones")
        return config.model_copy(update={"llm": config.llm.model_copy(update={"compact_prompt": mode})})

    def _llm_request_event(self, info: dict[str, Any]) -> None:
        """An LLM request started or ended (see LLMClient._report): an ``llm_request`` event whose
        ``reason`` is the phase (start, done, timeout, cancelled, error) and ``data`` the details."""
        phase = info["phase"]
        if phase == "start":
            text = (f"{info['role']} request {info['id']} sent (attempt {info['attempt']}, timeout "
                    f"{info['timeout']:.0f} s; {info['in_flight']} in flight)")
        else:
            tokens = (f", {info['prompt_tokens']:,}+{info['completion_tokens']:,} tokens"
                      + (" (estimated)" if phase in ("timeout", "cancelled") else "")
                      if "prompt_tokens" in info else "")
            text = f"{info['role']} request {info['id']} {phase} after {info['seconds']:.1f} s{tokens}"
            if info.get("error"):
                text += f": {info['error']}"
        self.on_event(Event("llm_request", None, text, reason=phase, data=dict(info)))

    @classmethod
    def create(cls, config: CampaignConfig, **kwargs: Any) -> Campaign:
        """A campaign in a new directory. The device and the LLM endpoint are checked first, so
        a bad device or a dead endpoint is one error and leaves no directory behind."""
        resolve_device(config.evaluation.device)
        if "checked" not in kwargs:
            kwargs["checked"] = preflight(config)
        return cls(config, None, **kwargs)

    def _make_llm(self):
        if self.config.offline:
            return None
        from discover.llm import LLMClient

        return LLMClient(llm_settings(self.config, self.directory / "llm-cache"), spend=self.spend)

    def _record_checks(self, checked: list[tuple[str, Any]]) -> None:
        """The preflight requests were answered (and paid for): charge and archive them."""
        from discover.llm import CHECK_MESSAGES

        for role, completion in checked:
            self.spend.charge_llm(completion)
            self.archive.add_llm_call(role=role, model=completion.model, prompt=[dict(m) for m in CHECK_MESSAGES],
                                      response=completion.text, tokens_in=completion.prompt_tokens,
                                      tokens_out=completion.completion_tokens, cost_usd=completion.cost_usd,
                                      cached=False, outcome="preflight")
        if checked:
            self.archive.update_spend(self.campaign_id, self.spend.to_dict())

    def close(self) -> None:
        self._ahead_pool.shutdown(wait=True)
        self._confirmations.stop()
        self.executor.close()  # a confirmation still evaluating returns now, and is dropped
        self._confirmations.close()
        self.archive.close()

    # --- archive views ----------------------------------------------------------------------

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

    def best_confirmed(self) -> tuple[int | None, float]:
        """The id and confirmed fitness of the best program confirmed so far (None, -inf: none)."""
        winner = self.archive.winner()
        if winner is None or winner.confirmed_fitness is None:
            return None, float("-inf")
        return winner.id, winner.confirmed_fitness

    # --- the loop ---------------------------------------------------------------------------

    def run(self) -> CampaignSummary:
        """Run until a budget is exhausted or the user interrupts; always archive and summarise."""
        started = time.perf_counter()
        for note in self.notes:
            self.on_event(Event("note", text=note))
        stop_reason = "finished"
        status = "finished"
        self.archive.set_campaign_runner(self.campaign_id, slots=self.executor.capacity)
        beating = threading.Event()
        heart = threading.Thread(target=self._heartbeat, args=(beating,), name="campaign-heartbeat", daemon=True)
        heart.start()
        try:
            self._seed_references()
            # The next batch's proposals, generated while this batch is evaluated (on resume:
            # a batch a kill left unarchived, from its saved contexts).
            self._ahead = self._saved_batch()
            self._finish_pending()
            # The seed programs' confirmations (and, resumed, any a kill left undone) run beside
            # the first batch, as a batch's own do beside the next.
            evaluated = sorted((r for r in self.archive.summaries().values() if r.status == "evaluated"),
                               key=lambda r: r.id)
            self._confirmations.next_batch([partial(self._confirm_unchecked, evaluated)])
            stalled = 0
            limit = self.config.search.max_stalled_proposals
            try:
                while True:
                    reason = self.spend.exhausted()
                    if reason:
                        stop_reason = reason
                        break
                    exhausted, proposed, evaluated = self._run_batch()
                    if self._context_error:
                        stop_reason, status = self._context_error, "stopped"
                        break
                    if exhausted:
                        stop_reason = exhausted
                        break
                    if self._llm_down >= LLM_DOWN_BATCHES:
                        stop_reason = (f"the LLM endpoint failed every request of {self._llm_down} batches in a row "
                                       f"(last: {self._llm_failure}); fix it, then continue with "
                                       f"`discover run --resume {self.directory}`")
                        status = "stopped"
                        break
                    stalled = 0 if evaluated else stalled + proposed
                    if stalled >= limit:
                        stop_reason = (f"{stalled} proposals in a row were failures or duplicates "
                                       f"(search.max_stalled_proposals = {limit}): the proposer is stuck; "
                                       "see `discover archive list --status failed`")
                        break
            finally:
                # The batch generated ahead and not archived yet (never one _run_batch already
                # archived, whatever stopped the loop): proposals already paid for are archived
                # (pending), never dropped; `--resume` with a larger budget evaluates them.
                ahead, self._ahead = self._ahead, None
                if ahead is not None:
                    self._archive_batch(*ahead[0], ahead[1].result())
            self._confirmations.drain()
            if not self._context_error:
                self._final_checks()
            if self.config.evaluation.test_tier and not self._context_error:
                self._score_test_tier()
        except KeyboardInterrupt:
            self._confirmations.stop()
            stop_reason, status = "interrupted by the user (resume with --resume)", "stopped"
        except Exception:
            self._confirmations.stop()
            self.archive.set_campaign_status(self.campaign_id, "failed")
            self.archive.update_spend(self.campaign_id, self.spend.to_dict())
            raise
        finally:
            beating.set()
            heart.join()
        self.archive.update_spend(self.campaign_id, self.spend.to_dict())
        self.archive.set_campaign_status(self.campaign_id, status)
        if self._context_error:
            # No other prompt would fit either: one line, exit 2 (resumable once fixed).
            raise UserError(f"{self._context_error}; then continue with `discover run --resume {self.directory}`")
        best_id, best = self.best_confirmed()
        if best_id is not None:
            self.archive.set_best_program(self.campaign_id, best_id)
        counts = {s: self.archive.program_count(s) for s in ("evaluated", "failed", "duplicate", "pending")}
        return CampaignSummary(
            directory=self.directory, campaign_id=self.campaign_id, stop_reason=stop_reason, best_id=best_id,
            best_fitness=None if best_id is None else best, spend=self.spend.to_dict(), counts=counts,
            failure_counts=self.archive.failure_counts(), proposals=self._next_index(),
            seconds=time.perf_counter() - started, offline=self.llm is None, notes=self.notes, status=status,
            interrupted=stop_reason.startswith("interrupted"))

    def _heartbeat(self, stop: threading.Event) -> None:
        """Tell the archive every few seconds that this campaign is alive (a SIGKILL cannot
        record 'stopped', so `discover campaigns` tells a dead campaign by its silence)."""
        while not stop.wait(HEARTBEAT_SECONDS):
            try:
                self.archive.heartbeat(self.campaign_id)
            except ArchiveError:
                pass  # a busy or closing archive: the next beat will do

    def _next_index(self) -> int:
        indices = [s.proposal_index for s in self.archive.summaries().values() if s.proposal_index is not None]
        return max(indices, default=-1) + 1

    def _seed_references(self) -> None:
        """Archive and evaluate the reference library first: the population starts from it."""
        pending = []
        for entry in self.config.search.seed_programs:
            try:
                name, source = seed_source(entry)  # a reference, a file or an archived program
            except ValueError as exc:
                raise UserError(str(exc)) from None
            found = self.archive.find_by_hash(program_hash(source))
            if found is None:
                pid = self.archive.add_program(source, campaign_id=self.campaign_id, proposer="reference", name=name,
                                               hash=program_hash(source))
                pending.append((pid, source))
            elif found.status == "pending" and found.proposer == "reference":
                pending.append((found.id, source))  # killed while seeding: finish it, free of budget
        # Seeding is the slow start of a fresh campaign (the tuned baselines are computed here):
        # one setup event per task result, so the live view can show how far it has got.
        total = len(pending) * len(self.evaluator.tasks_for(self.settings.suite))
        done = itertools.count(1)
        if pending:
            self.on_event(Event("setup", text=f"scoring {len(pending)} seed programs", done=0, total=total))

        def scored(pid: int, task: str) -> None:
            self.on_event(Event("setup", pid, task, done=next(done), total=total))

        # Confirmations wait for _confirm_unchecked, which runs them in program order.
        self._evaluate_all(sorted(pending), count_budget=False, kind="reference", confirm=False, on_task=scored)

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

    def _run_batch(self) -> tuple[str | None, int, int]:
        """One batch of proposals: generate (or collect the ones generated ahead, ``self._ahead``),
        archive, evaluate; the next batch may be generated ahead meanwhile (``self._ahead`` again).
        Returns (budget-exhausted reason if an LLM call hit the budget, proposals made, new
        programs evaluated)."""
        ahead, self._ahead = self._ahead, None  # taken: an exception from here on cannot archive it twice
        if ahead is None:
            indices = self._batch_indices(self._next_index(), 0)
            contexts = self._contexts(indices)
            proposals = self._generate(indices, contexts)
        else:
            (indices, contexts), future = ahead
            proposals = future.result()
        exhausted, to_evaluate = self._archive_batch(indices, contexts, proposals)
        to_evaluate, self._carried = self._carried + to_evaluate, []
        if self.pipeline and exhausted is None and self._context_error is None:
            # Batch k+1 is built from the archive as it is now (batch k archived, not yet
            # evaluated): a fixed point in the sequence, so reruns still agree; its LLM requests
            # are in flight while the sandbox evaluates batch k.
            next_indices = self._batch_indices(indices[-1] + 1, len(to_evaluate))
            if next_indices:
                next_contexts = self._contexts(next_indices)
                self._ahead = ((next_indices, next_contexts),
                               self._ahead_pool.submit(self._generate, next_indices, next_contexts))
        evaluated = self._evaluate_all(to_evaluate, count_budget=True, kind="candidate")
        return exhausted, len(indices), evaluated

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

    # --- evaluation -------------------------------------------------------------------------

    def _evaluate_all(self, items: list[tuple[int, str]], *, count_budget: bool, kind: str,
                      confirm: bool = True, on_task: Callable[[int, str], None] | None = None) -> int:
        """Probe (behavioural de-dup), then evaluate survivors concurrently; archive in order.
        Returns how many programs were evaluated."""
        if not items:
            return 0
        probes = [self.executor.submit("probe", {"source": src}, 30.0) for _, src in items]
        survivors = []
        for (pid, source), future in zip(items, probes):
            probe = future.result()
            self.archive.add_jobs(probe_rows([pid], [probe], campaign_id=self.campaign_id))
            if not probe.ok:
                self._record_failure(pid, "probe", probe.reason or "crashed", probe.message)
                continue
            match = self.archive.find_by_fingerprint(probe.value, exclude_id=pid) if kind != "reference" else None
            if match is not None:
                self.archive.update_program(pid, status="duplicate", duplicate_of=match.id, fingerprint=probe.value,
                                            meta={**self.archive.program(pid).meta, "duplicate": "behavioural"})
                self.on_event(Event("duplicate", pid, f"behaves exactly like #{match.id}"))
                continue
            self.archive.update_program(pid, fingerprint=probe.value)
            survivors.append((pid, source))
        # Every program's tasks are submitted at once (the evaluator fans them out to the
        # executor's slots); each result is archived the moment it finishes, in any order.
        results: dict[int, EvaluationResult] = {}
        with ThreadPoolExecutor(max_workers=max(1, len(survivors)), thread_name_prefix="evaluate") as pool:
            # References are the yardsticks: always scored on the full suite, never screened out.
            stage = "full" if kind == "reference" else "auto"
            futures = {pool.submit(self.evaluator.evaluate, source, stage=stage,
                                   on_task=on_task and (lambda task, _, pid=pid: on_task(pid, task))): pid
                       for pid, source in survivors}
            for future in as_completed(futures):
                pid = futures[future]
                results[pid] = result = future.result()
                if count_budget:
                    self.spend.charge_evaluations(1)
                self._record_result(pid, result)
                self.archive.update_spend(self.campaign_id, self.spend.to_dict())
        # Confirmation compares with the best so far, so it runs in proposal order: reruns agree.
        # It runs beside the next batch's evaluation (discover/confirmations.py).
        if confirm:
            self._confirmations.next_batch([
                (lambda pid=pid, source=source, result=results[pid]: self._maybe_confirm(pid, source, result))
                for pid, source in survivors
                if results[pid].failure is None and results[pid].stage == "full"])
        self.archive.update_spend(self.campaign_id, self.spend.to_dict())
        return len(survivors)

    def _record_failure(self, pid: int, stage: str, reason: str, message: str) -> None:
        self.archive.update_program(pid, status="failed", stage=None)
        self.archive.add_failure(pid, stage=stage, reason=reason, message=message)
        self.on_event(Event("failure", pid, f"{reason}: {message}", reason=reason))

    def _record_result(self, pid: int, result: EvaluationResult) -> None:
        record_timings(self.archive, self.campaign_id, pid, "search", result)
        rows = _evaluation_rows(pid, result.suite, result.run_records)
        if rows:
            self.archive.add_evaluations(rows)
        if result.failure is not None:
            self._record_failure(pid, result.stage, *result.failure)
            return
        scores = self._scores(result)
        self.archive.update_program(pid, status="evaluated", fitness=result.fitness,
                                    fitness_spread=result.fitness_spread, scores=scores, stage=result.stage)
        for name, task in result.tasks.items():
            if task.status != "ok":
                self.archive.add_failure(pid, stage=result.stage, reason=_reason(task.status),
                                         message=f"{name}: {task.message}")
        self.on_event(Event("evaluated", pid, f"{result.stage}: fitness {result.fitness:.3f}", result.fitness))

    def _scores(self, result: EvaluationResult) -> dict[str, dict[str, Any]]:
        """Per-task results as the archive's ``scores`` JSON (with each task's step budget)."""
        return {name: {**asdict(t), "steps": self.settings.steps_for(get_task(name))} for name, t in result.tasks.items()}

    def _best_confirmed_search(self, reference: bool) -> float:
        """The best search fitness among confirmed programs of one kind, seed references or
        candidates (-inf: none). Kept apart so a strong seed (Adam, say) never stops the
        campaign from checking what it discovered. Read from the archive once (a resumed
        campaign's confirmations count), then kept up to date by :meth:`_confirm`, the only
        writer of confirmations: a scan of every summary per candidate cost ~10 ms at 10,000
        programs."""
        if self._confirmed_search is None:
            best = {True: float("-inf"), False: float("-inf")}
            for r in self.archive.summaries().values():
                if r.status == "evaluated" and r.confirmed_fitness is not None and r.fitness is not None:
                    kind = r.proposer == "reference"
                    best[kind] = max(best[kind], r.fitness)
            self._confirmed_search = best
        return self._confirmed_search[reference]

    def _maybe_confirm(self, pid: int, source: str, result: EvaluationResult) -> None:
        """A would-be new best (on the search tier) is scored on the validation tier, fresh seeds
        and workload variants the search never saw, before anything is said about it. It is
        *announced* only if it beats tuned AdamW there with its seed spread excluding 1.0 and
        still leads at ``long_horizon_scale`` times the steps (else it is "short-horizon")."""
        if result.fitness <= self._best_confirmed_search(self.archive.program(pid).proposer == "reference"):
            return
        self._confirm(pid, source, result)

    def _confirm(self, pid: int, source: str, result: EvaluationResult) -> None:
        """Score a program on the validation tier and apply the announce rule (see _maybe_confirm).
        Every evaluation comes before the first write, so a confirmation dropped while the
        campaign stops (discover/confirmations.py) leaves nothing half-written."""
        best_id, best = self.best_confirmed()
        self.on_event(Event("confirming", pid, f"search fitness {result.fitness:.3f}: checking it on the validation tier"))
        confirm = self.evaluator.evaluate(source, suite="validation", stage="full",
                                          measure_seeds=self.settings.confirm_seeds)
        self._confirmations.check()
        rec = self.archive.program(pid)
        long = self._long_horizon(source, rec, confirm) if confirm.failure is None else None
        self._confirmations.check()
        record_timings(self.archive, self.campaign_id, pid, "validation", confirm)
        if confirm.failure is not None:
            self.archive.update_program(pid, meta={**rec.meta, "validation_failure": list(confirm.failure)})
            return
        self.archive.add_evaluations(_evaluation_rows(pid, "validation", confirm.run_records))
        if long is not None:
            record_timings(self.archive, self.campaign_id, pid, "long_horizon", long)
            if long.failure is None:
                self.archive.add_evaluations(_evaluation_rows(pid, "long_horizon", long.run_records))
        meta = {**rec.meta, "confirmed_fitness": confirm.fitness, "confirmed_spread": confirm.fitness_spread,
                "confirm_seeds": list(self.settings.confirm_seeds), "validation_scores": self._scores(confirm)}
        verdict = self._announce_verdict(rec, confirm, long, meta)
        self.archive.update_program(pid, stage="confirmed", meta=meta)
        if self._confirmed_search is not None and rec.status == "evaluated" and rec.fitness is not None:
            kind = rec.proposer == "reference"
            self._confirmed_search[kind] = max(self._confirmed_search[kind], rec.fitness)
        label = f"{confirm.fitness:.3f} on the validation tier (search {result.fitness:.3f}); {verdict}"
        if confirm.fitness > best:
            self.archive.set_best_program(self.campaign_id, pid)
            kind = "new_best" if rec.proposer != "reference" else "evaluated"
            self.on_event(Event(kind, pid, label, confirm.fitness))
        else:
            self.on_event(Event("note", pid, f"#{pid} measured {result.fitness:.3f} on search but "
                                             f"{confirm.fitness:.3f} on the validation tier: not a new best"))

    def _long_horizon(self, source: str, rec: ProgramRecord, confirm: EvaluationResult) -> EvaluationResult | None:
        """The validation tier at ``long_horizon_scale`` times the steps, where the announce rule
        needs it (a candidate that beats tuned AdamW beyond seed noise); else None."""
        scale = self.config.evaluation.long_horizon_scale
        if rec.proposer == "reference" or not beats_adamw(confirm.fitness, confirm.fitness_spread) or scale <= 1:
            return None
        long_settings = replace(self.settings, steps_scale=self.settings.steps_scale * scale)
        return Evaluator(self.executor, self.cache, long_settings).evaluate(
            source, suite="validation", stage="full", measure_seeds=self.settings.confirm_seeds)

    def _announce_verdict(self, rec: ProgramRecord, confirm: EvaluationResult, long: EvaluationResult | None,
                          meta: dict[str, Any]) -> str:
        """Apply the announce rule to a confirmation (and its long-horizon check); fills ``meta``."""
        meta["announced"] = False
        if rec.proposer == "reference":
            return "a reference (never announced)"
        if not beats_adamw(confirm.fitness, confirm.fitness_spread):
            return "does not beat tuned AdamW beyond seed noise: not announced"
        scale = self.config.evaluation.long_horizon_scale
        if long is not None:
            fitness = scoring.FAILED_SCORE if long.failure else long.fitness
            meta.update(long_horizon_fitness=fitness, long_horizon_spread=long.fitness_spread,
                        long_horizon_scale=scale)
            if is_short_horizon(fitness):
                meta["short_horizon"] = True
                return (f"short-horizon: at {scale:g}x the steps it falls behind tuned AdamW ({fitness:.3f}); "
                        "not announced")
        meta["announced"] = True
        return "beats tuned AdamW beyond seed noise" + (" and holds at " f"{scale:g}x the steps" if scale > 1 else "")

    def _final_checks(self) -> None:
        """Before the campaign ends, the best few candidates that beat tuned AdamW on the search
        tier but were never checked (only a would-be best is checked as it comes, so one that
        collapses there hides the runners-up) are checked on the validation tier, best first.
        ``search.final_checks`` of them at most; none once the time budget is spent."""
        remaining = self.spend.remaining().get("seconds")
        if remaining is not None and remaining <= 0:
            return
        # the cached summaries, not every record decoded (seconds at 10,000 programs)
        unchecked = sorted(((r.fitness, r.id) for r in self.archive.summaries().values()
                            if r.status == "evaluated" and r.proposer != "reference" and r.stage == "full"
                            and r.fitness is not None and r.fitness > 1.0 and r.confirmed_fitness is None),
                           reverse=True)
        checks = 0
        for fitness, pid in unchecked:
            if checks >= self.config.search.final_checks:
                break
            rec = self.archive.program(pid)
            if "validation_failure" in (rec.meta or {}):
                continue
            self._confirm(pid, rec.code, _Measured(fitness))
            checks += 1

    def _score_test_tier(self) -> None:
        """Score the best programs, and the tuned baselines beside them, on the test tier
        (reported only: no decision reads it)."""
        evaluated = self.archive.programs(status="evaluated")
        ranked = sorted(((r.confirmed_fitness, r.id) for r in evaluated
                         if r.confirmed_fitness is not None and r.proposer != "reference"),
                        reverse=True)[:3]
        baselines = [r.id for r in evaluated if r.proposer == "reference" and r.name in self.evaluator.baseline_names()]
        for pid in [pid for _, pid in ranked] + sorted(baselines):
            rec = self.archive.program(pid)
            if rec.heldout_fitness is not None:
                continue
            result = self.evaluator.evaluate(rec.code, suite="test", stage="full", measure_seeds=self.settings.test_seeds)
            record_timings(self.archive, self.campaign_id, pid, "test", result)
            if result.failure is not None:
                self.archive.update_program(pid, meta={**rec.meta, "heldout_failure": list(result.failure)})
                continue
            self.archive.add_evaluations(_evaluation_rows(pid, "test", result.run_records))
            scores = self._scores(result)
            self.archive.update_program(pid, heldout_fitness=result.fitness,
                                        meta={**rec.meta, "heldout_scores": scores,
                                              "heldout_spread": result.fitness_spread})
            self.on_event(Event("heldout", pid, f"test-tier fitness {result.fitness:.3f}", result.fitness))


def is_short_horizon(long_horizon_fitness: float) -> bool:
    """A rule that beat tuned AdamW at the task budgets but is behind it (below 1.0) when both
    train for longer leads early and falls behind later: it is not announced."""
    return not long_horizon_fitness >= 1.0


def _lineage_lookup(lineage: dict[int, dict[str, Any] | None]) -> Callable[[dict[str, Any]], dict[str, Any] | None]:
    return lambda program: lineage.get(program["id"])


def _as_program(data: dict[str, Any] | None) -> dict[str, Any] | None:
    """A program dict read back from JSON, as _as_dict made it (its failure is a tuple)."""
    if data is None:
        return None
    return {**data, "failure": tuple(data["failure"]) if data.get("failure") is not None else None}


@dataclass(frozen=True)
class _Measured:
    """What confirmation reads of an archived program's search result: its fitness."""

    fitness: float


def llm_settings(config: CampaignConfig, cache_dir: Path | None):
    """The LLM client settings a campaign's config asks for (``cache_dir`` None: no cache)."""
    from discover.llm import DEFAULT_PRICES, LLMSettings

    c = config.llm
    models = {"proposer": c.proposer_model}
    if c.critic_model:
        models["critic"] = c.critic_model
    return LLMSettings(
        models=models, base_url=c.base_url, api_key_env=c.api_key_env, temperature=c.temperature,
        max_tokens=c.max_tokens, max_tokens_param=c.max_tokens_param, timeout=c.timeout, max_attempts=c.max_attempts,
        max_concurrency=c.max_concurrency, backoff_base=c.backoff_base, stream=c.stream, cache_dir=cache_dir,
        cache_mode=c.cache if cache_dir is not None else "off",
        prices={**DEFAULT_PRICES, **{k: tuple(v) for k, v in c.prices.items()}})


def preflight(config: CampaignConfig, force: bool = False) -> list[tuple[str, Any]]:
    """One small live request per configured model before a campaign starts: a dead server, a
    rejected key or an unknown model is one :class:`UserError`, before anything is archived.
    Returns ``[(role, Completion)]`` for the campaign to charge and archive; nothing when the
    campaign is offline, replays its cache, or the config turns the check off (``force``
    checks anyway: ``discover llm-check``)."""
    if config.offline:
        if force:
            raise UserError("no LLM endpoint configured: set llm.base_url (or --base-url)")
        return []
    if not force and (config.llm.cache == "replay" or not config.llm.preflight):
        return []
    from discover.llm import LLMClient, LLMError

    client = LLMClient(llm_settings(config, None))
    roles = ["proposer"] + (["critic"] if config.llm.critic_model not in (None, config.llm.proposer_model) else [])
    checked = []
    for role in roles:
        try:
            checked.append((role, client.check(role)))
        except LLMError as exc:
            raise UserError(f"LLM check failed ({role} model {client.model_for(role)!r}): {exc}") from None
    return checked


def _make_executor(config: CampaignConfig, device: str):
    """The executor the config asks for; one that cannot be built here is the user's to fix.
    Evaluation jobs are bounded by a multiple of tuned AdamW's time on their task."""
    ev = config.evaluation
    options: dict[str, Any] = {"device": device}
    if ev.workers:
        options["size"] = ev.workers
    if ev.executor == "ray" and ev.ray_address:
        options["address"] = ev.ray_address
    try:
        executor = make_executor(ev.executor, **options)
    except ExecutorUnavailable as exc:
        raise UserError(str(exc)) from None
    bounded = TimeBoundExecutor(executor, factor=ev.job_time_factor, floor=ev.job_time_floor)
    if ev.population == "on" or (ev.population == "auto" and ev.executor == "local" and device.startswith("cuda")):
        return PopulationExecutor(bounded)
    return bounded


def in_flight_for(config: CampaignConfig, capacity: int) -> int:
    """Proposals per batch: ``search.in_flight`` when the config sets it; left at its default,
    enough programs to fill ``capacity`` executor slots (a program runs one job per task at a
    time). The result is recorded in config.toml, so the campaign reruns with the same batches."""
    search, ev = config.search, config.evaluation
    if "in_flight" in search.model_fields_set:
        return search.in_flight
    tasks = len(ev.tasks) or len(suite_tasks(ev.suite))
    return max(search.in_flight, capacity // max(1, tasks))


def _evaluation_rows(pid: int, suite: str, records: list[dict]) -> list[dict[str, Any]]:
    """Archive rows for a worker's raw run records (curves downsampled, metrics picked)."""
    return [
        dict(program_id=pid, suite=suite, task=r["task"], task_version=str(r["task_version"]), seed=r["seed"],
             lr=r["lr"], role=r["role"], curve=downsample(r["losses"], 64),
             metrics={k: r.get(k) for k in ("final_loss", "test_metric", "status", "stopped_at")})
        for r in records
    ]


def _reason(status: str) -> str:
    return status if status in ("nan", "diverged") else "crashed"


def campaign_dir_for_resume(path: str | os.PathLike) -> Path:
    directory = Path(path)
    if not (directory / CONFIG_FILE).is_file():
        raise UserError(f"{directory} is not a campaign directory (no {CONFIG_FILE}); "
                        "pass the directory `discover run` printed, e.g. campaigns/latest")
    return directory
