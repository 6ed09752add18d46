"""Where a campaign's time went: storing per-job and per-evaluation seconds, and summing them.

A campaign stores, for every program it evaluates, the sandbox jobs the evaluator waited for
(:func:`job_rows`, from ``EvaluationResult.jobs``) and the evaluation's wall time
(:func:`record_timings`). :func:`time_breakdown` sums them per stage, per task and per worker
and sets busy worker seconds against the campaign's slots x run time: the rest is idle worker
time (waiting for the LLM, for the slowest task of a batch, for the controller).

The campaign summary, ``discover archive time`` and the report all read :func:`time_breakdown`.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable

from archive.store import Archive, ArchiveError

TIERS = ("search", "validation", "long_horizon", "test")
"""Where an evaluation ran: the search tier, confirmation on the validation tier, its
long-horizon check, the test tier."""


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds")


def job_rows(jobs: Iterable[dict[str, Any]], *, program_id: int | None, tier: str, program_hash: str,
             campaign_id: int | None = None) -> list[dict[str, Any]]:
    """Archive rows (``Archive.add_jobs``) for an evaluation's job log (``EvaluationResult.jobs``).
    Jobs for another program than ``program_hash`` are the tuned baselines' (``baseline``)."""
    rows = []
    for job in jobs:
        seconds = float(job.get("seconds") or 0.0)
        submitted, done = job.get("submitted"), job.get("done")
        waited = max(0.0, done - submitted - seconds) if submitted is not None and done is not None else None
        rows.append(dict(
            campaign_id=campaign_id, program_id=program_id, tier=tier, stage=job.get("stage") or "",
            task=job.get("task") or "", job="evaluate", baseline=job.get("program") != program_hash,
            runs=int(job.get("runs") or 0), cached_runs=int(job.get("cached_runs") or 0), seconds=seconds,
            waited=waited, device=str(job.get("device") or ""),
            worker="" if job.get("worker") is None else str(job["worker"]), ok=bool(job.get("ok", True)),
            started_at=_iso(submitted if submitted is not None else time.time())))
    return rows


def probe_rows(program_ids: list[int], results: list[Any], *, device: str = "cpu",
               campaign_id: int | None = None) -> list[dict[str, Any]]:
    """Archive rows for behavioural-fingerprint probes (``JobResult`` each; probes run on CPU)."""
    now = time.time()
    return [dict(campaign_id=campaign_id, program_id=pid, tier="search", stage="probe", task="", job="probe",
                 baseline=False, runs=1, cached_runs=0, seconds=float(r.seconds or 0.0), waited=None,
                 device="cpu", worker="" if r.worker_pid is None else str(r.worker_pid), ok=bool(r.ok),
                 started_at=_iso(now - float(r.seconds or 0.0)))
            for pid, r in zip(program_ids, results)]


def record_timings(archive: Archive, campaign_id: int | None, program_id: int, tier: str, result: Any) -> None:
    """Store an evaluation's jobs and its wall time (``result``: an ``EvaluationResult``)."""
    archive.add_jobs(job_rows(result.jobs, program_id=program_id, tier=tier, program_hash=result.program_hash,
                              campaign_id=campaign_id))
    archive.add_stage(campaign_id=campaign_id, program_id=program_id, tier=tier, stage=result.stage,
                      seconds=result.seconds, runs=result.runs_executed, cached_runs=result.runs_cached,
                      started_at=_iso(time.time() - result.seconds))


def stage_label(tier: str, stage: str) -> str:
    """One name per stage of the funnel: search-tier jobs by their stage (probe, screen, select,
    measure); the later tiers by tier (validation = confirmation, long_horizon, test)."""
    return stage if tier == "search" else tier


STAGE_ORDER = ("probe", "screen", "select", "measure", "validation", "long_horizon", "test")


