"""The LLM client: any OpenAI-compatible endpoint, one model per role, retries, cost, cache.

    client = LLMClient(LLMSettings(base_url="http://localhost:8000/v1",
                                   models={"proposer": "qwen2.5-coder", "critic": "qwen2.5-coder"}),
                       spend=Spend(Budget(max_tokens=2_000_000)))
    answer = client.complete([{"role": "user", "content": "..."}], role="proposer")
    answer.text, answer.prompt_tokens, answer.cost_usd

- Transport is the ``openai`` package with its own retries off; retries are ours (``tenacity``):
  exponential backoff with jitter on rate limits (429), timeouts, connection errors, 5xx, and
  bodies that are not a chat completion or streams cut short. A 429's ``Retry-After`` is
  honoured (we wait at least that long). After ``max_attempts`` an :class:`LLMError` names the
  last cause. Errors no retry can fix (401 bad key, 404 unknown model, 400) fail at once.
- The API key comes from the environment variable ``api_key_env`` (default
  ``OPENAI_API_KEY``); a local server (any ``base_url``) may run without one.
- Every answer is charged to a :class:`~discover.budget.Spend`, which is checked before each
  request: once a cap is reached, :class:`~discover.budget.BudgetExhausted` is raised and
  nothing is sent. Cost comes from a price table ``{model: (usd per 1M input tokens,
  usd per 1M output tokens)}``; a model not in it costs 0 (with a one-time warning).
- Answers are cached on disk (one JSON file per request, keyed by the SHA-256 of model,
  messages, temperature, max_tokens, seed and n; never the key or URL). Mode ``read_write``
  serves hits and stores misses; ``replay`` only reads, and a miss raises :class:`ReplayMiss`,
  so a recorded campaign reruns identically without a server; ``off`` disables it. A hit
  costs no tokens or dollars. To sample the same prompt twice, pass different ``seed`` values.
- At most ``max_concurrency`` requests are in flight at once, across threads.
- A local endpoint (localhost, a loopback or private address, ``*.local``) is often one slow
  server with one slot. Unless the settings say otherwise it gets ``max_tokens`` 1024 (a
  runaway answer cannot hold the server for minutes), one request at a time, and streaming:
  a request given up (timeout, time budget) closes its stream, which llama.cpp's servers
  take as "stop computing". A retry after a timeout changes the sampling seed, so a server
  that still computes the abandoned copy is not asked for the same runaway answer again.
- Every request sent is counted, answered or not: a timed-out or cancelled attempt's tokens
  are charged and reported in ``abandoned`` (the prompt estimated as characters / 4 and the
  answer as what was streamed before it was given up; 0 when nothing streamed, so for a
  non-streamed request the completion is unknown and counted as 0).
- A time budget (``Spend``'s ``max_seconds``) bounds each request: its timeout never runs past
  the deadline, and a request still in flight then is cancelled (:class:`RequestCancelled`).
- A prompt that does not fit the server's context (HTTP 400 "maximum context length" and its
  llama.cpp/vLLM wordings) is :class:`ContextLengthError`, saying prompt size vs context.
"""

from __future__ import annotations

import email.utils
import hashlib
import ipaddress
import itertools
import re
import json
import math
import os
import random
import tempfile
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import openai
import tenacity
from openai.types.chat import ChatCompletion

from discover.budget import BudgetExhausted, Spend

__all__ = [
    "CACHE_MODES",
    "DEFAULT_PRICES",
    "ROLES",
    "BudgetExhausted",
    "Completion",
    "ContextLengthError",
    "LLMClient",
    "LLMError",
    "LLMSettings",
    "ReplayMiss",
    "RequestCancelled",
    "ResponseCache",
    "is_local_endpoint",
    "missing_key_warning",
    "server_context",
]

ROLES = ("proposer", "critic")
"""Who asks: the proposer writes programs, the critic writes TextGrad-style critiques."""

CACHE_MODES = ("off", "read_write", "replay")

CHECK_MESSAGES = ({"role": "user", "content": "Reply with the single word: ready"},)
"""What :meth:`LLMClient.check` asks: the smallest request that proves model, key and URL work."""

DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    # USD per 1M (input, output) tokens, OpenAI list prices when this was written; override
    # or extend with LLMSettings.prices (a local model is free: leave it out, or map it to 0).
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
}


LOCAL_MAX_TOKENS = 1024
"""max_tokens for a local endpoint when the settings leave it unset: a program is 300-800 tokens."""
REMOTE_MAX_TOKENS = 2048
LOCAL_CONCURRENCY = 1
"""Requests in flight to a local endpoint unless set: a llama.cpp server has one slot by default."""
REMOTE_CONCURRENCY = 4
DEADLINE_GRACE = 1.0
"""Seconds a request may run past the time budget's deadline before it is cancelled."""


