"""Proposers: where candidate programs come from. One interface, a registry of kinds.

* ``mutation``  offline symbolic edits of one parent (no LLM; the embedded default)
* ``full``      the LLM writes a fresh program given the archive's best and their feedback
* ``diff``      the LLM edits one parent with SEARCH/REPLACE blocks
* ``textgrad``  a critic call writes a textual gradient for a parent, an edit call follows it
* ``crossover`` the LLM combines two parents

Every proposal is parsed and validated before it costs an evaluation. When an LLM answer does
not parse or validate, the proposer asks again in the same conversation with the exact error
(up to ``parse_retries`` times); every answer, good or bad, is returned for the archive, and so
is every request given up: a timed-out attempt (outcome ``timeout``) and a request cut by the
budget (outcome ``cancelled``: not sent, or in flight at the time budget's deadline).

With ``compact`` prompts (``llm.compact_prompt``, for models with a small context) the system
prompt is ``system_compact`` (the contract in a few lines, the vocabulary as bare signatures)
and programs are shown with scalar feedback, the archive summary with its top 3.
"""

from __future__ import annotations

import json
import random
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from discover import feedback, mutation, parsing
from discover.llm import BudgetExhausted, Completion, ContextLengthError, LLMClient, LLMError, RequestCancelled
from prompts import render, template
from sandbox import contract, vocabulary

if TYPE_CHECKING:
    from discover.constrained import ConstrainedDecoding

Program = Mapping[str, Any]


@dataclass
class LLMCall:
    """One request/response pair, archived whether or not it produced a program."""

    role: str
    model: str
    messages: list[dict[str, str]]
    response: str
    tokens_in: int
    tokens_out: int
    cost_usd: float
    cached: bool
    outcome: str  # ok | invalid_code | forbidden_construct | critique | error | timeout | cancelled
    # (error, timeout, cancelled: no usable answer; response says why, or holds what streamed)


@dataclass
class Proposal:
    """What a proposer produced. ``source`` is None when it failed (``error`` says why)."""

    kind: str
    parent_ids: list[int]
    source: str | None = None
    error: tuple[str, str] | None = None
    critique: str | None = None
    edits: list[str] = field(default_factory=list)
    llm_calls: list[LLMCall] = field(default_factory=list)
    budget_exhausted: str | None = None
    llm_failure: str | None = None  # an LLM request failed (transport, rejection): not the program's fault
    context_error: str | None = None  # the prompt does not fit the server's context: the campaign stops
    seed: int = 0

    @property
    def prompt(self) -> str | None:
        first = next((c for c in self.llm_calls if c.role != "critic"), None)
        return json.dumps(first.messages) if first else None

    @property
    def response(self) -> str | None:
        answers = [c.response for c in self.llm_calls if c.role != "critic"]
        return answers[-1] if answers else None


@dataclass
class ProposalContext:
    """Everything a proposer may look at: the parents, the archive's best, the feedback mode."""

    parents: list[Program]
    parent_of: Callable[[Program], Program | None]  # a program's own first parent, for deltas
    top: Sequence[Program]
    failure_counts: Mapping[str, int]
    rng: random.Random
    feedback_mode: str = "directional"
    parse_retries: int = 1
    mutation_edits: int = 2
    lineage: dict[int, Program | None] = field(default_factory=dict)  # what parent_of answers, by id