@dataclass
class TimeBreakdown:
    """Worker seconds of a campaign (or a whole archive), summed several ways."""

    wall_seconds: float  # the campaign's run time (all sessions); 0 when unknown
    slots: int | None  # the executor's concurrent jobs; None when unknown (older archives)
    busy_seconds: float  # sum over jobs of their seconds on a worker
    jobs: int
    runs: int
    cached_runs: int
    by_stage: dict[str, float]  # stage label -> worker seconds (STAGE_ORDER first)
    by_task: dict[str, float]  # task -> worker seconds, largest first
    by_worker: dict[str, float]  # worker (process id) -> busy seconds
    baseline_seconds: float  # worker seconds spent on the tuned baselines
    waited_seconds: float  # sum of jobs' queue waits
    evaluation_seconds: dict[str, float] = field(default_factory=dict)  # tier -> wall seconds of evaluations
    evaluations: dict[str, int] = field(default_factory=dict)  # tier -> evaluations

    @property
    def capacity_seconds(self) -> float | None:
        """Slots x run time: what the workers could have done."""
        return self.slots * self.wall_seconds if self.slots and self.wall_seconds > 0 else None

    @property
    def idle_seconds(self) -> float | None:
        """Worker seconds with no job: capacity minus busy (None when capacity is unknown)."""
        capacity = self.capacity_seconds
        return None if capacity is None else max(0.0, capacity - self.busy_seconds)

    @property
    def utilisation(self) -> float | None:
        capacity = self.capacity_seconds
        return None if capacity is None else min(1.0, self.busy_seconds / capacity)

    def to_dict(self) -> dict[str, Any]:
        return {"wall_seconds": self.wall_seconds, "slots": self.slots, "busy_seconds": self.busy_seconds,
                "idle_seconds": self.idle_seconds, "utilisation": self.utilisation, "jobs": self.jobs,
                "runs": self.runs, "cached_runs": self.cached_runs, "by_stage": self.by_stage,
                "by_task": self.by_task, "by_worker": self.by_worker, "baseline_seconds": self.baseline_seconds,
                "waited_seconds": self.waited_seconds, "evaluation_seconds": self.evaluation_seconds,
                "evaluations": self.evaluations}


def time_breakdown(archive: Archive, campaign_id: int | None = None) -> TimeBreakdown:
    """Sum the archive's jobs (of one campaign, or all when None) per stage, task and worker.
    The run time and slots come from the campaign (the most recent one when None)."""
    jobs = archive.jobs(campaign_id=campaign_id)
    stages = archive.stages(campaign_id=campaign_id)
    by_stage: dict[str, float] = defaultdict(float)
    by_task: dict[str, float] = defaultdict(float)
    by_worker: dict[str, float] = defaultdict(float)
    baseline = waited = 0.0
    for job in jobs:
        by_stage[stage_label(job.tier, job.stage)] += job.seconds
        if job.task:
            by_task[job.task] += job.seconds
        if job.worker:
            by_worker[job.worker] += job.seconds
        if job.baseline:
            baseline += job.seconds
        waited += job.waited or 0.0
    evaluation_seconds: dict[str, float] = defaultdict(float)
    evaluations: dict[str, int] = defaultdict(int)
    for stage in stages:
        evaluation_seconds[stage.tier] += stage.seconds
        evaluations[stage.tier] += 1
    try:
        campaign = archive.campaign(campaign_id)
        wall, slots = campaign.seconds_run, campaign.slots
    except ArchiveError:
        wall, slots = 0.0, None
    ordered = {s: by_stage[s] for s in STAGE_ORDER if s in by_stage}
    ordered.update({s: v for s, v in sorted(by_stage.items()) if s not in ordered})
    return TimeBreakdown(
        wall_seconds=wall, slots=slots, busy_seconds=sum(j.seconds for j in jobs), jobs=len(jobs),
        runs=sum(j.runs for j in jobs), cached_runs=sum(j.cached_runs for j in jobs), by_stage=ordered,
        by_task=dict(sorted(by_task.items(), key=lambda kv: (-kv[1], kv[0]))),
        by_worker=dict(sorted(by_worker.items(), key=lambda kv: (-kv[1], kv[0]))), baseline_seconds=baseline,
        waited_seconds=waited, evaluation_seconds=dict(evaluation_seconds), evaluations=dict(evaluations))


