"""A local model as a proposer, with and without the grammar of the answer (issue 19).

Sends the project's own prompts (system prompt, ``propose`` for a full program, ``diff`` for
SEARCH/REPLACE edits of a parent) to an OpenAI-compatible server, once without and once with
constrained decoding (``discover/constrained.py``), the same proposals in the same order with
the same seeds, and prints side by side per arm:

- valid: answers that parse and pass the contract's validator (the diff applied to its parent)
- distinct valid: valid programs that differ (after normalisation) from their parent and from
  every earlier valid program of the arm
- seconds per proposal (wall time of the request, retries included) and answer tokens
- with ``--evaluate K``: the first K distinct valid programs of each arm and their parents
  scored on the search tier (``--tasks``, ``--steps-scale``), and how many beat their parent

    python benchmarks/local_llm.py BASE_URL MODEL [--proposals 12] [--kinds full,diff]
        [--dialect gbnf] [--max-tokens 768] [--timeout 300] [--evaluate 0]
        [--tasks noisy_quadratic ...] [--steps-scale 0.5]

A server for it (llama.cpp, see the README's "Local models" section) and a small model are
enough; nothing here needs a paid API.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from discover import parsing  # noqa: E402
from discover.constrained import MODES, ConstrainedDecoding, repair  # noqa: E402
from discover.llm import LLMClient, LLMError, LLMSettings  # noqa: E402
from discover.proposers import COPY_MESSAGE, is_a_copy, compact_system_prompt  # noqa: E402
from prompts import render, template  # noqa: E402
from sandbox import contract, vocabulary  # noqa: E402
from sandbox.references import reference_source  # noqa: E402

PARENTS = ("adamw", "adam", "lion", "sgd_momentum", "signum", "rmsprop")  # the default seed programs
KINDS = ("full", "diff")


@dataclass
class Arm:
    name: str
    proposals: int = 0
    first_valid: int = 0  # valid at the first answer, before any re-ask
    repaired: int = 0  # valid programs the repair mended (constrained arm only)
    answers: int = 0  # answers received, re-asks included
    valid: list[tuple[str, str]] = field(default_factory=list)  # (program, its parent)
    distinct: list[tuple[str, str]] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    beat: int | None = None
    evaluated: int = 0


def messages_for(kind: str, parent: str, compact: bool = False) -> list[dict[str, str]]:
    """The messages the campaign's proposer of ``kind`` sends for ``parent`` (no archive yet);
    ``compact``: the short system prompt of ``llm.compact_prompt = "on"``."""
    system = compact_system_prompt() if compact else render("system", vocabulary=vocabulary.describe(),
                                                              contract=template("contract"))
    summary, feedback = "(no archive summary)", "(no feedback yet)"
    if kind == "full":
        shown = f"## Program #1\n\n```python\n{parent.rstrip()}\n```\n\n{feedback}"
        user = render("propose", archive_summary=summary, program=shown)
    else:
        user = render("diff", program=parent, parent_feedback=feedback, archive_summary=summary)
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def program_from(kind: str, text: str, parent: str) -> str:
    if kind == "full":
        return parsing.extract_program(text)
    return parsing.apply_diff(parent, parsing.parse_diff(text))


def cause(exc: Exception) -> str:
    """A failure's kind without the names in it (``invalid_code: unknown name``)."""
    if isinstance(exc, parsing.ParseError):
        return "no program / bad edit"
    message = re.sub(r"`[^`]*`|'[^']*'|\(.*", "", getattr(exc, "message", str(exc)))
    return f"{exc.reason}: {' '.join(message.split())[:40]}"


def answer_program(kind: str, text: str, parent: str, mend: bool) -> tuple[str, list[str]]:
    """The program an answer makes (validated; ``mend``: repaired as the proposers do under a grammar)."""
    program = program_from(kind, text, parent)
    notes: list[str] = []
    if mend:
        program, notes = repair(program, [parent])
    contract.validate(program)
    return program, notes