class Proposer(ABC):
    """Base class: ``propose(ctx) -> Proposal``. ``parents_needed`` tells the loop how many."""

    kind: ClassVar[str] = ""
    parents_needed: ClassVar[int] = 1
    needs_llm: ClassVar[bool] = True

    def __init__(self, llm: LLMClient | None = None, constrained: "ConstrainedDecoding | None" = None,
                 compact: bool = False):
        if self.needs_llm and llm is None:
            raise ValueError(f"the {self.kind!r} proposer needs an LLM endpoint (set llm.base_url)")
        self.llm = llm
        self.constrained = constrained  # sends each answer's grammar where the server takes one
        self.compact = compact  # short prompts for a small context (see the module docstring)

    def propose(self, ctx: ProposalContext) -> Proposal:
        """Produce one proposal from ``ctx.parents``. Never raises: whatever goes wrong (a bad
        answer, a bug in a parser) becomes the proposal's ``error``, and the LLM calls already
        made (paid for) stay on it, so the campaign archives them."""
        parents = self._parents(ctx)
        proposal = Proposal(self.kind, [p["id"] for p in parents],
                            seed=ctx.rng.randrange(2**31) if self.needs_llm else 0)
        try:
            self._fill(ctx, parents, proposal)
        except Exception as exc:  # noqa: BLE001 (an error of one proposal must not end the campaign)
            proposal.source = None
            proposal.error = ("crashed", f"the {self.kind} proposer failed: {type(exc).__name__}: {exc}"[:2000])
        return proposal

    def _parents(self, ctx: ProposalContext) -> list[Program]:
        """The parents this kind works from (the first; two kinds take the first and the last)."""
        return [ctx.parents[0], ctx.parents[-1]] if self.parents_needed == 2 else [ctx.parents[0]]

    @abstractmethod
    def _fill(self, ctx: ProposalContext, parents: list[Program], proposal: Proposal) -> None:
        """Set ``proposal.source`` (or ``proposal.error``), appending every LLM call made."""

    # --- shared LLM conversation with parse-and-retry -------------------------------------

    def _system(self) -> str:
        if self.compact:
            return compact_system_prompt()
        return render("system", vocabulary=vocabulary.describe(), contract=template("contract"))

    def _ask(self, proposal: Proposal, messages: list[dict[str, str]], role: str,
             parse: Callable[[str], str], retries: int, grammar: tuple[str, str | None] = ("full", None),
             scope_from: Sequence[str] = ()) -> str | None:
        """Ask, parse and validate; on failure re-ask in the same conversation with the error.
        ``grammar`` is the answer's (kind, parent) for constrained decoding, its names scoped to
        the programs ``scope_from``; an answer written under a grammar is repaired
        (:func:`discover.constrained.repair`) before validation, the repairs listed in ``edits``,
        and an answer that is a parent unchanged is re-asked while re-asks are left (a small model
        under a grammar copies its parent: 3 of 6 full answers of SmolLM2-135M with the long prompt)."""
        constrained = self.constrained is not None and self.constrained.dialect is not None
        for attempt in range(retries + 1):
            completion = self._complete(proposal, messages, role, grammar, scope_from)
            if completion is None:
                return None
            try:
                source = parse(completion.text)
                if constrained:
                    from discover.constrained import repair

                    source, notes = repair(source, scope_from)
                    proposal.edits = [f"repair: {note}" for note in notes]
                contract.validate(source)
                if constrained and attempt < retries and is_a_copy(source, scope_from):
                    self._record(proposal, role if attempt == 0 else "retry", messages, completion, "duplicate")
                    messages = messages + [
                        {"role": "assistant", "content": completion.text},
                        {"role": "user", "content": render("retry", error=COPY_MESSAGE)},
                    ]
                    continue
            except parsing.ParseError as exc:
                self._record(proposal, role if attempt == 0 else "retry", messages, completion, "invalid_code")
                proposal.error = ("invalid_code", str(exc))
            except contract.CandidateError as exc:
                self._record(proposal, role if attempt == 0 else "retry", messages, completion, exc.reason)
                proposal.error = (exc.reason, str(exc))
            else:
                self._record(proposal, role if attempt == 0 else "retry", messages, completion, "ok")
                proposal.error = None
                return source
            messages = messages + [
                {"role": "assistant", "content": completion.text},
                {"role": "user", "content": render("retry", error=proposal.error[1])},
            ]
        return None

    def _complete(self, proposal: Proposal, messages: list[dict[str, str]], role: str,
                  grammar: tuple[str, str | None] = ("full", None), scope_from: Sequence[str] = ()) -> Completion | None:
        """One LLM request (carrying the answer's grammar when constrained decoding is on); on
        failure the proposal records why and None comes back."""
        seed = self._seed(proposal)
        try:
            if self.constrained is not None:
                kind, parent = grammar
                completion = self.constrained.complete(self.llm, messages, kind, role=role, parent=parent, seed=seed,
                                                       scope_from=scope_from if scope_from else None)
            else:
                completion = self.llm.complete(messages, role=role, seed=seed)
        except BudgetExhausted as exc:
            # Cut by the budget: no program is made and no evaluation charged; the request is
            # archived as cancelled (tokens estimated if it was in flight, 0 if never sent).
            self._record_abandoned(proposal, role, messages, exc.abandoned)
            if not isinstance(exc, RequestCancelled):
                proposal.llm_calls.append(LLMCall(
                    role=role, model=self.llm.model_for(role), messages=list(messages),
                    response=f"not sent: {exc}", tokens_in=0, tokens_out=0, cost_usd=0.0, cached=False,
                    outcome="cancelled"))
            proposal.budget_exhausted = str(exc)
            proposal.error = ("cancelled", f"cut by the budget: {exc}")
        except LLMError as exc:
            # Archived as a failed LLM call (the campaign makes no program of it).
            self._record_abandoned(proposal, role, messages, exc.abandoned)
            proposal.llm_failure = f"{role} request failed: {exc}"
            if isinstance(exc, ContextLengthError):
                proposal.context_error = str(exc)
            proposal.error = ("crashed", proposal.llm_failure)
            proposal.llm_calls.append(LLMCall(
                role=role, model=self.llm.model_for(role),
                messages=list(messages), response=str(exc), tokens_in=0, tokens_out=0, cost_usd=0.0, cached=False,
                outcome="error"))
        else:
            self._record_abandoned(proposal, role, messages, completion.abandoned)
            return completion
        return None

    def _record_abandoned(self, proposal: Proposal, role: str, messages, abandoned: list[dict]) -> None:
        """Archive the attempts the client gave up (timed out, or cancelled at the deadline):
        the server worked on them, so their (estimated) tokens count."""
        for attempt in abandoned:
            partial = attempt.get("text") or ""
            note = (f"[{attempt['reason']} after {attempt['seconds']:.1f} s; tokens estimated: prompt from its "
                    f"length, answer from what streamed ({len(partial)} characters)]")
            proposal.llm_calls.append(LLMCall(
                role=role, model=self.llm.model_for(role), messages=list(messages),
                response=f"{note}\n{partial}" if partial else note, tokens_in=int(attempt["prompt_tokens"]),
                tokens_out=int(attempt["completion_tokens"]), cost_usd=float(attempt.get("cost_usd", 0.0)),
                cached=False, outcome=attempt["reason"]))

    @staticmethod
    def _seed(proposal: Proposal) -> int:
        # A sampling seed per request: a repeated prompt in a later proposal is a new sample
        # (not a response-cache hit), yet a replayed campaign sends identical requests.
        # Abandoned attempts are not counted: they are the same request, retried.
        return proposal.seed + sum(1 for c in proposal.llm_calls if c.outcome not in ("timeout", "cancelled"))

    @staticmethod
    def _record(proposal: Proposal, role: str, messages, completion: Completion, outcome: str) -> None:
        proposal.llm_calls.append(LLMCall(
            role=role, model=completion.model, messages=list(messages), response=completion.text,
            tokens_in=completion.prompt_tokens, tokens_out=completion.completion_tokens,
            cost_usd=completion.cost_usd, cached=completion.cached, outcome=outcome))

    def _mode(self, ctx: ProposalContext) -> str:
        """The feedback mode prompts use: compact prompts shorten directional to scalar."""
        return "scalar" if self.compact and ctx.feedback_mode == "directional" else ctx.feedback_mode

    def _feedback(self, ctx: ProposalContext, program: Program) -> str:
        return feedback.program_feedback(program, ctx.parent_of(program), self._mode(ctx)) or "(no feedback)"

    def _shown(self, ctx: ProposalContext, program: Program) -> str:
        """A program as a prompt shows it: its code in a python block, then how it did."""
        return f"```python\n{program['code'].rstrip()}\n```\n\n{self._feedback(ctx, program)}"

    def _summary(self, ctx: ProposalContext) -> str:
        top_k = 3 if self.compact else 5
        return feedback.archive_summary(ctx.top, ctx.failure_counts, self._mode(ctx), top_k=top_k) or "(no archive summary)"