class LLMError(Exception):
    """A request could not be answered; the message says why and what to do. ``cause`` is
    the last underlying exception, if any; ``abandoned`` the attempts given up on the way
    (see :class:`Abandoned`), whose tokens were charged."""

    def __init__(self, message: str, cause: BaseException | None = None, abandoned: list[dict] | None = None):
        self.cause = cause
        self.abandoned = list(abandoned or [])
        super().__init__(message)


class ContextLengthError(LLMError):
    """The prompt (plus the room asked for the answer) does not fit the server's context.
    ``prompt_tokens`` and ``context`` are the server's figures when its message carries them.
    No retry or other proposal can fix it: the campaign stops and says what to change."""

    def __init__(self, message: str, cause: BaseException | None = None, *, prompt_tokens: int | None = None,
                 context: int | None = None):
        super().__init__(message, cause)
        self.prompt_tokens = prompt_tokens
        self.context = context


class RequestCancelled(BudgetExhausted):
    """A request was in flight when the time budget ran out and was given up (its stream
    closed); ``abandoned`` holds it (and any earlier timed-out attempts), tokens estimated."""

    def __init__(self, reason: str, abandoned: list[dict] | None = None):
        super().__init__(reason)
        self.abandoned = list(abandoned or [])


class ReplayMiss(LLMError):
    """Replay mode found no cached answer for a request."""


class _MalformedResponse(Exception):
    """The server answered 200 with something that is not a chat completion (retryable)."""


class _TruncatedResponse(Exception):
    """A streamed answer ended before its finish chunk (retryable)."""


class _GivenUp(Exception):
    """A request timed out or hit the deadline; ``partial`` is what had streamed by then."""

    def __init__(self, message: str, partial: str = "", chunks: int = 0, deadline: bool = False):
        super().__init__(message)
        self.partial, self.chunks, self.deadline = partial, chunks, deadline


_TRANSIENT = (
    openai.RateLimitError,
    openai.APITimeoutError,
    _GivenUp,
    openai.APIConnectionError,
    openai.InternalServerError,
    _MalformedResponse,
    _TruncatedResponse,
)


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, _TRANSIENT):
        return True
    # 408 request timeout and 409 conflict are worth a retry too (the openai client agrees)
    return isinstance(exc, openai.APIStatusError) and exc.status_code in (408, 409)


@dataclass(frozen=True)
class Completion:
    """One answer. ``prompt_tokens``/``completion_tokens`` describe the answer (from the
    server's ``usage``, or estimated as characters / 4 when a server reports none);
    ``cost_usd`` is what this call cost: 0 for a cache hit. ``attempts`` counts requests sent
    (0 for a cache hit); ``seconds`` is the wall time of the call, retries included."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    model: str
    cached: bool = False
    attempts: int = 1
    seconds: float = 0.0
    finish_reason: str | None = None
    abandoned: list[dict[str, Any]] = field(default_factory=list)
    """Attempts given up before this answer (timeouts), each ``{"reason", "prompt_tokens",
    "completion_tokens", "text", "seconds", "estimated"}``; their tokens are charged too."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Completion:
        return cls(**data)


@dataclass
class LLMSettings:
    """How to reach the model(s). Plain data; the campaign config fills it in."""

    models: dict[str, str] = field(default_factory=lambda: {"proposer": "gpt-4.1-mini"})
    """Model per role; a role without an entry uses the proposer's model."""
    base_url: str | None = None
    """An OpenAI-compatible endpoint (``http://localhost:8000/v1``); None for api.openai.com."""
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = 0.8
    max_tokens: int | None = None
    """None: 1024 for a local endpoint, 2048 otherwise."""
    max_tokens_param: str = "max_tokens"
    """Request field carrying max_tokens; reasoning models want ``max_completion_tokens``."""
    timeout: float = 120.0
    """Seconds to wait for an answer (for a stream: between chunks) before retrying."""
    max_attempts: int = 5
    backoff_base: float = 1.0
    """First retry waits about this long (seconds); each further retry doubles it, plus jitter."""
    backoff_max: float = 60.0
    max_retry_after: float = 300.0
    """A server's Retry-After is honoured up to this many seconds."""
    max_concurrency: int | None = None
    """None: 1 for a local endpoint (one server slot), 4 otherwise."""
    stream: bool | None = None
    """None: stream from a local endpoint (a request given up stops the server computing it)."""
    cache_dir: str | Path | None = None
    cache_mode: str = "read_write"
    prices: dict[str, tuple[float, float]] = field(default_factory=lambda: dict(DEFAULT_PRICES))

    def __post_init__(self) -> None:
        if self.cache_mode not in CACHE_MODES:
            raise ValueError(f"cache_mode must be one of {', '.join(CACHE_MODES)}, got {self.cache_mode!r}")
        if self.cache_mode == "replay" and self.cache_dir is None:
            raise ValueError("cache_mode 'replay' needs a cache_dir to replay from")
        if "proposer" not in self.models:
            raise ValueError(f"models must name a 'proposer' model, got {self.models}")
        unknown = set(self.models) - set(ROLES)
        if unknown:
            raise ValueError(f"unknown model role(s) {sorted(unknown)}; roles are {', '.join(ROLES)}")
        local = is_local_endpoint(self.base_url)
        if self.max_tokens is None:
            self.max_tokens = LOCAL_MAX_TOKENS if local else REMOTE_MAX_TOKENS
        if self.max_concurrency is None:
            self.max_concurrency = LOCAL_CONCURRENCY if local else REMOTE_CONCURRENCY
        if self.stream is None:
            self.stream = local
        if self.max_attempts < 1 or self.max_concurrency < 1:
            raise ValueError("max_attempts and max_concurrency must be at least 1")


