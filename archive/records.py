"""The archive's records: the frozen dataclasses its queries return (a campaign, a program, an
evaluation, a failure, an LLM call, a sandbox job, a stage's wall time, a lineage tree), the
values their fields take, and whether a campaign recorded as running really still runs.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

CAMPAIGN_STATUSES = ("running", "finished", "stopped", "failed")
PROGRAM_STATUSES = ("pending", "evaluated", "failed", "duplicate", "rejected")
STAGES = ("screen", "full", "confirmed")
EVALUATION_ROLES = ("select", "measure", "screen")
LLM_ROLES = ("proposer", "critic", "retry")


@dataclass(frozen=True)
class Campaign:
    """One campaign: its config, seed, status, spend and best program."""

    id: int
    name: str
    created_at: str
    updated_at: str
    config: dict
    seed: int
    status: str
    spend: dict
    best_program_id: int | None
    pid: int | None = None
    host: str | None = None
    heartbeat_at: str | None = None
    slots: int | None = None  # the executor's concurrent jobs, as the last session recorded it
    run_seconds: float = 0.0  # seconds run by sessions before the current (or last) one
    run_started_at: str | None = None  # when the current (or last) session began

    @property
    def seconds_run(self) -> float:
        """Wall seconds the campaign has run, over all its sessions (a resumed campaign's
        downtime not counted): earlier sessions, plus the last one up to its last heartbeat."""
        total = self.run_seconds or 0.0
        if self.run_started_at and self.heartbeat_at:
            try:
                total += max(0.0, (datetime.fromisoformat(self.heartbeat_at)
                                   - datetime.fromisoformat(self.run_started_at)).total_seconds())
            except ValueError:
                pass
        return total


HEARTBEAT_SECONDS = 10.0
"""How often a running campaign records that it is alive."""
STALE_SECONDS = 180.0
"""A 'running' campaign whose heartbeat is older than this was stopped without recording it."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: it exists
    except OSError:
        return False
    try:  # a zombie (exited, not yet reaped) is not running a campaign
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def effective_status(campaign: Campaign, now: datetime | None = None) -> str:
    """The campaign's status as it really is: a campaign recorded as ``running`` whose process is
    gone (same host) or whose heartbeat went stale was killed: ``stopped (killed)``."""
    if campaign.status != "running":
        return campaign.status
    if campaign.pid is not None and campaign.host == socket.gethostname() and not _pid_alive(campaign.pid):
        return "stopped (killed)"
    beat = campaign.heartbeat_at or campaign.updated_at
    try:
        age = ((now or datetime.now(timezone.utc)) - datetime.fromisoformat(beat)).total_seconds()
    except (TypeError, ValueError):
        return campaign.status
    return "stopped (killed)" if age > STALE_SECONDS else "running"


@dataclass(frozen=True)
class ProgramRecord:
    """One archived candidate program and what is known about it."""

    id: int
    campaign_id: int | None
    code: str = field(repr=False)
    hash: str
    fingerprint: list[float] | None = field(repr=False)
    parent_ids: list[int]
    proposer: str
    prompt: str | None = field(repr=False)
    response: str | None = field(repr=False)
    critique: str | None = field(repr=False)
    tokens_in: int
    tokens_out: int
    cost_usd: float
    status: str
    duplicate_of: int | None
    fitness: float | None
    fitness_spread: float | None
    heldout_fitness: float | None
    scores: dict | None
    stage: str | None
    created_at: str
    name: str | None
    meta: dict

    @property
    def confirmed_fitness(self) -> float | None:
        """The fitness re-measured on fresh seeds (would-be new bests only), else None."""
        value = self.meta.get("confirmed_fitness")
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class Evaluation:
    """One run of a program on one task, seed and learning rate."""

    id: int
    program_id: int
    suite: str
    task: str
    task_version: str
    seed: int
    lr: float | None
    role: str
    metrics: dict
    curve: list | None = field(repr=False)
    created_at: str


@dataclass(frozen=True)
class Failure:
    """Why a program failed at some stage (``reason`` is one of ``FAILURE_REASONS``)."""

    id: int
    program_id: int
    stage: str
    reason: str
    message: str
    created_at: str


@dataclass(frozen=True)
class LLMCall:
    """One request to an LLM and its answer (``prompt`` is the messages list)."""

    id: int
    program_id: int | None
    role: str
    model: str
    prompt: Any = field(repr=False)
    response: str | None = field(repr=False)
    tokens_in: int
    tokens_out: int
    cost_usd: float
    cached: bool
    outcome: str
    created_at: str


@dataclass(frozen=True)
class ProgramSummary:
    """What the campaign loop reads of every program, without its code, prompt or JSON blobs
    (:meth:`Archive.summaries`): status, stage, fitness, confirmed fitness, per-task scores."""

    id: int
    status: str
    stage: str | None
    fitness: float | None
    confirmed_fitness: float | None
    proposer: str
    name: str | None
    proposal_index: int | None
    task_scores: dict[str, float] | None  # {task: score} of an evaluated program's scores, else None


@dataclass(frozen=True)
class Job:
    """One sandbox job: a probe, or one task's runs of one stage of a program's evaluation.
    ``seconds`` is its time on a worker (0 when every run came from the run cache), ``waited``
    its time queued for a free worker; ``baseline``: runs of a tuned baseline that this
    evaluation needed first (the tuned baselines are computed inside the first evaluations)."""

    id: int
    campaign_id: int | None
    program_id: int | None
    tier: str  # search | validation | long_horizon | test
    stage: str  # probe | screen | select | measure
    task: str
    job: str  # the sandbox job's name: evaluate | probe
    baseline: bool
    runs: int
    cached_runs: int
    seconds: float
    waited: float | None
    device: str
    worker: str
    ok: bool
    started_at: str


@dataclass(frozen=True)
class Stage:
    """One evaluation of a program on a tier: its wall time (jobs queued and running, scoring)."""

    id: int
    campaign_id: int | None
    program_id: int | None
    tier: str  # search | validation | long_horizon | test
    stage: str  # screen | full (as the evaluator reports it)
    seconds: float
    runs: int
    cached_runs: int
    started_at: str


@dataclass(frozen=True)
class LineageNode:
    """A program and the trees of its parents. ``repeated`` marks an ancestor already shown
    elsewhere in the tree (crossover makes lineage a DAG); its parents are not expanded again."""

    program: ProgramRecord
    parents: list[LineageNode] = field(default_factory=list)
    repeated: bool = False
    missing_parent_ids: list[int] = field(default_factory=list)