def run_arm(arm: Arm, llm: LLMClient, constrained: ConstrainedDecoding, plan: list[tuple[str, str]],
            compact: bool = False, retries: int = 0, save: TextIO | None = None) -> None:
    """Each proposal as the campaign's proposers make it: one request, then up to ``retries``
    re-asks in the same conversation with the validator's message (``search.parse_retries``);
    under a grammar the request is scoped to the parent's names, the answer repaired, and a copy
    of the parent re-asked while re-asks are left (discover/proposers.py's ``_ask``)."""
    seen: set[str] = set()
    scoped = constrained.dialect is not None
    for index, (kind, parent) in enumerate(plan):
        arm.proposals += 1
        started = time.perf_counter()
        messages = messages_for(kind, parent, compact)
        program, why = None, None
        for attempt in range(retries + 1):
            try:
                answer = constrained.complete(llm, messages, kind, parent=parent if kind == "diff" else None,
                                              seed=index + 1000 * attempt, scope_from=[parent] if scoped else None)
            except LLMError as exc:
                why = "request failed"
                print(f"  [{arm.name}] #{index} {kind}: request failed: {exc}", file=sys.stderr)
                break
            arm.answers += 1
            arm.tokens.append(answer.completion_tokens)
            record = {"arm": arm.name, "proposal": index, "kind": kind, "answer": attempt + 1, "text": answer.text,
                      "tokens": answer.completion_tokens, "finish_reason": answer.finish_reason}
            try:
                program, notes = answer_program(kind, answer.text, parent, mend=scoped)
            except (parsing.ParseError, contract.CandidateError) as exc:
                why = cause(exc)
                if save:
                    save.write(json.dumps({**record, "outcome": str(exc)}) + "\n")
                print(f"  [{arm.name}] #{index} {kind} answer {attempt + 1}: {why} ({answer.completion_tokens} tokens, "
                      f"{answer.finish_reason})", file=sys.stderr)
                messages = messages + [{"role": "assistant", "content": answer.text},
                                       {"role": "user", "content": render("retry", error=str(exc))}]
                continue
            if scoped and attempt < retries and is_a_copy(program, [parent]):
                print(f"  [{arm.name}] #{index} {kind} answer {attempt + 1}: the parent unchanged, re-asked", file=sys.stderr)
                arm.first_valid += attempt == 0  # valid, though not new
                if save:
                    save.write(json.dumps({**record, "outcome": "the parent unchanged", "repairs": notes}) + "\n")
                messages = messages + [{"role": "assistant", "content": answer.text},
                                       {"role": "user", "content": render("retry", error=COPY_MESSAGE)}]
                program = None
                continue
            if save:
                save.write(json.dumps({**record, "outcome": "valid", "repairs": notes}) + "\n")
            arm.first_valid += attempt == 0
            arm.repaired += bool(notes)
            print(f"  [{arm.name}] #{index} {kind} answer {attempt + 1}: valid ({answer.completion_tokens} tokens)"
                  + (f"; repaired: {'; '.join(notes)}" if notes else ""), file=sys.stderr)
            break
        arm.seconds.append(time.perf_counter() - started)
        if program is None:
            arm.failures[why] = arm.failures.get(why, 0) + 1
            continue
        arm.valid.append((program, parent))
        key = contract.program_hash(program)
        if key != contract.program_hash(parent) and key not in seen:
            seen.add(key)
            arm.distinct.append((program, parent))


def evaluate_arms(arms: list[Arm], count: int, tasks: list[str], steps_scale: float) -> None:
    """Score the first ``count`` distinct valid programs of each arm and their parents."""
    from sandbox.evaluate import EvalSettings, Evaluator
    from sandbox.executor import make_executor
    from sandbox.runcache import MemoryRunCache

    settings = EvalSettings(suite="search", tasks=tuple(tasks), screen=False, steps_scale=steps_scale)
    executor = make_executor("local", size=1, device="cpu")
    try:
        evaluator = Evaluator(executor, MemoryRunCache(), settings)
        fitness: dict[str, float] = {}

        def score(source: str) -> float:
            key = contract.program_hash(source)
            if key not in fitness:
                result = evaluator.evaluate(source)
                fitness[key] = result.fitness if result.failure is None else 0.0
            return fitness[key]

        for arm in arms:
            chosen = arm.distinct[:count]
            arm.evaluated = len(chosen)
            arm.beat = sum(score(program) > score(parent) for program, parent in chosen)
    finally:
        executor.close()