# --- the on-disk response cache ------------------------------------------------------------


class ResponseCache:
    """One JSON file per request under ``directory``, named by the request's SHA-256.

    Writes are atomic (a temporary file, then ``os.replace``), so a campaign killed mid-write
    leaves either the old state or the full entry, and concurrent writers cannot interleave.
    """

    def __init__(self, directory: str | Path, mode: str = "read_write"):
        if mode not in CACHE_MODES or mode == "off":
            raise ValueError(f"a ResponseCache mode is 'read_write' or 'replay', got {mode!r}")
        self.directory = Path(directory)
        self.mode = mode

    @staticmethod
    def key(request: dict[str, Any]) -> str:
        """SHA-256 of the canonical JSON of the request's identity (model, messages, sampling)."""
        identity = {name: request.get(name) for name in ("model", "messages", "temperature", "max_tokens", "seed", "n")}
        if request.get("extra_body_sha256"):  # a grammar-constrained request is another request
            identity["extra_body_sha256"] = request["extra_body_sha256"]
        text = json.dumps(identity, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def path(self, request: dict[str, Any]) -> Path:
        return self.directory / f"{self.key(request)}.json"

    def get(self, request: dict[str, Any]) -> dict[str, Any] | None:
        """The stored answer, or None on a miss (in replay mode a miss raises ReplayMiss)."""
        path = self.path(request)
        entry = None
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))["completion"]
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError) as exc:
            warnings.warn(f"ignoring unreadable LLM cache entry {path}: {exc}", stacklevel=2)
        if entry is None and self.mode == "replay":
            raise ReplayMiss(
                f"replay mode: no cached answer in {self.directory} for a request to model "
                f"{request.get('model')!r} ({_describe_messages(request.get('messages', []))}; cache key "
                f"{self.key(request)[:16]}). The prompt differs from the recorded campaign; rerun with "
                f"cache mode 'read_write' to ask the server.")
        return entry

    def put(self, request: dict[str, Any], completion: dict[str, Any]) -> None:
        """Store an answer for ``request`` (read_write mode only)."""
        if self.mode != "read_write":
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        entry = {"key": self.key(request), "request": request, "completion": completion, "saved_at": time.time()}
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(entry, f, ensure_ascii=False, indent=1)
            os.replace(tmp, self.path(request))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _describe_messages(messages: list[dict[str, Any]]) -> str:
    if not messages:
        return "no messages"
    last = " ".join(str(messages[-1].get("content", "")).split())
    return f"{len(messages)} message(s), the last starting {last[:80]!r}"


# --- the client ----------------------------------------------------------------------------


def _retry_after_seconds(exc: BaseException) -> float | None:
    """Seconds a 429/503 asked us to wait (``retry-after-ms`` or ``Retry-After``), if any."""
    response = getattr(exc, "response", None)
    if response is None:
        return None
    headers = response.headers
    try:
        if headers.get("retry-after-ms"):
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        value = headers.get("retry-after")
        if not value:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, OverflowError):
        return None


def _estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def _cause_text(exc: BaseException) -> str:
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}: {exc.message}"
    return f"{type(exc).__name__.lstrip('_')}: {exc}"


