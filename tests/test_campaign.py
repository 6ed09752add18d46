"""Discovery campaigns end to end: offline determinism, every LLM proposer against a local
OpenAI-compatible server (with faults), exact spend accounting, and resume after a kill."""

from __future__ import annotations

import itertools
import threading
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import archive
from discover.campaign import Campaign, Event
from discover.config import load_config
from tests.fake_openai import Delay, Reply, Status, fake_llm_server  # noqa: F401 (fixture)

REPO = Path(__file__).resolve().parents[1]

SMALL = {
    "budget": {"max_evaluations": 4},
    "evaluation": {"tasks": ["noisy_quadratic"], "validation_tasks": ["noisy_quadratic@1"], "steps_scale": 0.25, "lr_grid": [1e-3, 1e-2, 0.1],
                   "screen": False, "heldout": False, "workers": 2, "confirm_seeds": [200]},
    "search": {"seed_programs": ["adamw", "sgd_momentum"], "in_flight": 2},
}


@pytest.fixture(autouse=True)
def private_run_cache(tmp_path_factory, monkeypatch):
    # One run cache for this module: baselines are computed once, never taken from the user's cache.
    monkeypatch.setenv("DISCOVER_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "run-cache"))


def small_config(tmp_path: Path, **extra) -> object:
    overrides = [SMALL, {"output_dir": str(tmp_path)}, *extra.values()]
    return load_config(overrides=overrides)


def run_campaign(config) -> tuple[Campaign, object]:
    campaign = Campaign.create(config)
    try:
        summary = campaign.run()
    finally:
        campaign.close()
    return campaign, summary


def programs(directory: Path) -> list[tuple]:
    with archive.open(directory) as store:
        return [(p.code, p.status, p.proposer, None if p.fitness is None else round(p.fitness, 9))
                for p in store.programs(sort="date")][::-1]


def test_offline_campaign_is_deterministic(tmp_path):
    first, summary = run_campaign(small_config(tmp_path / "a", seed={"seed": 3}))
    second, _ = run_campaign(small_config(tmp_path / "b", seed={"seed": 3}))
    assert summary.offline and "offline" in " ".join(summary.notes)
    a, b = programs(first.directory), programs(second.directory)
    assert a == b
    proposed = [p for p in a if p[2] == "mutation"]
    assert len(proposed) >= 4
    assert summary.spend["evaluations"] == 4
    with archive.open(first.directory) as store:
        assert store.integrity_check() == "ok"
        assert store.campaign().status == "finished"
        assert not store.programs(status="pending")
        evaluated = store.programs(status="evaluated")
        assert all(store.evaluations(p.id) for p in evaluated)
        ref = next(p for p in evaluated if p.name == "adamw")
        assert 0.5 < ref.fitness < 2.0  # AdamW against its own tuned baseline


GOOD = '''"""Sign of momentum with RMS-normalised decay."""
HPARAMS = {"lr": 0.01, "beta1": 0.9, "weight_decay": 0.0}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    m = interp(grad, state["m"], hp.beta1)
    return -hp.lr * tanh(m / (rms(m) + 1e-8)), {"m": m}
'''

PROSE = "I would use a sign-based momentum method, as it is robust."
BROKEN = "```python\nHPARAMS = {'lr': 0.1}\ndef update(grad):\n    return grad\n```"

DIFF = '''<<<<<<< SEARCH
    m = interp(grad, state["m"], hp.beta1)
=======
    m = interp(grad, state["m"], hp.beta1 * 0.99)
>>>>>>> REPLACE'''


CALLS = itertools.count()


def responder(request: dict) -> Reply:
    """Answer by what the last user message asks for, like a cooperative model would; each
    answer is a little different, as a sampled model's would be."""
    text = request["messages"][-1]["content"]
    k = next(CALLS)
    good = GOOD.replace("0.9,", f"{0.5 + 0.004 * k:.3f},")
    if text.startswith("That answer could not be used"):
        return Reply(f"Here it is:\n```python\n{good}```", prompt_tokens=11, completion_tokens=7)
    if text.startswith("You are reviewing"):
        return Reply("The update ignores curvature; normalise by a running second moment.", 13, 9)
    if text.startswith("Improve this program by editing it"):
        return Reply(DIFF.replace("0.99", f"{0.9 + 0.001 * k:.3f}"), 12, 8)
    return Reply(f"```python\n{good}```", 10, 5)


def test_llm_campaign_exercises_every_proposer_and_counts_spend(tmp_path, fake_llm_server):
    fake_llm_server.script([
        Status(429, retry_after=0.2),
        Status(500),
        Delay(1.5, then=Reply("```python\n" + GOOD + "```")),  # longer than the client timeout
    ])
    # The first two program requests get prose without code, then a broken program.
    faults = [Reply(PROSE), Reply(BROKEN)]
    lock = threading.Lock()

    def faulty(request: dict) -> Reply:
        text = request["messages"][-1]["content"]
        asks_program = text.startswith(("Write a new", "Revise this", "Combine two"))
        with lock:
            if asks_program and faults:
                return faults.pop(0)
        return responder(request)

    fake_llm_server.responder = faulty
    config = load_config(overrides=[
        SMALL, {"output_dir": str(tmp_path), "seed": 3},  # seed 3 draws all four kinds early
        {"budget": {"max_evaluations": 8}, "search": {"in_flight": 4, "parse_retries": 1,
                                                      "proposers": {"full": 1, "diff": 1, "textgrad": 1, "crossover": 1}},
         "llm": {"base_url": fake_llm_server.base_url, "timeout": 0.5, "backoff_base": 0.01, "max_attempts": 4,
                 "prices": {"gpt-4o-mini": [1.0, 2.0]}}},
    ])
    started = time.monotonic()
    campaign, summary = run_campaign(config)
    assert not summary.offline
    with archive.open(campaign.directory) as store:
        calls = store.llm_calls()
        kinds = {p.proposer for p in store.programs()}
        assert {"full", "diff", "textgrad", "crossover"} <= kinds
        outcomes = {c.outcome for c in calls}
        assert "ok" in outcomes and "invalid_code" in outcomes and "critique" in outcomes
        # The prose answer and the broken program are archived with their outcome; the retry in
        # the same conversation (with the exact error) is archived too.
        by_response = {c.response: c for c in calls}
        assert by_response[PROSE].outcome == "invalid_code"
        broken = next(c for r, c in by_response.items() if "def update(grad):" in r)
        assert broken.outcome == "invalid_code"
        retries = [c for c in calls if c.role == "retry"]
        assert retries and all("could not be used" in c.prompt[-1]["content"] for c in retries)
        # Programs shown to the model are fenced as python, with their results after them.
        shown = [(c, store.program(c.program_id)) for c in calls
                 if c.role == "proposer" and c.program_id is not None
                 and c.prompt[-1]["content"].startswith(("Write a new", "Combine two"))]
        assert shown
        for call, program in shown:
            for parent in map(store.program, program.parent_ids):
                block = f"```python\n{parent.code.rstrip()}\n```\n\nProgram #{parent.id}: fitness"
                assert block in call.prompt[-1]["content"]
        critiqued = [p for p in store.programs() if p.proposer == "textgrad" and p.critique]
        assert critiqued and "curvature" in critiqued[0].critique
        # Every answer the server gave is in the archive, and spend is exact.
        answered = list(fake_llm_server.answered)
        assert not any(c.cached for c in calls)  # each request carries its own sampling seed
        assert len(calls) == len(answered)
        assert summary.spend["tokens_in"] == sum(r.prompt_tokens for r in answered) == sum(c.tokens_in for c in calls)
        assert summary.spend["tokens_out"] == sum(r.completion_tokens for r in answered)
        expected_usd = sum(r.prompt_tokens * 1.0 + r.completion_tokens * 2.0 for r in answered) / 1e6
        assert summary.spend["usd"] == pytest.approx(expected_usd)
        assert store.campaign().spend["usd"] == pytest.approx(expected_usd)
    assert time.monotonic() - started < 120


WRITER = """
import sys
from discover.campaign import Campaign
from discover.config import load_config
from tests.test_campaign import SMALL
config = load_config(overrides=[SMALL, {"output_dir": sys.argv[1], "name": "killed", "seed": 5},
                                {"budget": {"max_evaluations": 40}}])
Campaign.create(config).run()
"""


def test_killed_campaign_resumes_without_losing_work(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    directory = None
    deadline = time.monotonic() + 300  # generous: CI machines can be slow and loaded
    evaluated_before = []
    while time.monotonic() < deadline:
        dirs = [d for d in tmp_path.iterdir() if d.is_dir() and d.name.startswith("killed")]
        if dirs and (dirs[0] / "archive.db").exists():
            directory = dirs[0]
            try:
                conn = sqlite3.connect(f"file:{directory / 'archive.db'}?mode=ro", uri=True)
                evaluated_before = conn.execute(
                    "SELECT id, code, fitness FROM programs WHERE status='evaluated' AND proposer='mutation'").fetchall()
                conn.close()
            except sqlite3.Error:
                evaluated_before = []
            if len(evaluated_before) >= 2:
                break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert directory is not None and len(evaluated_before) >= 2, proc.stderr.read().decode()[-2000:]

    config = load_config(directory / "config.toml", overrides=[{"budget": {"max_evaluations": 6}}])
    campaign = Campaign(config, directory, resume=True)
    try:
        summary = campaign.run()
    finally:
        campaign.close()
    with archive.open(directory) as store:
        assert store.integrity_check() == "ok"
        assert not store.programs(status="pending")
        for pid, code, fitness in evaluated_before:
            p = store.program(pid)
            assert p.code == code and p.fitness == pytest.approx(fitness)
        assert store.campaign().status == "finished"
    assert summary.spend["evaluations"] >= 6


def test_a_stuck_proposer_ends_the_campaign_with_a_clear_reason(tmp_path, fake_llm_server):
    fake_llm_server.responder = lambda request: Reply("I cannot write code today.")
    config = load_config(overrides=[
        SMALL, {"output_dir": str(tmp_path)},
        {"search": {"proposers": {"full": 1}, "max_stalled_proposals": 6, "parse_retries": 0},
         "llm": {"base_url": fake_llm_server.base_url, "backoff_base": 0.01,
                 "max_tokens_param": "max_completion_tokens", "max_tokens": 777}}])
    campaign, summary = run_campaign(config)
    assert "proposals in a row" in summary.stop_reason
    # the config's request field reaches the wire (reasoning models reject max_tokens)
    preflight, *requests = fake_llm_server.requests
    assert preflight["max_completion_tokens"] == 16 and "max_tokens" not in preflight
    assert all(r["max_completion_tokens"] == 777 and "max_tokens" not in r for r in requests)
    assert summary.spend["evaluations"] == 0
    with archive.open(campaign.directory) as store:
        failed = store.programs(status="failed")
        assert len(failed) >= 6 and all(store.failures(p.id)[0].reason == "invalid_code" for p in failed)
        calls = store.llm_calls()
        # Every archived answer was served (a keep-alive reset can make the server answer twice).
        assert 6 <= len(calls) <= len(fake_llm_server.answered)
        assert summary.spend["tokens_in"] == sum(c.tokens_in for c in calls)


def test_an_llm_campaign_sends_each_answer_its_grammar_and_falls_back_when_refused(tmp_path, fake_llm_server):
    fake_llm_server.responder = responder
    config = load_config(overrides=[
        SMALL, {"output_dir": str(tmp_path / "a"), "seed": 3},
        {"budget": {"max_evaluations": 2}, "search": {"in_flight": 2, "proposers": {"diff": 1, "textgrad": 1}},
         "llm": {"base_url": fake_llm_server.base_url, "backoff_base": 0.01, "constrained": "gbnf", "preflight": False}},
    ])
    run_campaign(config)
    chats = [r for r in fake_llm_server.requests if "messages" in r]
    assert chats and all("grammar" in r for r in chats)
    critiques = [r for r in chats if "textual gradient" in r["messages"][-1]["content"].lower()
                 or "critique" in r["messages"][-1]["content"].lower()]
    programs = [r for r in chats if r not in critiques]
    assert programs and any("SEARCH" in r["grammar"] for r in programs)  # diff answers get the diff grammar
    # A server that refuses grammars: `auto` says so once and the campaign goes on without them.
    fake_llm_server.requests.clear()
    fake_llm_server.reject_fields = {"grammar"}
    config = load_config(overrides=[config.model_dump(), {"output_dir": str(tmp_path / "b"),
                                                          "llm": {"constrained": "auto"}}])
    _, summary = run_campaign(config)
    assert summary.spend["evaluations"] >= 1
    later = [r for r in fake_llm_server.requests if "messages" in r][-1]
    assert "grammar" not in later


def test_ctrl_c_while_a_pipelined_batch_is_evaluated_archives_each_proposal_once(tmp_path, fake_llm_server):
    # With an LLM, batch k+1 is generated while batch k is evaluated. A Ctrl-C (KeyboardInterrupt
    # in the main thread) during batch 2's evaluation must archive batch 3, which was generated
    # ahead, and must not archive batch 2 a second time.
    fake_llm_server.responder = responder
    config = load_config(overrides=[SMALL, {"output_dir": str(tmp_path)}, {
        "budget": {"max_evaluations": 12}, "search": {"in_flight": 2, "proposers": {"full": 1}},
        "llm": {"base_url": fake_llm_server.base_url, "timeout": 30.0, "backoff_base": 0.01}}])
    holder: dict[str, Campaign] = {}

    def interrupt(event: Event) -> None:
        if event.kind == "evaluated" and event.program_id is not None:
            index = holder["campaign"].archive.program(event.program_id).meta.get("proposal_index")
            if index is not None and index >= 2:  # a program of the second batch
                raise KeyboardInterrupt

    campaign = Campaign.create(config, on_event=interrupt)
    holder["campaign"] = campaign
    try:
        summary = campaign.run()
    finally:
        campaign.close()
    assert summary.status == "stopped" and "interrupted" in summary.stop_reason
    with archive.open(campaign.directory) as store:
        indices = [p.meta["proposal_index"] for p in store.programs() if "proposal_index" in p.meta]
        assert len(indices) == len(set(indices)), f"a proposal was archived twice: {sorted(indices)}"
        assert {0, 1, 2, 3} <= set(indices)
        assert {4, 5} & set(indices), "the batch generated ahead was archived (pending), not dropped"
        assert len(store.llm_calls()) == len(fake_llm_server.answered)


def test_the_halving_setting_reaches_the_evaluator(tmp_path):
    from sandbox.halving import RECOMMENDED

    for value, expected in ((True, RECOMMENDED), (False, None)):
        campaign = Campaign.create(small_config(tmp_path / str(value), extra={"evaluation": {"halving": value}}))
        try:
            assert campaign.evaluator.settings.halving == expected
        finally:
            campaign.close()
