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

Here: :class:`Campaign`'s setup, its loop (``run``) and the batch step; the rest of the class is
mixed in from one module a part, each importing only those before it: ``campaign_events``
(Event, CampaignSummary), ``campaign_setup`` (directory, LLM settings, preflight, executor,
batch size), ``campaign_proposals`` (contexts, proposals, archiving them),
``campaign_evaluation`` (seeding, probing, evaluating, archiving results), ``campaign_checks``
(confirmation, the announce rule, final checks, the test tier), ``campaign_resume`` (what a
resume restores). Every name importers took from this module is still here.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Callable

import archive as archive_store
from archive.store import HEARTBEAT_SECONDS, Archive, ArchiveError
from discover.budget import Budget, Spend
from discover.campaign_checks import CampaignChecks, _Measured, is_short_horizon
from discover.campaign_evaluation import CampaignEvaluation, _evaluation_rows, _reason
from discover.campaign_events import CampaignSummary, Event
from discover.campaign_proposals import (
    _UNPROMPTED_SCORE_FIELDS,
    CONTEXTS_FILE,
    CampaignProposals,
    _lineage_lookup,
)
from discover.campaign_resume import CampaignResume, _as_program
from discover.campaign_setup import (
    CONFIG_FILE,
    _make_executor,
    campaign_dir_for_resume,
    in_flight_for,
    llm_settings,
    new_campaign_dir,
    preflight,
)
from discover.config import CampaignConfig, to_toml
from discover.confirmations import ConfirmationQueue
from discover.devices import resolve_device
from discover.errors import UserError
from discover.proposers import Proposer, make_proposers
from sandbox.evaluate import EvalSettings, Evaluator
from sandbox.halving import RECOMMENDED
from sandbox.runcache import RunCache

# What importers take from here: the campaign was once this one module, and its names stay.
__all__ = [
    "COMPACT_BELOW", "CONFIG_FILE", "CONTEXTS_FILE", "LLM_DOWN_BATCHES", "LLM_KINDS", "_UNPROMPTED_SCORE_FIELDS",
    "Campaign", "CampaignSummary", "Event", "_Measured", "_as_program", "_evaluation_rows", "_lineage_lookup",
    "_make_executor", "_reason", "campaign_dir_for_resume", "in_flight_for", "is_short_horizon", "llm_settings",
    "new_campaign_dir", "preflight"
]

LLM_KINDS = ("full", "diff", "textgrad", "crossover")
LLM_DOWN_BATCHES = 3
"""A campaign stops (resumable) after this many batches in a row whose every LLM request failed."""
COMPACT_BELOW = 8192
"""llm.compact_prompt = auto: compact prompts for a server whose context is under this (tokens)."""


class Campaign(CampaignProposals, CampaignEvaluation, CampaignChecks, CampaignResume):
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