class LLMClient:
    """Chat completions with retries, a hard budget, a response cache and bounded concurrency.

    Thread-safe: share one client between the campaign's proposer threads. ``on_request``, if
    given, is called with a dict for every request sent and again when it ends (see
    :meth:`_report`): what a live view needs to show requests in flight.
    """

    def __init__(self, settings: LLMSettings | None = None, *, spend: Spend | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 on_request: Callable[[dict[str, Any]], None] | None = None):
        self.settings = settings or LLMSettings()
        self.spend = spend if spend is not None else Spend()
        s = self.settings
        self.cache = None if s.cache_mode == "off" or s.cache_dir is None else ResponseCache(s.cache_dir, s.cache_mode)
        self._sleep = sleep
        self._slots = threading.BoundedSemaphore(s.max_concurrency)
        self._lock = threading.Lock()
        self._openai: openai.OpenAI | None = None
        self._unpriced: set[str] = set()
        self.on_request = on_request
        self._ids = itertools.count(1)
        self.in_flight = 0

    # --- public ------------------------------------------------------------------------

    def model_for(self, role: str) -> str:
        """The model that answers ``role``; a role without its own model uses the proposer's."""
        if role not in ROLES:
            raise LLMError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
        return self.settings.models.get(role) or self.settings.models["proposer"]

    def complete(self, messages: list[dict[str, str]], role: str = "proposer", *,
                 temperature: float | None = None, max_tokens: int | None = None,
                 seed: int | None = None, extra_body: dict[str, Any] | None = None) -> Completion:
        """Ask the ``role``'s model for one answer to a chat ``messages`` list.

        ``extra_body``: fields merged into the request body as they are (a local server's
        ``grammar``, see :mod:`discover.constrained`); the cache keys on their digest.

        Raises :class:`BudgetExhausted` (nothing more was sent; :class:`RequestCancelled` when
        a request in flight was given up at the time budget's deadline), :class:`ReplayMiss`
        (replay mode, not cached), :class:`ContextLengthError` (the prompt does not fit the
        server's context) or :class:`LLMError` (the server could not answer, after retries).
        """
        started = time.monotonic()
        _check_messages(messages)
        s = self.settings
        request = {
            "model": self.model_for(role),
            "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
            "temperature": s.temperature if temperature is None else temperature,
            "max_tokens": s.max_tokens if max_tokens is None else max_tokens,
            "seed": seed,
            "n": 1,
        }
        if extra_body:
            request["extra_body_sha256"] = hashlib.sha256(json.dumps(extra_body, sort_keys=True).encode()).hexdigest()
        if self.cache is not None:
            hit = self.cache.get(request)
            if hit is not None:
                completion = Completion(
                    text=hit["text"], prompt_tokens=int(hit["prompt_tokens"]),
                    completion_tokens=int(hit["completion_tokens"]), cost_usd=0.0,
                    model=hit.get("model") or request["model"], cached=True, attempts=0,
                    seconds=time.monotonic() - started, finish_reason=hit.get("finish_reason"))
                self.spend.charge_llm(completion)
                return completion
        answer, attempts, abandoned = self._run(request, role, extra_body, budgeted=True)
        completion = self._charge(request, answer, attempts, started, abandoned)
        if self.cache is not None:
            self.cache.put(request, {**answer, "cost_usd": completion.cost_usd})
        return completion

    def check(self, role: str = "proposer", max_tokens: int = 16) -> Completion:
        """One small live request to ``role``'s model (never from the cache): does the endpoint
        answer, take the key and know the model? Run before a campaign, so a broken endpoint is
        one clear :class:`LLMError` instead of a campaign of failed proposals.

        Rate limits, 5xx and timeouts are retried as in :meth:`complete`; a refused connection,
        a rejected key (401/403) or an unknown model (404) fail at once. The answer is charged
        to ``spend`` like any other.
        """
        started = time.monotonic()
        s = self.settings
        request = {
            "model": self.model_for(role),
            "messages": [dict(m) for m in CHECK_MESSAGES],
            "temperature": s.temperature, "max_tokens": max_tokens, "seed": 0, "n": 1,
        }
        answer, attempts, abandoned = self._run(request, role, None, budgeted=False)
        return self._charge(request, answer, attempts, started, abandoned)

    def price(self, model: str) -> tuple[float, float] | None:
        """(USD per 1M input tokens, USD per 1M output tokens) for ``model``, if known."""
        return self.settings.prices.get(model)

    # --- internals ---------------------------------------------------------------------

    def _run(self, request: dict[str, Any], role: str, extra_body: dict[str, Any] | None, *,
             budgeted: bool) -> tuple[dict[str, Any], int, list[dict[str, Any]]]:
        """Send ``request`` with retries. ``budgeted``: check the budget before every attempt
        and keep each attempt inside the time budget (the preflight check is neither: it runs
        before the campaign's clock). A refused connection is retried only when budgeted (a
        campaign's server may be restarting; a preflight's is simply not there)."""
        s = self.settings
        attempts = 0
        timeouts = 0
        abandoned: list[dict[str, Any]] = []

        def attempt() -> dict[str, Any]:
            nonlocal attempts, timeouts
            with self._slots:
                if budgeted:
                    self.spend.check()  # raises BudgetExhausted before anything is sent
                deadline = self._deadline() if budgeted else None
                timeout = s.timeout if deadline is None else max(
                    0.05, min(s.timeout, deadline + DEADLINE_GRACE - time.monotonic()))
                attempts += 1
                sent = request
                if timeouts and request["seed"] is not None:
                    # Not the same request again: a server still computing the abandoned copy
                    # would otherwise be asked for the same (runaway) answer a second time.
                    sent = {**request, "seed": (request["seed"] + 1_000_003 * timeouts) % 2**31}
                rid = next(self._ids)
                self._report(rid, "start", role, sent, attempts, timeout=timeout)
                t0 = time.monotonic()
                try:
                    answer = self._send(sent, extra_body, timeout, None if deadline is None else deadline + DEADLINE_GRACE)
                except (openai.APITimeoutError, _GivenUp) as exc:
                    cancelled = deadline is not None and time.monotonic() >= deadline
                    record = self._abandon(sent, exc, "cancelled" if cancelled else "timeout", time.monotonic() - t0)
                    abandoned.append(record)
                    self._report(rid, record["reason"], role, sent, attempts, seconds=record["seconds"],
                                 prompt_tokens=record["prompt_tokens"], completion_tokens=record["completion_tokens"])
                    if cancelled:
                        reason = self.spend.exhausted() or "time budget reached"
                        raise RequestCancelled(f"{reason}; a {role} request in flight was given up after "
                                               f"{record['seconds']:.1f} s", abandoned) from exc
                    timeouts += 1
                    raise
                except BaseException as exc:
                    self._report(rid, "error", role, sent, attempts, seconds=time.monotonic() - t0,
                                 error=_cause_text(exc)[:200])
                    raise
                self._report(rid, "done", role, sent, attempts, seconds=time.monotonic() - t0,
                             prompt_tokens=answer["prompt_tokens"], completion_tokens=answer["completion_tokens"])
                return answer

        def worth_retrying(exc: BaseException) -> bool:
            unreachable = isinstance(exc, openai.APIConnectionError) and not isinstance(exc, openai.APITimeoutError)
            return _is_transient(exc) and (budgeted or not unreachable)

        retrying = tenacity.Retrying(stop=tenacity.stop_after_attempt(s.max_attempts), wait=self._wait,
                                     retry=tenacity.retry_if_exception(worth_retrying), sleep=self._sleep,
                                     reraise=True)
        try:
            return retrying(attempt), attempts, abandoned
        except BudgetExhausted as exc:
            exc.abandoned = abandoned
            raise
        except (openai.OpenAIError, _MalformedResponse, _TruncatedResponse, _GivenUp) as exc:
            raise self._failure(request, attempts, exc, abandoned) from exc

    def _failure(self, request: dict[str, Any], attempts: int, exc: BaseException,
                 abandoned: list[dict[str, Any]]) -> LLMError:
        """The :class:`LLMError` for a request that failed with ``exc`` after ``attempts``."""
        if isinstance(exc, openai.APIStatusError) and not _is_transient(exc):
            context = _context_overflow(exc)
            if context is not None:
                prompt_tokens, n_ctx = context
                if prompt_tokens is None:
                    prompt_tokens = _estimate_tokens(_prompt_text(request))
                    size = f"about {prompt_tokens:,} tokens (estimated)"
                else:
                    size = f"{prompt_tokens:,} tokens"
                fits = f"the server's context of {n_ctx:,} tokens" if n_ctx else "the server's context"
                return ContextLengthError(
                    f"the prompt does not fit the model's context: the prompt is {size} plus up to "
                    f"{request['max_tokens']:,} for the answer, more than {fits} (model {request['model']!r} at "
                    f"{self._where()}: {' '.join(exc.message.split())[:200]}). Start the server with a larger "
                    f"context (llama.cpp: -c 8192, llama-cpp-python: --n_ctx 8192, vLLM: --max-model-len 8192), "
                    f"or set llm.compact_prompt = \"on\" and a smaller llm.max_tokens",
                    exc, prompt_tokens=prompt_tokens, context=n_ctx)
            error = LLMError(self._rejected_message(request, exc), exc)
        elif isinstance(exc, openai.APIConnectionError) and not isinstance(exc, openai.APITimeoutError):
            error = LLMError(f"cannot reach {self._where()} after {attempts} attempt(s): {_cause_text(exc)} "
                             f"(is the server running? check llm.base_url)", exc)
        elif _is_transient(exc):
            error = LLMError(
                f"model {request['model']!r} at {self._where()} did not answer after {attempts} attempt(s); "
                f"last error: {_cause_text(exc)}. Check that the server is up, or raise max_attempts/timeout.", exc)
        else:
            error = LLMError(f"the request to {self._where()} failed: {_cause_text(exc)}", exc)
        error.abandoned = abandoned
        return error

    def _deadline(self) -> float | None:
        """time.monotonic() at which the time budget runs out, or None without one."""
        left = self.spend.remaining()["seconds"]
        return None if left is None else time.monotonic() + left

    def _abandon(self, request: dict[str, Any], exc: BaseException, reason: str, seconds: float) -> dict[str, Any]:
        """Record and charge an attempt given up: the server read the prompt and generated at
        least what streamed (estimated), whether or not we got the answer."""
        partial = getattr(exc, "partial", "")
        chunks = getattr(exc, "chunks", 0)
        record = {"reason": reason, "prompt_tokens": _estimate_tokens(_prompt_text(request)),
                  "completion_tokens": min(request["max_tokens"], max(chunks, _estimate_tokens(partial)) if partial else chunks),
                  "text": partial, "seconds": round(seconds, 3), "estimated": True}
        record["cost_usd"] = self._cost(request["model"], request["model"], record["prompt_tokens"],
                                        record["completion_tokens"])
        self.spend.charge_llm(Completion("", record["prompt_tokens"], record["completion_tokens"],
                                         record["cost_usd"], request["model"]))
        return record

    def _charge(self, request: dict[str, Any], answer: dict[str, Any], attempts: int, started: float,
                abandoned: list[dict[str, Any]]) -> Completion:
        cost = self._cost(request["model"], answer["model"], answer["prompt_tokens"], answer["completion_tokens"])
        completion = Completion(
            text=answer["text"], prompt_tokens=answer["prompt_tokens"], completion_tokens=answer["completion_tokens"],
            cost_usd=cost, model=answer["model"], cached=False, attempts=attempts,
            seconds=time.monotonic() - started, finish_reason=answer["finish_reason"], abandoned=list(abandoned))
        self.spend.charge_llm(completion)
        return completion

    def _report(self, rid: int, phase: str, role: str, request: dict[str, Any], attempt: int, **info: Any) -> None:
        """Tell ``on_request``: phase "start" when a request is sent, then one of "done",
        "timeout", "cancelled" (given up at the time budget's deadline) or "error". The dict
        also holds ``id`` (start and end share it), ``role``, ``model``, ``attempt``, ``in_flight``
        (requests in flight after this one started or ended), and, as they apply, ``timeout``
        (seconds this attempt may take), ``seconds``, ``prompt_tokens``, ``completion_tokens``
        (estimated for timeouts and cancellations) and ``error``."""
        with self._lock:
            self.in_flight += 1 if phase == "start" else -1
            in_flight = self.in_flight
        if self.on_request is None:
            return
        try:
            self.on_request({"id": rid, "phase": phase, "role": role, "model": request["model"], "attempt": attempt,
                             "in_flight": in_flight, **info})
        except Exception as exc:  # noqa: BLE001 (a display bug must not fail a request)
            warnings.warn(f"on_request callback failed: {exc}", stacklevel=2)

    def _where(self) -> str:
        return self.settings.base_url or os.environ.get("OPENAI_BASE_URL") or "api.openai.com"

    def _client(self) -> openai.OpenAI:
        with self._lock:
            if self._openai is None:
                s = self.settings
                key = os.environ.get(s.api_key_env, "").strip()
                if not key:
                    if s.base_url is None and not os.environ.get("OPENAI_BASE_URL"):
                        raise LLMError(
                            f"no API key: set the environment variable {s.api_key_env} "
                            f"(or set base_url to a local OpenAI-compatible server that needs none)")
                    key = "no-key-needed"  # local servers ignore it; the client insists on one
                self._openai = openai.OpenAI(base_url=s.base_url, api_key=key, timeout=s.timeout, max_retries=0)
            return self._openai

    def _wait(self, state: tenacity.RetryCallState) -> float:
        s = self.settings
        # exponential backoff plus jitter, so that parallel workers do not retry in lockstep
        backoff = min(s.backoff_max, s.backoff_base * 2 ** (state.attempt_number - 1)) + random.uniform(0, s.backoff_base)
        exc = state.outcome.exception() if state.outcome else None
        asked = _retry_after_seconds(exc) if exc is not None else None
        return backoff if asked is None else max(backoff, min(asked, s.max_retry_after))

    def _send(self, request: dict[str, Any], extra_body: dict[str, Any] | None = None,
              timeout: float | None = None, deadline: float | None = None) -> dict[str, Any]:
        """One HTTP request; returns text, tokens, model and finish_reason. ``timeout``: seconds
        for this attempt (a stream: between chunks); ``deadline``: a monotonic time after
        which a stream is closed (the server stops) and :class:`_GivenUp` raised."""
        s = self.settings
        kwargs: dict[str, Any] = {
            "model": request["model"],
            "messages": request["messages"],
            "temperature": request["temperature"],
            s.max_tokens_param: request["max_tokens"],
        }
        if request["seed"] is not None:
            kwargs["seed"] = request["seed"]
        if extra_body:
            kwargs["extra_body"] = extra_body
        if timeout is not None:
            kwargs["timeout"] = timeout
        client = self._client()
        try:
            if s.stream:
                return self._read_stream(request, client.chat.completions.create(
                    **kwargs, stream=True, stream_options={"include_usage": True}), deadline)
            response = client.chat.completions.create(**kwargs)
        except (json.JSONDecodeError, openai.APIResponseValidationError) as exc:  # the body was not JSON
            raise _MalformedResponse(f"the server's answer is not a chat completion ({exc})") from exc
        if not isinstance(response, ChatCompletion) or not response.choices:
            raise _MalformedResponse(f"the server's answer has no choices: {str(response)[:200]!r}")
        choice = response.choices[0]
        text = (choice.message.content if choice.message is not None else None) or ""
        usage = response.usage
        return {
            "text": text,
            "prompt_tokens": usage.prompt_tokens if usage else _estimate_tokens(_prompt_text(request)),
            "completion_tokens": usage.completion_tokens if usage else _estimate_tokens(text),
            "model": response.model or request["model"],
            "finish_reason": choice.finish_reason,
        }

    def _read_stream(self, request: dict[str, Any], stream: Any, deadline: float | None = None) -> dict[str, Any]:
        pieces: list[str] = []
        chunks = 0
        finish_reason = None
        usage = None
        model = None
        try:
            for chunk in stream:
                model = getattr(chunk, "model", None) or model
                if getattr(chunk, "usage", None) is not None:
                    usage = chunk.usage
                for choice in chunk.choices or ():
                    if choice.index != 0:
                        continue
                    if choice.delta is not None and choice.delta.content:
                        pieces.append(choice.delta.content)
                        chunks += 1
                    if choice.finish_reason:
                        finish_reason = choice.finish_reason
                if deadline is not None and finish_reason is None and time.monotonic() >= deadline:
                    raise _GivenUp("the time budget ran out mid-answer", "".join(pieces), chunks, deadline=True)
        except json.JSONDecodeError as exc:  # an event whose data is not JSON
            raise _MalformedResponse(f"the stream carried an event that is not JSON ({exc})") from exc
        except Exception as exc:
            # A read timeout between chunks: openai wraps it in APITimeoutError in some versions
            # and lets the transport's (httpx) TimeoutException through in others.
            if isinstance(exc, openai.APITimeoutError) or any(
                    c.__name__ in ("TimeoutException", "ReadTimeout") for c in type(exc).__mro__):
                raise _GivenUp(f"no chunk within the timeout ({type(exc).__name__})", "".join(pieces), chunks) from exc
            raise
        finally:
            stream.close()  # closing the connection is what tells the server to stop
        text = "".join(pieces)
        if finish_reason is None:
            raise _TruncatedResponse(
                f"the stream ended before the answer was complete ({len(text)} characters, no finish_reason)")
        return {
            "text": text,
            "prompt_tokens": usage.prompt_tokens if usage else _estimate_tokens(_prompt_text(request)),
            # one streamed chunk is one token on llama.cpp and vLLM; never fewer than chars / 4,
            # never more than the request allowed (chars / 4 overestimates code)
            "completion_tokens": usage.completion_tokens if usage else min(
                request["max_tokens"], max(chunks, _estimate_tokens(text))),
            "model": model or request["model"],
            "finish_reason": finish_reason,
        }

    def _cost(self, requested: str, answered: str, prompt_tokens: int, completion_tokens: int) -> float:
        price = self.price(requested) or self.price(answered)
        if price is None:
            with self._lock:
                first = requested not in self._unpriced
                self._unpriced.add(requested)
            if first:
                warnings.warn(
                    f"no price for model {requested!r}: its calls count as $0 (add it to the LLM price "
                    f"table to enforce a dollar budget; token and time budgets still apply)", stacklevel=3)
            return 0.0
        usd_in, usd_out = price
        return (prompt_tokens * usd_in + completion_tokens * usd_out) / 1e6

    def _rejected_message(self, request: dict[str, Any], exc: openai.APIStatusError) -> str:
        where, model = self._where(), request["model"]
        hints = {
            401: f"the API key was rejected: set {self.settings.api_key_env} to a valid key",
            403: f"this key may not use model {model!r}",
            404: f"model {model!r} or the chat endpoint does not exist there: check the model name and base_url",
            400: "the request was rejected (a wrong parameter for this model? reasoning models need "
                 "llm.max_tokens_param = \"max_completion_tokens\" and llm.temperature = 1)",
        }
        hint = hints.get(exc.status_code, "the request was rejected")
        return f"{where} answered HTTP {exc.status_code} ({exc.message}): {hint}"


