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
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from discover import parsing  # noqa: E402
from discover.constrained import MODES, ConstrainedDecoding  # noqa: E402
from discover.llm import LLMClient, LLMError, LLMSettings  # noqa: E402
from discover.proposers import compact_system_prompt  # noqa: E402
from prompts import render, template  # noqa: E402
from sandbox import contract, vocabulary  # noqa: E402
from sandbox.references import reference_source  # noqa: E402

PARENTS = ("adamw", "adam", "lion", "sgd_momentum", "signum", "rmsprop")  # the default seed programs
KINDS = ("full", "diff")


@dataclass
class Arm:
    name: str
    proposals: int = 0
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


def run_arm(arm: Arm, llm: LLMClient, constrained: ConstrainedDecoding, plan: list[tuple[str, str]],
            compact: bool = False) -> None:
    seen: set[str] = set()
    for index, (kind, parent) in enumerate(plan):
        arm.proposals += 1
        started = time.perf_counter()
        try:
            answer = constrained.complete(llm, messages_for(kind, parent, compact), kind, parent=parent if kind == "diff" else None,
                                          seed=index)
        except LLMError as exc:
            arm.seconds.append(time.perf_counter() - started)
            arm.failures["request failed"] = arm.failures.get("request failed", 0) + 1
            print(f"  [{arm.name}] #{index} {kind}: request failed: {exc}", file=sys.stderr)
            continue
        arm.seconds.append(time.perf_counter() - started)
        arm.tokens.append(answer.completion_tokens)
        try:
            program = program_from(kind, answer.text, parent)
            contract.validate(program)
        except parsing.ParseError:
            arm.failures["no program / bad edit"] = arm.failures.get("no program / bad edit", 0) + 1
            continue
        except contract.CandidateError as exc:
            arm.failures[exc.reason] = arm.failures.get(exc.reason, 0) + 1
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

    rows = [("arm", "valid", "distinct valid", "s/proposal", "answer tokens", "beat parent", "failures")]
    for arm in arms:
        seconds = f"{statistics.mean(arm.seconds):.1f}" if arm.seconds else "-"
        tokens = f"{statistics.mean(arm.tokens):.0f}" if arm.tokens else "-"
        beat = "-" if arm.beat is None else f"{arm.beat}/{arm.evaluated}"
        failures = ", ".join(f"{k} {v}" for k, v in sorted(arm.failures.items())) or "-"
        rows.append((arm.name, pct(len(arm.valid), arm.proposals), pct(len(arm.distinct), arm.proposals),
                     seconds, tokens, beat, failures))
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
        run_arm(arm, LLMClient(settings), constrained, plan, args.compact)
        if constrained.fell_back:
            arm.name += " [server refused it]"
        arms.append(arm)
        print(f"{arm.name}: {arm.proposals} proposals done", file=sys.stderr)
    if args.evaluate > 0:
        evaluate_arms(arms, args.evaluate, args.tasks, args.steps_scale)
    print(f"{args.model} at {args.base_url}: {args.proposals} proposals per arm ({', '.join(kinds)} in turn"
          f"{', compact prompt' if args.compact else ''}, max_tokens {args.max_tokens})")
    print(table(arms))
    return 0


if __name__ == "__main__":
    sys.exit(main())
