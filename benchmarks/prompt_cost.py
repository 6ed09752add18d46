"""Prompt cost: what each LLM proposal would cost, measured on a real campaign's archive.

Builds the requests the LLM proposers (``full``, ``diff``, ``textgrad``: critic + edit,
``crossover``) would send at the end of an existing campaign, through the campaign's own code:
``Campaign(config, directory, resume=True)`` on a snapshot of its archive, ``_context`` and
``_propose`` for the next proposal indices, the real ``LLMClient`` and ``openai`` client. The
requests go to a local OpenAI-compatible server on 127.0.0.1 (``tests/fake_openai.py``) that
records every request body and answers each in the format asked for (a reference program, a
SEARCH/REPLACE edit of the parent, or a critique of the length the critic prompt allows), so
nothing is evaluated, no paid API is called and the campaign directory is never written.

Per kind it prints the calls per proposal, the prompt size, the answer size assumed and the
dollar cost per proposal at the model's list price (``discover.llm.DEFAULT_PRICES``, or
``--price``), then a projection for ``--proposals`` proposals with the README's mix. Tokens
are estimated as characters / 4 (no tokenizer is installed); answers are sized from the
archive: its mean program plus some prose for a program, its mean parent -> child change as
SEARCH/REPLACE blocks for a diff. Every answer is assumed to parse: a retry would re-send the
whole conversation.

    python benchmarks/prompt_cost.py [CAMPAIGN_DIR] [--model gpt-4o-mini] [--samples 10]
        [--completion-tokens N] [--proposals 400] [--price IN OUT] [--show KIND]
"""

from __future__ import annotations

import argparse
import difflib
import re
import sqlite3
import statistics
import sys
import tempfile
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import archive  # noqa: E402
from archive.resolve import default_campaign_dir  # noqa: E402
from archive.store import ArchiveError, ProgramRecord  # noqa: E402
from discover import parsing  # noqa: E402
from discover.campaign import CONFIG_FILE, LLM_KINDS, Campaign  # noqa: E402
from discover.config import CampaignConfig, load_config  # noqa: E402
from discover.llm import DEFAULT_PRICES  # noqa: E402
from discover.proposers import PROPOSERS  # noqa: E402
from prompts import template  # noqa: E402
from sandbox.executor import Executor, register_executor  # noqa: E402
from sandbox.references import reference_source  # noqa: E402
from sandbox.runcache import MemoryRunCache  # noqa: E402
from sandbox.worker import JobResult  # noqa: E402
from tests.fake_openai import FakeOpenAIServer  # noqa: E402

README_MIX = {"diff": 2, "textgrad": 1, "full": 1, "crossover": 1, "mutation": 1}
CHARS_PER_TOKEN = 4
PROSE_TOKENS = 100  # "say in at most three sentences what you will change and why", before the code
CRITIQUE_WORDS = 250  # prompts/critique.txt: "at most 250 words"
TOKENS_PER_WORD = 4 / 3
CRITIQUE = " ".join(("The second moment adapts too slowly on noisy tasks; keep the sign. " * 25).split()[:CRITIQUE_WORDS])
PROGRAM_ANSWER = f"One sign-based rule, as Lion.\n\n```python\n{reference_source('lion')}```\n"
UPDATE_LINE = re.compile(r"^def update\(.*$", re.MULTILINE)


class NoSandbox(Executor):
    """The campaign's executor here: nothing is evaluated, so no sandbox worker starts."""

    def __init__(self, **options: Any):
        """Takes the options a local pool would (device, size) and needs none of them."""

    @property
    def capacity(self) -> int:
        return 1

    def submit(self, job_name: str, payload: dict[str, Any], timeout: float = 60.0) -> Future[JobResult]:
        raise RuntimeError(f"prompt_cost evaluates nothing (asked to run {job_name!r})")

    def close(self) -> None:
        return None


# --- the answers the local server gives -----------------------------------------------------


def answer_kind(request: dict[str, Any]) -> str:
    """What a request asks for: ``critique``, ``diff`` or ``program``."""
    prompt = request["messages"][-1]["content"]
    for kind in ("critique", "diff"):
        if prompt.startswith(template(kind).split("\n", 1)[0]):
            return kind
    return "program"


def answer(request: dict[str, Any]) -> str:
    """A usable answer: a critique, an edit of the parent shown, or a complete program."""
    kind = answer_kind(request)
    if kind == "critique":
        return CRITIQUE
    if kind == "diff":
        line = UPDATE_LINE.search(parsing.extract_program(request["messages"][-1]["content"])).group(0)
        return f"Mark the rule as edited.\n\n<<<<<<< SEARCH\n{line}\n=======\n{line}\n    # edited\n>>>>>>> REPLACE\n"
    return PROGRAM_ANSWER


# --- the campaign, on a snapshot -------------------------------------------------------------