_CONTEXT_WORDS = re.compile(
    r"maximum context length|context[ _]length[ _]exceeded|context_length_exceeded|exceed(?:s|ed)? (?:the )?"
    r"(?:available )?context (?:size|window|length)|exceed_context_size|too long for the context|"
    r"prompt is too long|input is too long", re.IGNORECASE)
_CONTEXT_SIZE = (
    re.compile(r"maximum context length is (\d+) tokens", re.IGNORECASE),  # OpenAI, vLLM, llama-cpp-python's server
    re.compile(r"exceed context window of (\d+)", re.IGNORECASE),  # llama-cpp-python's own wording
    re.compile(r"available context size \((\d+) tokens\)", re.IGNORECASE),  # llama.cpp's llama-server
)
_PROMPT_SIZE = (  # most specific first: "requested 3100 tokens (2076 in the messages, 1024 in the completion)"
    re.compile(r"(\d+) in the messages", re.IGNORECASE),
    re.compile(r"(?:has|with) (\d+) input tokens", re.IGNORECASE),
    re.compile(r"requested tokens \((\d+)\)", re.IGNORECASE),
    re.compile(r"\((\d+) tokens\) exceeds? the available context", re.IGNORECASE),
    re.compile(r"requested (\d+) tokens", re.IGNORECASE),
)