class MutationProposer(Proposer):
    """Offline: random symbolic edits of one parent (Chen et al. 2023 style)."""

    kind = "mutation"
    needs_llm = False

    def _fill(self, ctx: ProposalContext, parents: list[Program], proposal: Proposal) -> None:
        parent = parents[0]
        n_edits = ctx.rng.randint(1, max(1, ctx.mutation_edits))
        try:
            result = mutation.mutate(parent["code"], ctx.rng, n_edits=n_edits)
        except mutation.MutationError as exc:
            proposal.error = ("invalid_code", f"no valid mutation of #{parent['id']}: {exc}")
            return
        proposal.source, proposal.edits = result.source, list(result.edits)


class OfflineCrossoverProposer(Proposer):
    """Offline: recombine two parents without an LLM."""

    kind = "mutation_crossover"
    parents_needed = 2
    needs_llm = False

    def _fill(self, ctx: ProposalContext, parents: list[Program], proposal: Proposal) -> None:
        a, b = parents
        try:
            result = mutation.crossover(a["code"], b["code"], ctx.rng)
        except mutation.MutationError as exc:
            proposal.error = ("invalid_code", f"no valid crossover of #{a['id']} and #{b['id']}: {exc}")
            return
        proposal.source, proposal.edits = result.source, list(result.edits)


class FullProgramProposer(Proposer):
    """The LLM writes a whole new program, seeing the best programs and their feedback."""

    kind = "full"

    def _parents(self, ctx: ProposalContext) -> list[Program]:
        return list(ctx.parents[:1]) if self.compact else list(ctx.parents)

    def _fill(self, ctx: ProposalContext, parents: list[Program], proposal: Proposal) -> None:
        examples = "\n\n".join(f"## Program #{p['id']}\n\n{self._shown(ctx, p)}" for p in parents)
        messages = [
            {"role": "system", "content": self._system()},
            {"role": "user", "content": render("propose", archive_summary=self._summary(ctx), program=examples)},
        ]
        proposal.source = self._ask(proposal, messages, "proposer", parsing.extract_program, ctx.parse_retries,
                                    scope_from=[p["code"] for p in parents])


