"""What a campaign tells its caller: the events of the live view and the closing summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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
