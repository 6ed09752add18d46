"""A campaign's evaluations: the seed programs first, then each batch probed (behavioural
de-duplication), evaluated concurrently and archived as each result comes; the batch's
would-be bests are queued for confirmation. Mixed into :class:`discover.campaign.Campaign`."""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict
from typing import Any, Callable

from archive.timings import probe_rows, record_timings
from discover.campaign_events import Event
from discover.config import seed_source
from discover.errors import UserError
from sandbox.contract import program_hash
from sandbox.evaluate import EvaluationResult
from sandbox.scoring import downsample
from sandbox.tasks import get_task


class CampaignEvaluation:
    """Evaluation and result archiving of :class:`discover.campaign.Campaign`."""

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