def table(arms: list[Arm]) -> str:
    def pct(part: int, whole: int) -> str:
        return f"{part}/{whole} ({100 * part / whole:.0f}%)" if whole else "0/0"

    rows = [("arm", "valid", "distinct valid", "first answer valid", "repaired", "s/proposal", "answers",
             "answer tokens", "beat parent", "failures")]
    for arm in arms:
        seconds = f"{statistics.mean(arm.seconds):.1f}" if arm.seconds else "-"
        tokens = f"{statistics.mean(arm.tokens):.0f}" if arm.tokens else "-"
        beat = "-" if arm.beat is None else f"{arm.beat}/{arm.evaluated}"
        failures = ", ".join(f"{k} {v}" for k, v in sorted(arm.failures.items())) or "-"
        rows.append((arm.name, pct(len(arm.valid), arm.proposals), pct(len(arm.distinct), arm.proposals),
                     pct(arm.first_valid, arm.proposals), str(arm.repaired), seconds, str(arm.answers), tokens, beat,
                     failures))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base_url")
    parser.add_argument("model")
    parser.add_argument("--proposals", type=int, default=12, help="proposals per arm")
    parser.add_argument("--kinds", default=",".join(KINDS), help="proposer kinds, taken in turn (full, diff)")
    parser.add_argument("--dialect", default="gbnf", choices=[m for m in MODES if m != "off"],
                        help="how the grammar is sent in the constrained arm")
    parser.add_argument("--max-tokens", type=int, default=768)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--evaluate", type=int, default=0, metavar="K",
                        help="score the first K distinct valid programs per arm and their parents")
    parser.add_argument("--tasks", nargs="+", default=["noisy_quadratic", "logreg_separable"])
    parser.add_argument("--steps-scale", type=float, default=0.5)
    parser.add_argument("--compact", action="store_true", help="the short system prompt (llm.compact_prompt = on)")
    parser.add_argument("--arms", default="off,grammar", help="which arms: off (no grammar), grammar, or both")
    parser.add_argument("--save-answers", metavar="FILE", help="append every answer, with its outcome, to FILE (JSON lines)")
    parser.add_argument("--retries", type=int, default=1,
                        help="re-asks after an invalid answer, as search.parse_retries (default 1, the campaign's)")
    args = parser.parse_args(argv)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds or args.proposals < 1:
        print(f"error: --kinds takes {', '.join(KINDS)} (got {args.kinds!r}); --proposals must be >= 1", file=sys.stderr)
        return 2
    plan = [(kinds[i % len(kinds)], reference_source(PARENTS[i % len(PARENTS)])) for i in range(args.proposals)]
    settings = LLMSettings(base_url=args.base_url, models={"proposer": args.model}, cache_mode="off",
                           max_tokens=args.max_tokens, timeout=args.timeout, max_attempts=2,
                           temperature=args.temperature, max_concurrency=1, prices={args.model: (0.0, 0.0)})
    arms = []
    wanted = {a.strip() for a in args.arms.split(",")}
    for name, mode in (("no grammar", "off"), (f"grammar ({args.dialect})", args.dialect)):
        if ("off" if mode == "off" else "grammar") not in wanted:
            continue
        arm = Arm(name)
        constrained = ConstrainedDecoding(mode, args.base_url)
        with open(args.save_answers, "a") if args.save_answers else contextlib.nullcontext() as save:
            run_arm(arm, LLMClient(settings), constrained, plan, args.compact, args.retries, save)
        if constrained.fell_back:
            arm.name += " [server refused it]"
        arms.append(arm)
        print(f"{arm.name}: {arm.proposals} proposals done", file=sys.stderr)
    if args.evaluate > 0:
        evaluate_arms(arms, args.evaluate, args.tasks, args.steps_scale)
    print(f"{args.model} at {args.base_url}: {args.proposals} proposals per arm ({', '.join(kinds)} in turn"
          f"{', compact prompt' if args.compact else ''}, max_tokens {args.max_tokens}, up to {args.retries} re-ask(s))")
    print(table(arms))
    return 0


if __name__ == "__main__":
    sys.exit(main())