def _context_overflow(exc: openai.APIStatusError) -> tuple[int | None, int | None] | None:
    """(prompt tokens, context tokens) as far as the server said, if ``exc`` says the prompt
    does not fit the context; None for any other rejection."""
    if exc.status_code not in (400, 413, 422):
        return None
    body = exc.body if isinstance(exc.body, dict) else {}
    text = f"{exc.message} {json.dumps(body, default=str)}"
    if not _CONTEXT_WORDS.search(text):
        return None
    prompt = body.get("n_prompt_tokens")  # llama-server's structured error carries both figures
    context = body.get("n_ctx")

    def first(patterns: tuple[re.Pattern, ...]) -> int | None:
        return next((int(m.group(1)) for m in map(lambda p: p.search(text), patterns) if m), None)

    return (prompt if isinstance(prompt, int) else first(_PROMPT_SIZE),
            context if isinstance(context, int) else first(_CONTEXT_SIZE))


def server_context(base_url: str | None, timeout: float = 5.0) -> int | None:
    """The context size (tokens) the server at ``base_url`` says it serves, or None if it does
    not say: vLLM's ``/models`` (``max_model_len``), llama.cpp's llama-server ``/props``
    (``n_ctx``). llama-cpp-python's server and OpenAI do not report it."""
    import urllib.request

    if not base_url:
        return None
    root = base_url.rstrip("/")
    for url, read in ((root + "/models", lambda d: (d.get("data") or [{}])[0].get("max_model_len")),
                      (root.removesuffix("/v1") + "/props",
                       lambda d: d.get("n_ctx") or (d.get("default_generation_settings") or {}).get("n_ctx"))):
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (the user's endpoint)
                value = read(json.loads(response.read()))
        except (OSError, ValueError, AttributeError, TypeError, IndexError):
            continue
        if isinstance(value, int) and value > 0:
            return value
    return None


_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "0.0.0.0", "host.docker.internal")


