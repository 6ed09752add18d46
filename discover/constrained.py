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

import ast
import functools
import json
import keyword
import re
import sys
import threading
import urllib.request
from typing import Any, Callable, Sequence

import openai

from discover import grammar
from discover.budget import BudgetExhausted
from discover.llm import Completion, LLMClient, LLMError, is_local_endpoint
from sandbox import contract, vocabulary

__all__ = ["MODES", "ConstrainedDecoding", "is_local", "repair", "request_fields"]

MODES = ("auto", "gbnf", "vllm", "ollama", "off")
OLLAMA_FIELD = "answer"
_OWNERS = {"llamacpp": "gbnf", "llama.cpp": "gbnf", "vllm": "vllm", "ollama": "ollama", "library": "ollama"}
_REJECTED = re.compile(r"grammar|guided|response_format|json_schema|structured output", re.IGNORECASE)


def is_local(base_url: str | None) -> bool:
    """Whether ``base_url`` is a server on this machine or its private network (see
    :func:`discover.llm.is_local_endpoint`)."""
    return is_local_endpoint(base_url)


@functools.lru_cache(maxsize=32)
def request_fields(dialect: str, kind: str, parent: str | None = None,
                   scope_from: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The request-body fields that carry the grammar of ``kind`` in ``dialect``. With
    ``scope_from`` (the parents' sources) the GBNF forms are scoped to their names
    (:class:`discover.grammar.Scope`); the Ollama pattern is not (a regex cannot hold them)."""
    scope = grammar.Scope.of(*scope_from) if scope_from is not None else None
    if dialect == "gbnf":
        return {"grammar": grammar.render(kind, "gbnf", parent, scope=scope)}
    if dialect == "vllm":
        return {"guided_grammar": grammar.render(kind, "gbnf", parent, scope=scope)}
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
                 parent: str | None = None, seed: int | None = None,
                 scope_from: Sequence[str] | None = None) -> Completion:
        """``llm.complete`` with the grammar of a ``kind`` answer (see :data:`grammar.KINDS`),
        its names scoped to the programs ``scope_from`` when given."""
        dialect = self.dialect
        if dialect is None:
            return llm.complete(messages, role=role, seed=seed)
        scope = tuple(scope_from) if scope_from is not None and kind != "critique" else None
        try:
            completion = llm.complete(messages, role=role, seed=seed,
                                      extra_body=request_fields(dialect, kind, parent, scope))
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
            # Attempts with the grammar that timed out before the rejection were computed by the
            # server: they stay on the answer (or on the error) so that the campaign archives them.
            try:
                completion = llm.complete(messages, role=role, seed=seed)
            except (LLMError, BudgetExhausted) as again:
                again.abandoned = exc.abandoned + again.abandoned
                raise
            if exc.abandoned:
                from dataclasses import replace

                completion = replace(completion, abandoned=exc.abandoned + completion.abandoned)
            return completion
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


# --- the repair of what a grammar cannot bind ------------------------------------------------


def repair(source: str, parents: Sequence[str] = ()) -> tuple[str, list[str]]:
    """A program with the binding slips a scoped grammar lets through mended, and what was done.

    A context-free grammar cannot tie a read to a definition (see :class:`grammar.Scope`), so
    a small model under one writes ``hp.beta1`` without declaring it, or ``m`` for the state
    it meant (``state["m"]``). Three mends, each with an unambiguous reading and nothing else:

    * ``hp.x`` read but not in HPARAMS: ``"x"`` is declared with the first parent's value, or
      :func:`grammar.hp_defaults`' (the scoped grammar lets ``hp.`` read only those keys);
    * in ``update``, a bare name never assigned there, or read before its first assignment,
      that is a key of ``init``'s state: ``state["x"]``;
    * in ``update``, such a name that is a hyperparameter (declared, the parents' or a
      default): ``hp.x`` (declared as above).

    The source is returned unchanged when it does not parse or needs none of these; the
    validator judges the result as any other program.
    """
    try:
        tree = contract.parse_ast(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return source, []
    defaults = dict(grammar.hp_defaults())
    for parent in reversed(list(parents)):  # the first parent's values win
        try:
            for stmt in contract.parse_ast(parent).body:
                declared = _hparams_dict(stmt)
                if declared is not None:
                    defaults.update({k: v for k, v in _hparams_values(declared).items()})
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
    hp_node = next((d for d in (_hparams_dict(s) for s in tree.body) if d is not None), None)
    functions = {s.name: s for s in tree.body if isinstance(s, ast.FunctionDef)}
    if hp_node is None or "update" not in functions:
        return source, []
    declared = set(_hparams_values(hp_node)) | {k.value for k in hp_node.keys if isinstance(k, ast.Constant)}
    constants = {s.targets[0].id for s in tree.body if isinstance(s, ast.Assign) and len(s.targets) == 1
                 and isinstance(s.targets[0], ast.Name)}
    state_keys = _state_keys(functions.get("init"))
    update = functions["update"]
    assigned = {n.id for n in ast.walk(update) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    assigned |= {a.arg for a in update.args.args}
    known = assigned | constants | set(functions)
    # A name read before the function first assigns it (`m = interp(grad, m, ...)`) passes the
    # validator (it is a local) and crashes the run with UnboundLocalError: the same slip.
    early = {id(n) for n in _reads_before_assignment(update, {a.arg for a in update.args.args} | constants | set(functions))}

    def usable_key(name: str) -> bool:
        return (name.isidentifier() and name.islower() and not name.startswith("_") and not keyword.iskeyword(name)
                and not hasattr(contract.HParams, name))

    edits: list[tuple[int, int, str]] = []  # (start, end, replacement) as offsets into source
    notes: list[str] = []
    wanted: dict[str, float] = {}
    offsets = _line_offsets(source)
    params = {a.arg for a in update.args.args}
    for node in ast.walk(update):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "hp" and "hp" in params:
            if node.attr not in declared and node.attr in defaults:
                wanted[node.attr] = defaults[node.attr]
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) \
                and (node.id not in known or id(node) in early) and node.id not in vocabulary.OPS:
            span = (offsets[node.lineno - 1] + node.col_offset, offsets[node.end_lineno - 1] + node.end_col_offset)
            if node.id in state_keys and "state" in params:
                edits.append((*span, f'state["{node.id}"]'))
                notes.append(f"read `{node.id}` as state[\"{node.id}\"]")
            elif usable_key(node.id) and (node.id in declared or node.id in defaults) and "hp" in params:
                edits.append((*span, f"hp.{node.id}"))
                notes.append(f"read `{node.id}` as hp.{node.id}")
                if node.id not in declared:
                    wanted[node.id] = defaults[node.id]
    if wanted:
        last = hp_node.values[-1] if hp_node.values else None
        if last is not None:
            at = offsets[last.end_lineno - 1] + last.end_col_offset
            text = "".join(f', "{k}": {v!r}' for k, v in wanted.items())
        else:  # `HPARAMS = {}`: the validator will still ask for lr
            at = offsets[hp_node.end_lineno - 1] + hp_node.end_col_offset - 1
            text = ", ".join(f'"{k}": {v!r}' for k, v in wanted.items())
        edits.append((at, at, text))
        notes.append("declared " + ", ".join(f"{k} = {v!r}" for k, v in wanted.items()) + " in HPARAMS")
    if not edits:
        return source, []
    out = source.encode()
    for start, end, text in sorted(edits, reverse=True):
        out = out[:start] + text.encode() + out[end:]
    return out.decode(), notes


def _reads_before_assignment(fn: ast.FunctionDef, bound: set[str]) -> list[ast.Name]:
    """The names ``fn`` reads before any statement has assigned them, in execution order
    (a value before its targets; a name assigned in an earlier branch or loop counts as
    assigned, so only certain slips are found)."""
    bound = set(bound)
    early: list[ast.Name] = []

    def read(node: ast.AST | None) -> None:
        for n in ast.walk(node) if node is not None else ():
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and n.id not in bound:
                early.append(n)

    def store(target: ast.AST) -> None:
        bound.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store))

    def block(statements: list[ast.stmt]) -> None:
        for stmt in statements:
            if isinstance(stmt, ast.Assign):
                read(stmt.value)
                for target in stmt.targets:
                    store(target)
            elif isinstance(stmt, ast.AugAssign):
                read(stmt.value)
                store(stmt.target)
            elif isinstance(stmt, ast.For):
                read(stmt.iter)
                store(stmt.target)
                block(stmt.body)
            elif isinstance(stmt, ast.If):
                read(stmt.test)
                block(stmt.body)
                block(stmt.orelse)
            elif isinstance(stmt, (ast.Return, ast.Expr)):
                read(stmt.value)

    block(fn.body)
    return early


def _line_offsets(source: str) -> list[int]:
    """The byte offset in ``source``'s UTF-8 where each line starts (ast columns count bytes)."""
    offsets, at = [], 0
    for line in source.encode().split(b"\n"):
        offsets.append(at)
        at += len(line) + 1
    return offsets


def _hparams_dict(stmt: ast.stmt) -> ast.Dict | None:
    if (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)
            and stmt.targets[0].id == "HPARAMS" and isinstance(stmt.value, ast.Dict)):
        return stmt.value
    return None


def _hparams_values(node: ast.Dict) -> dict[str, float]:
    out = {}
    for key, value in zip(node.keys, node.values):
        number = contract._literal_number(value)
        if isinstance(key, ast.Constant) and isinstance(key.value, str) and number is not None:
            out[key.value] = float(number)
    return out


def _state_keys(init: ast.FunctionDef | None) -> set[str]:
    """The string keys of the dicts ``init`` returns."""
    keys: set[str] = set()
    for node in ast.walk(init) if init is not None else ():
        if isinstance(node, ast.Return) and isinstance(node.value, ast.Dict):
            keys |= {k.value for k in node.value.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
    return keys