def snapshot(directory: Path, into: Path) -> Path:
    """A consistent copy of the campaign's archive (SQLite backup API) in ``into``."""
    source = sqlite3.connect(f"file:{directory / 'archive.db'}?mode=ro", uri=True)
    target = sqlite3.connect(into / "archive.db")
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()
    return into


def campaign_config(directory: Path, kind: str, base_url: str) -> CampaignConfig:
    """The campaign's own config with only ``kind`` proposing (the config's weights merge with
    ours, so every other kind is set to 0), the local server, and no budget caps."""
    return load_config(directory / CONFIG_FILE, overrides=[{
        "llm": {"base_url": base_url, "api_key_env": "PROMPT_COST_NO_KEY", "cache": "off"},
        "search": {"proposers": {**dict.fromkeys(PROPOSERS, 0.0), kind: 1.0}},
        "budget": {"max_evaluations": None, "max_seconds": None, "max_usd": None, "max_tokens": None},
        "evaluation": {"executor": "local", "device": "cpu"},
    }])


@dataclass
class Sampled:
    """The requests of one proposal and whether the proposer got a program from them."""

    requests: list[dict[str, Any]]
    error: tuple[str, str] | None


def sample(directory: Path, copy: Path, kind: str, server: FakeOpenAIServer, count: int) -> list[Sampled]:
    """The next ``count`` proposals of ``kind`` as the resumed campaign would make them."""
    campaign = Campaign(campaign_config(directory, kind, server.base_url), copy, resume=True, cache=MemoryRunCache())
    try:
        first = campaign._next_index()
        out = []
        for index in range(first, first + count):
            sent = len(server.requests)
            _, proposal = campaign._propose(index, campaign._context(index))
            out.append(Sampled(server.requests[sent:], proposal.error))
        return out
    finally:
        campaign.close()


# --- sizes -----------------------------------------------------------------------------------


def tokens(chars: float) -> float:
    return chars / CHARS_PER_TOKEN


def prompt_chars(request: dict[str, Any]) -> int:
    return sum(len(m["content"]) for m in request["messages"])


def edit_blocks(parent: str, child: str) -> str:
    """The SEARCH/REPLACE blocks that turn ``parent`` into ``child`` (one per changed run of lines)."""
    a, b = parent.splitlines(keepends=True), child.splitlines(keepends=True)
    opcodes = difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    return "".join(f"<<<<<<< SEARCH\n{''.join(a[i1:i2])}=======\n{''.join(b[j1:j2])}>>>>>>> REPLACE\n"
                   for tag, i1, i2, j1, j2 in opcodes if tag != "equal")


def answer_tokens(programs: list[ProgramRecord]) -> tuple[dict[str, float], str]:
    """Assumed answer tokens per answer kind, measured on the archive, and how they were found."""
    by_id = {p.id: p for p in programs}
    proposed = [p for p in programs if p.proposer != "reference"]
    code = statistics.mean(tokens(len(p.code)) for p in proposed)
    changes = [edit_blocks(by_id[p.parent_ids[0]].code, p.code) for p in proposed if p.parent_ids]
    diff = statistics.mean(tokens(len(c)) for c in changes)
    critique = CRITIQUE_WORDS * TOKENS_PER_WORD
    sizes = {"program": PROSE_TOKENS + code, "diff": PROSE_TOKENS + diff, "critique": critique}
    how = (f"program {sizes['program']:.0f} = {PROSE_TOKENS} prose + {code:.0f} code (mean of {len(proposed)} "
           f"archived programs)\n  diff {sizes['diff']:.0f} = {PROSE_TOKENS} prose + {diff:.0f} SEARCH/REPLACE "
           f"(mean of {len(changes)} parent -> child changes)\n  critique {critique:.0f} "
           f"= {CRITIQUE_WORDS} words, the critic prompt's limit")
    return sizes, how


@dataclass
class KindCost:
    """Per-proposal means for one proposer kind."""

    calls: float
    prompt: float
    prompt_max: float
    answer: float
    usd: float


def kind_cost(samples: list[Sampled], answers: dict[str, float], price: tuple[float, float]) -> KindCost:
    prompts = [sum(tokens(prompt_chars(r)) for r in s.requests) for s in samples]
    answer = statistics.mean(sum(answers[answer_kind(r)] for r in s.requests) for s in samples)
    prompt = statistics.mean(prompts)
    calls = statistics.mean(len(s.requests) for s in samples)
    return KindCost(calls, prompt, max(prompts), answer, usd(prompt, answer, price))


def usd(prompt: float, answer: float, price: tuple[float, float]) -> float:
    return (prompt * price[0] + answer * price[1]) / 1e6


# --- report ----------------------------------------------------------------------------------


def show(samples: list[Sampled]) -> None:
    """Every message of the first sampled proposal, as sent."""
    for number, request in enumerate(samples[0].requests, 1):
        for message in request["messages"]:
            print(f"\n===== call {number}, {message['role']} ({len(message['content']):,} characters) =====")
            print(message["content"])
    print("\n===== end of the prompt =====\n")