def is_local_endpoint(base_url: str | None) -> bool:
    """Whether ``base_url`` is a server on this machine or its network: localhost, a loopback,
    private or link-local address, or a ``*.local``/``*.localhost`` name (None: api.openai.com)."""
    if not base_url:
        return False
    host = (urlsplit(base_url).hostname or "").lower()
    if host in _LOCAL_HOSTS or host.endswith((".local", ".localhost")):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_link_local or address.is_unspecified


def missing_key_warning(settings: LLMSettings) -> str | None:
    """A warning when no API key is set for an endpoint that is not on this machine (a remote
    server will almost surely reject the requests); None when there is a key or it is local."""
    from urllib.parse import urlparse

    if os.environ.get(settings.api_key_env, "").strip():
        return None
    url = settings.base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
    host = (urlparse(url).hostname or "").lower()
    if host in _LOCAL_HOSTS or host.startswith("127.") or host.endswith(".local"):
        return None
    return (f"no API key: the environment variable {settings.api_key_env} is not set, and {url} is not a "
            f"local server; its requests will probably be rejected")


def _prompt_text(request: dict[str, Any]) -> str:
    return "\n".join(str(m["content"]) for m in request["messages"])


def _check_messages(messages: list[dict[str, str]]) -> None:
    if not isinstance(messages, list) or not messages:
        raise LLMError("messages must be a non-empty list of {'role': ..., 'content': ...} dicts")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant") or not isinstance(m.get("content"), str):
            raise LLMError(f"message {i} must be {{'role': 'system'|'user'|'assistant', 'content': str}}, got {m!r}"[:300])