def program_times(archive: Archive, program_id: int) -> dict[str, Any]:
    """One program's worker seconds per stage and per task, and its evaluations' wall times per
    tier (what ``discover archive show`` prints)."""
    by_stage: dict[str, float] = defaultdict(float)
    by_task: dict[str, float] = defaultdict(float)
    runs = cached = 0
    for job in archive.jobs(program_id=program_id):
        by_stage[stage_label(job.tier, job.stage)] += job.seconds
        if job.task:
            by_task[job.task] += job.seconds
        runs += job.runs
        cached += job.cached_runs
    walls: dict[str, float] = defaultdict(float)
    for stage in archive.stages(program_id=program_id):
        walls[stage.tier] += stage.seconds
    ordered = {s: by_stage[s] for s in STAGE_ORDER if s in by_stage}
    ordered.update({s: v for s, v in sorted(by_stage.items()) if s not in ordered})
    return {"by_stage": ordered, "by_task": dict(sorted(by_task.items(), key=lambda kv: (-kv[1], kv[0]))),
            "wall": dict(walls), "runs": runs, "cached_runs": cached}


def _seconds(value: float) -> str:
    if value >= 3600:
        return f"{value / 3600:.1f} h"
    if value >= 120:
        return f"{value / 60:.1f} min"
    return f"{value:.1f} s"


def time_line(breakdown: TimeBreakdown) -> str:
    """The breakdown in one line: busy worker time, its largest stages, idle worker time."""
    if not breakdown.jobs:
        return "time: no evaluation jobs recorded"
    busy = breakdown.busy_seconds
    shares = ", ".join(f"{name} {100 * s / busy:.0f}%" for name, s in
                       sorted(breakdown.by_stage.items(), key=lambda kv: -kv[1])[:4] if busy > 0 and s > 0)
    text = f"time: workers busy {_seconds(busy)} over {breakdown.jobs} jobs ({shares or 'all cached'})"
    if breakdown.idle_seconds is not None:
        text += (f"; {breakdown.slots} slot(s) x {_seconds(breakdown.wall_seconds)} run: "
                 f"idle {_seconds(breakdown.idle_seconds)} ({100 * (1 - breakdown.utilisation):.0f}%)")
    return text


def time_lines(breakdown: TimeBreakdown, tasks: int = 12) -> list[str]:
    """The breakdown as plain text lines: per stage, per task (the ``tasks`` largest), per worker."""
    busy = breakdown.busy_seconds or 0.0

    def share(value: float) -> str:
        return f"{100 * value / busy:5.1f}%" if busy > 0 else "     -"

    lines = [time_line(breakdown), "", f"{'stage':<14}{'worker s':>11}{'share':>8}"]
    lines += [f"{name:<14}{value:>11.1f}{share(value):>8}" for name, value in breakdown.by_stage.items()]
    lines += [f"{'(baselines)':<14}{breakdown.baseline_seconds:>11.1f}{share(breakdown.baseline_seconds):>8}",
              "", f"{'task':<24}{'worker s':>11}{'share':>8}"]
    items = list(breakdown.by_task.items())
    lines += [f"{name:<24}{value:>11.1f}{share(value):>8}" for name, value in items[:tasks]]
    if len(items) > tasks:
        rest = sum(v for _, v in items[tasks:])
        lines.append(f"{f'({len(items) - tasks} more)':<24}{rest:>11.1f}{share(rest):>8}")
    lines += ["", f"{'worker':<14}{'busy s':>11}"]
    lines += [f"{name:<14}{value:>11.1f}" for name, value in breakdown.by_worker.items()]
    if breakdown.idle_seconds is not None:
        lines.append(f"{'idle':<14}{breakdown.idle_seconds:>11.1f}   ({breakdown.slots} slot(s) x "
                     f"{breakdown.wall_seconds:.1f} s run - busy)")
    else:
        lines.append("idle: unknown (the archive does not record the executor's slots)")
    lines.append(f"runs: {breakdown.runs} executed, {breakdown.cached_runs} from the run cache; "
                 f"queue waits {breakdown.waited_seconds:.1f} s in all")
    for tier, seconds in breakdown.evaluation_seconds.items():
        n = breakdown.evaluations.get(tier, 0)
        lines.append(f"{tier} evaluations: {n}, {seconds:.1f} s wall in all ({seconds / max(1, n):.1f} s each)")
    return lines