def report(costs: dict[str, KindCost], proposals: int, model: str, price: tuple[float, float]) -> None:
    print(f"\n{'kind':<10} {'calls':>5} {'prompt tokens':>14} {'max':>7} {'answer':>7} {'$/proposal':>11}")
    for kind, c in costs.items():
        print(f"{kind:<10} {c.calls:>5.1f} {c.prompt:>14,.0f} {c.prompt_max:>7,.0f} {c.answer:>7,.0f} {c.usd:>11.5f}")
    print(f"{'mutation':<10} {0:>5} {0:>14} {0:>7} {0:>7} {0:>11.5f}   (offline)")

    total = sum(README_MIX.values())
    share = {kind: README_MIX.get(kind, 0) / total for kind in costs}
    mix = ", ".join(f"{k} {w}" for k, w in README_MIX.items())
    n = proposals
    prompt = n * sum(share[k] * c.prompt for k, c in costs.items())
    out = n * sum(share[k] * c.answer for k, c in costs.items())
    calls = n * sum(share[k] * c.calls for k, c in costs.items())
    print(f"\n{n} proposals with the README's mix ({mix}):")
    print(f"  {calls:,.0f} LLM calls, {prompt / 1e6:.2f}M prompt + {out / 1e6:.2f}M answer tokens")
    print(f"  {model}: ${usd(prompt, out, price):.2f} (${price[0]:.2f} / ${price[1]:.2f} per 1M tokens in / out)")
    print("  at other list prices:")
    for name, other in DEFAULT_PRICES.items():
        if name != model:
            print(f"    {name:<14} {'$' + format(usd(prompt, out, other), '.2f'):>8}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("campaign", nargs="?", type=Path,
                        help="campaign directory (default: campaigns/latest, else the newest campaign)")
    parser.add_argument("--model", help="model to price (default: the campaign's llm.proposer_model)")
    parser.add_argument("--samples", type=int, default=10, help="proposals measured per proposer kind")
    parser.add_argument("--completion-tokens", type=float,
                        help="tokens per answer, every call (default: sized from the archive)")
    parser.add_argument("--proposals", type=int, default=400, help="proposals in the projection")
    parser.add_argument("--price", type=float, nargs=2, metavar=("IN", "OUT"),
                        help="USD per 1M input and output tokens (default: the model's list price)")
    parser.add_argument("--show", choices=LLM_KINDS, help="print the first sampled prompt of this kind")
    args = parser.parse_args()
    if args.samples < 1:
        parser.error("--samples must be at least 1")
    if args.campaign is None:
        try:
            args.campaign = default_campaign_dir()
        except ArchiveError as exc:
            parser.error(str(exc))
    if not (args.campaign / "archive.db").is_file():
        parser.error(f"{args.campaign} holds no archive.db")
    config = load_config(args.campaign / CONFIG_FILE)
    model = args.model or config.llm.proposer_model
    price = tuple(args.price) if args.price else {**DEFAULT_PRICES, **config.llm.prices}.get(model)
    if price is None:
        parser.error(f"no list price for model {model!r}: pass --price IN OUT")

    register_executor("local", NoSandbox)
    server = FakeOpenAIServer()
    server.responder = answer
    server.start()
    try:
        with tempfile.TemporaryDirectory(prefix="prompt-cost-") as tmp:
            copy = snapshot(args.campaign, Path(tmp))
            samples = {kind: sample(args.campaign, copy, kind, server, args.samples) for kind in LLM_KINDS}
            with archive.open(copy, readonly=True) as store:
                programs = store.programs()
    finally:
        server.stop()

    if args.show:
        show(samples[args.show])
    system = samples["full"][0].requests[0]["messages"][0]["content"]
    print(f"campaign: {args.campaign} ({len(programs)} programs)")
    print(f"prompts: its next {args.samples} proposals of each kind, as the campaign would build them")
    print(f"tokens: characters / {CHARS_PER_TOKEN} (no tokenizer installed)")
    print(f"system prompt: {tokens(len(system)):,.0f} tokens, part of every call's prompt")
    answers, how = answer_tokens(programs)
    if args.completion_tokens is not None:
        answers = dict.fromkeys(answers, args.completion_tokens)
        how = f"{args.completion_tokens:g} tokens per answer (--completion-tokens)"
    print(f"answers assumed (tokens; every answer parses, no retries):\n  {how}")
    for kind, sampled in samples.items():
        failed = [s.error for s in sampled if s.error]
        if failed:
            print(f"note: {len(failed)} {kind} proposal(s) got no program: {failed[0][0]}: {failed[0][1][:120]}")
    costs = {kind: kind_cost(sampled, answers, price) for kind, sampled in samples.items()}
    report(costs, args.proposals, model, price)


if __name__ == "__main__":
    main()