class DiffProposer(Proposer):
    """The LLM edits one parent with SEARCH/REPLACE blocks."""

    kind = "diff"

    def _fill(self, ctx: ProposalContext, parents: list[Program], proposal: Proposal) -> None:
        parent = parents[0]
        messages = [
            {"role": "system", "content": self._system()},
            {"role": "user", "content": render("diff", program=parent["code"], parent_feedback=self._feedback(ctx, parent),
                                               archive_summary=self._summary(ctx))},
        ]

        def apply(text: str) -> str:
            return parsing.apply_diff(parent["code"], parsing.parse_diff(text))

        proposal.source = self._ask(proposal, messages, "proposer", apply, ctx.parse_retries,
                                    grammar=("diff", parent["code"]), scope_from=[parent["code"]])


class TextGradProposer(Proposer):
    """TextGrad-style step: a critique (textual gradient) of a parent, then an edit following it."""

    kind = "textgrad"

    def _fill(self, ctx: ProposalContext, parents: list[Program], proposal: Proposal) -> None:
        parent = parents[0]
        fb = self._feedback(ctx, parent)
        critic_messages = [
            {"role": "system", "content": self._system()},
            {"role": "user", "content": render("critique", program=parent["code"], parent_feedback=fb,
                                               archive_summary=self._summary(ctx))},
        ]
        completion = self._complete(proposal, critic_messages, "critic", ("critique", None))
        if completion is None:
            return
        try:
            critique = parsing.extract_critique(completion.text)
        except parsing.ParseError as exc:  # an empty critique: archived, the proposal fails
            self._record(proposal, "critic", critic_messages, completion, "invalid_code")
            proposal.error = ("invalid_code", str(exc))
            return
        self._record(proposal, "critic", critic_messages, completion, "critique")
        proposal.critique = critique
        messages = [
            {"role": "system", "content": self._system()},
            {"role": "user", "content": render("edit", program=parent["code"], critique=critique, parent_feedback=fb)},
        ]
        proposal.source = self._ask(proposal, messages, "proposer", parsing.extract_program, ctx.parse_retries,
                                    scope_from=[parent["code"]])


class CrossoverProposer(Proposer):
    """The LLM combines the strengths of two parents."""

    kind = "crossover"
    parents_needed = 2

    def _fill(self, ctx: ProposalContext, parents: list[Program], proposal: Proposal) -> None:
        a, b = parents
        messages = [
            {"role": "system", "content": self._system()},
            {"role": "user", "content": render(
                "crossover",
                parent_a=self._shown(ctx, a), parent_b=self._shown(ctx, b),
                archive_summary=self._summary(ctx))},
        ]
        proposal.source = self._ask(proposal, messages, "proposer", parsing.extract_program, ctx.parse_retries,
                                    grammar=("crossover", None), scope_from=[a["code"], b["code"]])


COPY_MESSAGE = ("the program is the one you were shown, unchanged (the same after normalisation); "
                "change how it forms the update, adapts its scale or uses its state")


def is_a_copy(source: str, originals: Sequence[str]) -> bool:
    """Whether ``source`` normalises to one of ``originals`` (the parents an answer started from)."""
    key = contract.program_hash(source)
    for original in originals:
        try:
            if contract.program_hash(original) == key:
                return True
        except contract.CandidateError:
            continue
    return False


PROPOSERS: dict[str, type[Proposer]] = {
    cls.kind: cls
    for cls in (MutationProposer, OfflineCrossoverProposer, FullProgramProposer, DiffProposer,
                TextGradProposer, CrossoverProposer)
}
"""kind -> class; the config's ``search.proposers`` weights pick among these."""


def compact_system_prompt() -> str:
    """The short system prompt (``prompts/system_compact.txt``): the vocabulary as signatures."""
    import inspect

    ops = ", ".join(f"{name}({', '.join(inspect.signature(fn).parameters)})" for name, fn in vocabulary.OPS.items())
    return render("system_compact", vocabulary=ops)


def make_proposers(weights: Mapping[str, float], llm: LLMClient | None,
                   constrained: "ConstrainedDecoding | None" = None, compact: bool = False) -> dict[str, Proposer]:
    """Instantiate the weighted kinds; unknown kinds or LLM kinds without an endpoint are errors."""
    out = {}
    for kind, weight in weights.items():
        if kind not in PROPOSERS:
            raise ValueError(f"unknown proposer kind {kind!r}; known: {', '.join(PROPOSERS)}")
        if weight > 0:
            out[kind] = PROPOSERS[kind](llm, constrained, compact)
    if not out:
        raise ValueError("at least one proposer needs a positive weight")
    return out
