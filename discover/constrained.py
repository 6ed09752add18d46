"""Constrained decoding: send the answer's grammar with the request, in the server's dialect.

``llm.constrained`` picks the dialect:

* ``gbnf``    ``{"grammar": <GBNF>}``: llama.cpp's llama-server and llama-cpp-python's server
* ``vllm``    ``{"guided_grammar": <GBNF>}``: vLLM (its xgrammar backend reads GBNF-style EBNF)
* ``ollama``  ``{"response_format": json_schema}``: the answer is ``{"answer": "..."}`` whose
  string matches the regular form of the grammar (``pattern``); it is unwrapped here, so
  callers see plain text as from any other server
* ``off``     nothing is added
* ``auto``    asks the endpoint's ``/models`` who serves it (``owned_by``: llamacpp, vllm,
  ollama) and uses that dialect; a local endpoint (localhost, a loopback or private address) that does not
  say gets ``gbnf``; a remote one that does not say gets nothing (OpenAI would reject it).

When a server rejects the grammar (HTTP 400/422 naming grammar, guided decoding or the
response format), ``auto`` says so in one line on stderr and goes on without it; an explicit
dialect is the user's request, so its rejection is an error that says what to set instead.
"""

from __future__ import annotations

import functools
import json
import re
import sys
import threading
import urllib.request
from typing import Any, Callable

import openai

from discover import grammar
from discover.llm import Completion, LLMClient, LLMError, is_local_endpoint

__all__ = ["MODES", "ConstrainedDecoding", "is_local", "request_fields"]

MODES = ("auto", "gbnf", "vllm", "ollama", "off")
OLLAMA_FIELD = "answer"
_OWNERS = {"llamacpp": "gbnf", "llama.cpp": "gbnf", "vllm": "vllm", "ollama": "ollama", "library": "ollama"}
_REJECTED = re.compile(r"grammar|guided|response_format|json_schema|structured output", re.IGNORECASE)


def is_local(base_url: str | None) -> bool:
    """Whether ``base_url`` is a server on this machine or its private network (see
    :func:`discover.llm.is_local_endpoint`)."""
    return is_local_endpoint(base_url)


@functools.lru_cache(maxsize=32)
def request_fields(dialect: str, kind: str, parent: str | None = None) -> dict[str, Any]:
    """The request-body fields that carry the grammar of ``kind`` in ``dialect``."""
    if dialect == "gbnf":
        return {"grammar": grammar.render(kind, "gbnf", parent)}
    if dialect == "vllm":
        return {"guided_grammar": grammar.render(kind, "gbnf", parent)}
    if dialect == "ollama":
        pattern = grammar.build(kind, parent, regular=True).to_regex(depth=3, json_escaped=True)
        schema = {"type": "object", "properties": {OLLAMA_FIELD: {"type": "string", "pattern": f"^{pattern}$"}},
                  "required": [OLLAMA_FIELD], "additionalProperties": False}
        return {"response_format": {"type": "json_schema",
                                    "json_schema": {"name": f"{kind}_answer", "schema": schema, "strict": True}}}
    raise ValueError(f"unknown constrained-decoding dialect {dialect!r}; choose one of {', '.join(MODES)}")


def _owner(base_url: str, timeout: float = 5.0) -> str | None:
    """``owned_by`` of the first model the endpoint lists, or None if it does not answer."""
    try:
        with urllib.request.urlopen(base_url.rstrip("/") + "/models", timeout=timeout) as response:  # noqa: S310 (the user's endpoint)
            data = json.loads(response.read()).get("data") or []
        if not data:
            return None
        return str(data[0].get("owned_by") or "").lower() or None
    except (OSError, ValueError, AttributeError, TypeError):
        return None


def _rejects_grammar(exc: LLMError) -> bool:
    cause = exc.cause
    return (isinstance(cause, openai.APIStatusError) and cause.status_code in (400, 422)
            and bool(_REJECTED.search(f"{cause.message} {exc}")))


class ConstrainedDecoding:
    """Adds the grammar of each answer to the request; see the module docstring."""

    def __init__(self, mode: str = "auto", base_url: str | None = None, *,
                 warn: Callable[[str], None] | None = None):
        if mode not in MODES:
            raise ValueError(f"llm.constrained must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode = mode
        self.base_url = base_url
        self._warn = warn or (lambda line: print(line, file=sys.stderr, flush=True))
        self._dialect: str | None = None
        self._resolved = False
        self.fell_back: str | None = None  # why auto stopped sending the grammar, once it did
        self._lock = threading.Lock()

    @property
    def dialect(self) -> str | None:
        """The dialect requests carry (None: no grammar); ``auto`` asks the server once. Proposals
        run in threads: the lock makes every one wait for the answer, so none is sent without the
        grammar while another thread is still asking (a replayed campaign would then miss)."""
        with self._lock:
            if not self._resolved:
                if self.mode == "auto":
                    owner = _owner(self.base_url) if self.base_url else None
                    self._dialect = _OWNERS.get(owner or "") or ("gbnf" if is_local(self.base_url) else None)
                elif self.mode != "off":
                    self._dialect = self.mode
                self._resolved = True
            return self._dialect

    def complete(self, llm: LLMClient, messages: list[dict[str, str]], kind: str, *, role: str = "proposer",
                 parent: str | None = None, seed: int | None = None) -> Completion:
        """``llm.complete`` with the grammar of a ``kind`` answer (see :data:`grammar.KINDS`)."""
        dialect = self.dialect
        if dialect is None:
            return llm.complete(messages, role=role, seed=seed)
        try:
            completion = llm.complete(messages, role=role, seed=seed, extra_body=request_fields(dialect, kind, parent))
        except LLMError as exc:
            if not _rejects_grammar(exc):
                raise
            cause = exc.cause.message if isinstance(exc.cause, openai.APIStatusError) else str(exc)
            if self.mode != "auto":
                raise LLMError(f"{self.base_url or 'the server'} rejected the {dialect} grammar ({cause}); "
                               f"set llm.constrained = \"auto\" to fall back, or \"off\"", exc.cause) from exc
            self._dialect, self.fell_back = None, cause
            self._warn(f"constrained decoding: {self.base_url or 'the server'} rejected the {dialect} grammar "
                       f"({' '.join(str(cause).split())[:160]}); continuing without it")
            return llm.complete(messages, role=role, seed=seed)
        if dialect == "ollama":
            completion = _unwrapped(completion)
        return completion


def _unwrapped(completion: Completion) -> Completion:
    """The ``answer`` string of an Ollama JSON answer, as the text (left as is if not JSON)."""
    try:
        text = json.loads(completion.text)[OLLAMA_FIELD]
    except (ValueError, TypeError, KeyError):
        return completion
    if not isinstance(text, str):
        return completion
    from dataclasses import replace

    return replace(completion, text=text)
