"""Budgets and the ledger of what a campaign has spent.

A :class:`Budget` is the user's caps (tokens, dollars, evaluations, wall time; ``None`` means
no cap). A :class:`Spend` is the running total, shared by every thread of a campaign: the LLM
client charges each answer to it and checks it *before* every request, so a request is never
sent once a cap is reached (:class:`BudgetExhausted`). With several requests in flight the last
ones may overshoot a cap by at most their own cost.

A dollar cap cannot stop a free local model (its cost is 0): the token, evaluation and time
caps still apply to it. Answers served from the response cache cost no tokens and no dollars.

``Spend.to_dict()`` / ``Spend.from_dict()`` round-trip through the archive, so ``--resume``
continues the same totals; wall time counts only time the campaign was running.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Protocol


class BudgetExhausted(Exception):
    """A budget cap was reached; ``reason`` says which, in words. ``abandoned``: requests of
    the call given up on the way (timeouts; charged, see ``discover.llm``)."""

    def __init__(self, reason: str):
        self.reason = reason
        self.abandoned: list[dict[str, Any]] = []
        super().__init__(reason)


@dataclass(frozen=True)
class Budget:
    """Caps on a campaign's spending; ``None`` leaves that resource uncapped."""

    max_tokens: int | None = None
    max_usd: float | None = None
    max_evaluations: int | None = None
    max_seconds: float | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and value < 0:
                raise ValueError(f"budget {f.name} must be >= 0 or None, got {value}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Budget:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class Charge(Protocol):
    """What :meth:`Spend.charge_llm` needs from an answer (a ``discover.llm.Completion``)."""

    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    cached: bool


class Spend:
    """Thread-safe running totals of a campaign, checked against a :class:`Budget`.

    ``llm_calls`` counts answers that came from the server, ``cached_calls`` answers served
    from the response cache (which charge no tokens or dollars).
    """

    def __init__(self, budget: Budget | None = None, *, clock: Callable[[], float] = time.time):
        self.budget = budget or Budget()
        self._clock = clock
        self._lock = threading.Lock()
        self.tokens_in = 0
        self.tokens_out = 0
        self.usd = 0.0
        self.evaluations = 0
        self.llm_calls = 0
        self.cached_calls = 0
        self.started_at = clock()
        self._seconds_before = 0.0  # wall time of earlier sessions of a resumed campaign
        self._session_start = self.started_at

    # --- charging ----------------------------------------------------------------------

    def charge_llm(self, completion: Charge) -> None:
        """Add one LLM answer; a cached answer only counts as a cached call."""
        with self._lock:
            if completion.cached:
                self.cached_calls += 1
                return
            self.llm_calls += 1
            self.tokens_in += int(completion.prompt_tokens)
            self.tokens_out += int(completion.completion_tokens)
            self.usd += float(completion.cost_usd)

    def charge_evaluations(self, n: int = 1) -> None:
        """Add ``n`` evaluations (proxy-task runs) that were actually executed, not cache hits."""
        if n < 0:
            raise ValueError(f"cannot charge a negative number of evaluations ({n})")
        with self._lock:
            self.evaluations += n

    # --- reading -----------------------------------------------------------------------

    @property
    def tokens(self) -> int:
        """Tokens in and out together: what ``max_tokens`` caps."""
        return self.tokens_in + self.tokens_out

    @property
    def seconds(self) -> float:
        """Wall time this campaign has been running, over all its sessions."""
        return self._seconds_before + (self._clock() - self._session_start)

    def exhausted(self) -> str | None:
        """The reason a cap is reached, in words, or ``None`` while every cap has room."""
        b = self.budget
        with self._lock:
            if b.max_usd is not None and self.usd >= b.max_usd:
                return f"dollar budget of ${b.max_usd:.2f} reached (${self.usd:.2f} spent)"
            if b.max_tokens is not None and self.tokens >= b.max_tokens:
                return f"token budget of {b.max_tokens:,} reached ({self.tokens:,} used)"
            if b.max_evaluations is not None and self.evaluations >= b.max_evaluations:
                return f"evaluation budget of {b.max_evaluations:,} reached ({self.evaluations:,} run)"
            seconds = self.seconds
            if b.max_seconds is not None and seconds >= b.max_seconds:
                return f"time budget of {b.max_seconds:g} s reached ({seconds:.0f} s elapsed)"
        return None

    def check(self) -> None:
        """Raise :class:`BudgetExhausted` if a cap is reached."""
        reason = self.exhausted()
        if reason is not None:
            raise BudgetExhausted(reason)

    def remaining(self) -> dict[str, float | None]:
        """What is left of each cap (never below 0); ``None`` for an uncapped resource."""
        b = self.budget
        with self._lock:
            left = {
                "tokens": None if b.max_tokens is None else max(0, b.max_tokens - self.tokens),
                "usd": None if b.max_usd is None else max(0.0, b.max_usd - self.usd),
                "evaluations": None if b.max_evaluations is None else max(0, b.max_evaluations - self.evaluations),
                "seconds": None if b.max_seconds is None else max(0.0, b.max_seconds - self.seconds),
            }
        return left

    # --- persistence -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Totals as plain data (the budget is stored with the campaign config, not here)."""
        with self._lock:
            return {
                "tokens_in": self.tokens_in,
                "tokens_out": self.tokens_out,
                "usd": self.usd,
                "evaluations": self.evaluations,
                "llm_calls": self.llm_calls,
                "cached_calls": self.cached_calls,
                "started_at": self.started_at,
                "seconds": self.seconds,
            }

    @classmethod
    def from_dict(cls, data: dict[str, Any], budget: Budget | None = None, *,
                  clock: Callable[[], float] = time.time) -> Spend:
        """Restore totals saved by :meth:`to_dict`; the wall clock resumes from ``seconds``."""
        spend = cls(budget, clock=clock)
        spend.tokens_in = int(data.get("tokens_in", 0))
        spend.tokens_out = int(data.get("tokens_out", 0))
        spend.usd = float(data.get("usd", 0.0))
        spend.evaluations = int(data.get("evaluations", 0))
        spend.llm_calls = int(data.get("llm_calls", 0))
        spend.cached_calls = int(data.get("cached_calls", 0))
        spend.started_at = float(data.get("started_at", spend.started_at))
        spend._seconds_before = float(data.get("seconds", 0.0))
        return spend

    def __repr__(self) -> str:
        return (f"Spend(tokens_in={self.tokens_in}, tokens_out={self.tokens_out}, usd={self.usd:.4f}, "
                f"evaluations={self.evaluations}, llm_calls={self.llm_calls}, cached_calls={self.cached_calls})")
