"""Reliability under faults, kills and hostile input (issue 15): each test here failed before
its fix. Campaigns are the small ones of test_campaign (one task, a 3-point grid, seconds)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

import archive
from discover.campaign import Campaign
from discover.config import load_config
from tests.fake_openai import Reply, fake_llm_server  # noqa: F401 (fixture)
from tests.test_campaign import GOOD, SMALL, private_run_cache  # noqa: F401 (autouse fixture)

REPO = Path(__file__).resolve().parents[1]


def llm_config(tmp_path: Path, server, **extra):
    return load_config(overrides=[
        SMALL, {"output_dir": str(tmp_path), "seed": 1},
        {"llm": {"base_url": server.base_url, "backoff_base": 0.01, "max_attempts": 2, "timeout": 5}},
        *extra.values()])


def run(config, directory: Path | None = None, resume: bool = False):
    campaign = Campaign(config, directory, resume=True) if resume else Campaign.create(config)
    try:
        return campaign, campaign.run()
    finally:
        campaign.close()


# --- 1. a proposer's error is an archived outcome, never a crash ----------------------------


def test_an_empty_critique_is_an_archived_failure_and_resume_replays_it(tmp_path, fake_llm_server):
    def critic_sometimes_empty(request: dict) -> Reply:
        text = request["messages"][-1]["content"]
        if text.startswith("You are reviewing"):
            # Only pleasantries (nothing is left once they are stripped), for half the seeds.
            return Reply("Sure, here is my critique:" if request["seed"] % 2 else "Normalise by a second moment.")
        return Reply("```python\n" + GOOD.replace("0.9,", f"{0.5 + (request['seed'] % 97) / 200:.3f},") + "```")

    fake_llm_server.responder = critic_sometimes_empty
    config = llm_config(tmp_path, fake_llm_server, search={"search": {"proposers": {"textgrad": 1}}},
                        budget={"budget": {"max_evaluations": 3}})
    campaign, summary = run(config)
    directory = campaign.directory
    with archive.open(directory) as store:
        assert store.campaign().status == "finished"
        failed = [p for p in store.programs(status="failed") if p.proposer == "textgrad"]
        assert failed, "no empty critique was drawn"
        failure = store.failures(failed[0].id)[0]
        assert failure.reason == "invalid_code" and "empty" in failure.message
        calls = store.llm_calls()
        # Every answer the server gave is archived, the empty critique with its outcome.
        assert len(calls) == len(fake_llm_server.answered)
        assert any(c.role == "critic" and c.outcome == "invalid_code" for c in calls)
        before = [(p.code, p.status, p.proposer) for p in store.programs(sort="date")][::-1]
        # A kill just before the first empty critique was archived: it and everything after it
        # are missing from the archive, though their answers are in the response cache.
        cut = min(p.meta["proposal_index"] for p in failed)
        wiped = sorted(p.id for p in store.programs() if p.meta.get("proposal_index", -1) >= cut)
        charged = sum(1 for p in store.programs(status="evaluated")
                      if p.proposer != "reference" and p.meta["proposal_index"] < cut)
        spend = {**store.campaign().spend, "evaluations": charged}
    conn = sqlite3.connect(directory / "archive.db")
    marks = ",".join("?" * len(wiped))
    with conn:
        for table in ("llm_calls", "failures", "evaluations"):
            conn.execute(f"DELETE FROM {table} WHERE program_id IN ({marks})", wiped)
        conn.execute(f"DELETE FROM programs WHERE id IN ({marks})", wiped)
        conn.execute("UPDATE campaigns SET status = 'failed', spend = ?", (json.dumps(spend),))
    conn.close()
    sent = len(fake_llm_server.requests)
    resumed_config = load_config(directory / "config.toml", overrides=[{"llm": {"cache": "replay"}}])
    run(resumed_config, directory, resume=True)
    assert len(fake_llm_server.requests) == sent  # the resume replayed the cached answers
    with archive.open(directory) as store:
        assert store.campaign().status == "finished"
        after = [(p.code, p.status, p.proposer) for p in store.programs(sort="date")][::-1]
    assert after == before


def test_a_proposer_that_raises_keeps_the_answers_it_paid_for(fake_llm_server):
    import random

    from discover.llm import LLMClient, LLMSettings
    from discover.proposers import Proposer, ProposalContext

    class Exploding(Proposer):
        """A proposer with a bug after its request: the answer must survive the bug."""

        kind = "exploding"

        def _fill(self, ctx, parents, proposal):
            messages = [{"role": "user", "content": "write one"}]
            completion = self._complete(proposal, messages, "proposer")
            self._record(proposal, "proposer", messages, completion, "ok")
            raise KeyError("a bug in a parser")

    fake_llm_server.script([Reply("an answer", 7, 3)])
    llm = LLMClient(LLMSettings(base_url=fake_llm_server.base_url, models={"proposer": "m"}, cache_mode="off"))
    parent = {"id": 1, "code": GOOD}
    ctx = ProposalContext(parents=[parent], parent_of=lambda p: None, top=[parent], failure_counts={},
                          rng=random.Random(0))
    proposal = Exploding(llm).propose(ctx)
    assert proposal.source is None and proposal.error[0] == "crashed" and "a bug in a parser" in proposal.error[1]
    assert [c.response for c in proposal.llm_calls] == ["an answer"] and proposal.llm_calls[0].tokens_in == 7


# --- 4. a broken LLM endpoint fails fast, before anything is archived -------------------------


def run_main(argv, monkeypatch, capsys) -> tuple[int, str, str]:
    """The console-script entry point (user errors: one line, exit code 2)."""
    from discover.cli import main

    monkeypatch.setattr("sys.argv", ["discover", *argv])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def closed_port_url() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"  # nothing listens there once the socket is closed


@pytest.mark.parametrize("answer, words", [(401, "API key was rejected"), (403, "may not use model"),
                                           (404, "does not exist"), ("refused", "cannot reach")])
def test_run_with_a_broken_endpoint_stops_before_the_campaign(answer, words, tmp_path, fake_llm_server,
                                                              monkeypatch, capsys):
    from tests.fake_openai import Status

    url = closed_port_url() if answer == "refused" else fake_llm_server.base_url
    if answer != "refused":
        fake_llm_server.responder = lambda request: Status(answer)
    code, out, err = run_main(["run", "--base-url", url, "--output-dir", str(tmp_path / "out"),
                               "--set", "search.proposers={\"full\": 1}", "--max-evaluations", "2"],
                              monkeypatch, capsys)
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing archived, no directory
    assert len(fake_llm_server.requests) <= 1  # a rejection is not retried


def test_llm_check_answers_in_one_line(fake_llm_server, monkeypatch, capsys):
    from tests.fake_openai import Status

    fake_llm_server.script([Reply("ready", 5, 1)])
    code, out, err = run_main(["llm-check", "--base-url", fake_llm_server.base_url, "--model", "m1"],
                              monkeypatch, capsys)
    assert code == 0, err
    assert "m1" in out and "ok" in out.lower()
    fake_llm_server.script([Status(401)])
    code, out, err = run_main(["llm-check", "--base-url", fake_llm_server.base_url], monkeypatch, capsys)
    assert code == 2 and "API key was rejected" in err and "Traceback" not in err
    code, out, err = run_main(["llm-check"], monkeypatch, capsys)
    assert code == 2 and "llm.base_url" in err


def test_no_key_for_a_remote_url_is_warned(monkeypatch):
    from discover.llm import LLMSettings, missing_key_warning

    monkeypatch.delenv("MY_TEST_LLM_KEY", raising=False)
    remote = LLMSettings(base_url="https://api.example.com/v1", api_key_env="MY_TEST_LLM_KEY")
    assert "MY_TEST_LLM_KEY" in missing_key_warning(remote)
    assert missing_key_warning(LLMSettings(base_url="http://127.0.0.1:8000/v1", api_key_env="MY_TEST_LLM_KEY")) is None
    monkeypatch.setenv("MY_TEST_LLM_KEY", "sk-test")
    assert missing_key_warning(remote) is None


def test_transport_failures_mid_campaign_are_llm_call_failures_not_programs(tmp_path, fake_llm_server):
    from tests.fake_openai import Status

    fake_llm_server.script([Reply("ready", 3, 1)])  # the preflight passes, then the server breaks
    fake_llm_server.responder = lambda request: Status(503)
    config = llm_config(tmp_path, fake_llm_server, search={"search": {"proposers": {"full": 1}}},
                        llm={"llm": {"max_attempts": 1}})
    campaign, summary = run(config)
    assert "LLM" in summary.stop_reason and "503" in summary.stop_reason
    with archive.open(campaign.directory) as store:
        assert [p.proposer for p in store.programs()] == ["reference", "reference"]  # no failed programs
        calls = store.llm_calls()
        assert calls[0].outcome == "preflight" and calls[0].tokens_in == 3
        errors = [c for c in calls if c.outcome == "error"]
        assert errors and all(c.program_id is None and "503" in c.response for c in errors)
        assert len(errors) == len(fake_llm_server.requests) - 1
        assert summary.spend["tokens_in"] == 3  # exactly what the server reported using


# --- 2. workers start from an allow-list of variables, so no key of any name reaches them ------


def test_a_key_in_a_custom_variable_never_reaches_a_worker(monkeypatch):
    from sandbox.pool import WorkerPool
    from sandbox.worker import WorkerConfig, scrubbed_environment

    monkeypatch.setenv("MYLLM_CRED", "sk-custom-must-not-leak")  # llm.api_key_env = "MYLLM_CRED"
    monkeypatch.setenv("OPENAI_BASE_URL", "https://internal.example/v1")  # read by the LLM client
    monkeypatch.setenv("ZZ_RANDOM_SETTING", "also-not-needed")
    with WorkerPool(size=1) as pool:
        result = pool.submit("selftest", {"mode": "env"}, timeout=30).result()
    assert result.ok, result.message
    visible = set(result.value["visible"])  # os.environ and the process's initial environment
    assert not {"MYLLM_CRED", "OPENAI_BASE_URL", "ZZ_RANDOM_SETTING"} & visible
    assert "PATH" in visible
    env = scrubbed_environment({"PATH": "/bin", "LC_ALL": "C.UTF-8", "CUDA_HOME": "/usr/local/cuda",
                                "MYLLM_CRED": "x", "DATABASE_URL": "postgres://u:p@h/db"}, WorkerConfig())
    assert {"PATH", "LC_ALL", "CUDA_HOME"} <= set(env) and not {"MYLLM_CRED", "DATABASE_URL"} & set(env)


# --- 5. bad input is one line and exit code 2, and leaves nothing behind -----------------------


def finished_campaign(tmp_path: Path) -> Path:
    """A campaign directory as `discover run` leaves it (two references, no candidates)."""
    config = load_config(overrides=[SMALL, {"output_dir": str(tmp_path), "budget": {"max_evaluations": 1},
                                            "search": {"seed_programs": ["adamw"]}}])
    campaign, _ = run(config)
    return campaign.directory


@pytest.mark.parametrize("damage", ["random", "truncated", "foreign"])
def test_resume_on_a_damaged_archive_is_one_line(damage, tmp_path, monkeypatch, capsys):
    import os

    directory = tmp_path / "c"
    directory.mkdir()
    (directory / "config.toml").write_text('name = "c"\n[budget]\nmax_evaluations = 2\n')
    db = directory / "archive.db"
    if damage == "random":
        db.write_bytes(os.urandom(8192))
    elif damage == "truncated":
        with archive.open(directory, create=True) as store:
            store.create_campaign("c", {}, seed=0)
        data = db.read_bytes()
        db.write_bytes(data[: len(data) // 3])
    else:
        conn = sqlite3.connect(db)
        conn.execute("CREATE TABLE users (name TEXT)")
        conn.commit()
        conn.close()
    code, out, err = run_main(["run", "--resume", str(directory)], monkeypatch, capsys)
    assert code == 2 and "Traceback" not in err + out, err
    assert len(err.strip().splitlines()) == 1 and str(db) in err


@pytest.mark.parametrize("override, words", [
    ('search.proposers={"bogus": 1}', "unknown proposer kind 'bogus'"),
    ('search.proposers={"mutation": 0}', "at least one proposer needs a positive weight"),
    ('search.proposers={"mutation": -1}', "weights must be >= 0"),
    ('search.seed_programs=["adamw", "nope"]', "unknown seed program 'nope'"),
    ("search.seed_programs=[]", "at least one seed program"),
])
def test_a_bad_config_is_rejected_before_any_directory(override, words, tmp_path, monkeypatch, capsys):
    out_dir = tmp_path / "campaigns"
    code, out, err = run_main(["run", "--output-dir", str(out_dir), "--set", override], monkeypatch, capsys)
    assert code == 2 and "Traceback" not in err + out, err
    assert words in err and len(err.strip().splitlines()) == 1
    assert not out_dir.exists()


# --- 3. a resumed campaign ends with the archive an uninterrupted one ends with ---------------

RESUME = {"seed": 8, "budget": {"max_evaluations": 6}}


def snapshot(directory: Path) -> dict:
    """What must not depend on whether the campaign was killed: programs, statuses, stages,
    fitness, confirmations, the winner, the evaluations charged."""
    with archive.open(directory) as store:
        rows = [(p.id, p.code, p.status, p.proposer, p.stage, None if p.fitness is None else round(p.fitness, 9),
                 None if p.confirmed_fitness is None else round(p.confirmed_fitness, 9))
                for p in store.programs(sort="date")][::-1]
        camp = store.campaign()
        return {"programs": rows, "best": camp.best_program_id, "charged": camp.spend.get("evaluations"),
                "status": camp.status}


def copy_campaign(source: Path, target: Path) -> Path:
    target.mkdir()
    (target / "config.toml").write_text((source / "config.toml").read_text())
    src, dst = sqlite3.connect(source / "archive.db"), sqlite3.connect(target / "archive.db")
    src.backup(dst)
    src.close()
    dst.close()
    return target


CONFIRM_KEYS = ("confirmed_fitness", "confirmed_spread", "confirm_seeds", "validation_scores", "announced",
                "long_horizon_fitness", "long_horizon_spread", "long_horizon_scale", "short_horizon",
                "validation_failure")


def roll_back(directory: Path, keep_through: int, unconfirm: int | None = None, pending: tuple[int, ...] = (),
              charged: int = 0) -> None:
    """The archive as a kill would leave it: programs after ``keep_through`` never written,
    ``unconfirm`` evaluated but not yet confirmed, ``pending`` archived but not evaluated."""
    conn = sqlite3.connect(directory / "archive.db")
    with conn:
        conn.execute("UPDATE campaigns SET best_program_id = NULL")
        for table in ("llm_calls", "failures", "evaluations"):
            conn.execute(f"DELETE FROM {table} WHERE program_id > ?", (keep_through,))
        conn.execute("DELETE FROM programs WHERE id > ?", (keep_through,))
        if unconfirm is not None:
            meta = json.loads(conn.execute("SELECT meta FROM programs WHERE id = ?", (unconfirm,)).fetchone()[0])
            meta = {k: v for k, v in meta.items() if k not in CONFIRM_KEYS}
            conn.execute("UPDATE programs SET stage = 'full', meta = ? WHERE id = ?", (json.dumps(meta), unconfirm))
            conn.execute("DELETE FROM evaluations WHERE program_id = ? AND suite NOT IN ('search')", (unconfirm,))
        for pid in pending:
            conn.execute("UPDATE programs SET status = 'pending', stage = NULL, fitness = NULL, fitness_spread = NULL, "
                         "scores = NULL, fingerprint = NULL, fingerprint_size = NULL, fingerprint_l1 = NULL, "
                         "meta = json_remove(meta, '$.confirmed_fitness') WHERE id = ?", (pid,))
            conn.execute("DELETE FROM evaluations WHERE program_id = ?", (pid,))
            conn.execute("DELETE FROM failures WHERE program_id = ?", (pid,))
        spend = json.loads(conn.execute("SELECT spend FROM campaigns").fetchone()[0])
        conn.execute("UPDATE campaigns SET status = 'running', spend = ?",
                     (json.dumps({**spend, "evaluations": charged}),))
    conn.close()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:  # the module's run cache, as the autouse fixture sets it
        patch.setenv("DISCOVER_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "run-cache"))
        config = load_config(overrides=[SMALL, {"output_dir": str(tmp_path_factory.mktemp("whole"))}, RESUME])
        campaign, _ = run(config)
    return campaign.directory, snapshot(campaign.directory)


def resume(directory: Path) -> dict:
    run(load_config(directory / "config.toml"), directory, resume=True)
    return snapshot(directory)


def test_a_kill_before_a_confirmation_is_confirmed_on_resume(uninterrupted, tmp_path):
    whole, expected = uninterrupted
    with archive.open(whole) as store:
        confirmed = [p for p in store.programs(sort="date") if p.confirmed_fitness is not None and p.proposer != "reference"]
        assert confirmed, "this seed confirms no candidate; pick another"
        target = max(confirmed, key=lambda p: p.id)
        charged = sum(1 for p in store.programs() if p.proposer != "reference" and p.id <= target.id
                      and p.status in ("evaluated", "failed") and p.meta.get("proposal_index") is not None
                      and all(f.stage not in ("proposal", "probe") for f in store.failures(p.id)))
    directory = copy_campaign(whole, tmp_path / "killed")
    roll_back(directory, keep_through=target.id, unconfirm=target.id, charged=charged)
    assert resume(directory) == expected


def test_a_kill_during_reference_seeding_charges_no_budget(uninterrupted, tmp_path):
    whole, expected = uninterrupted
    with archive.open(whole) as store:
        references = [p.id for p in store.programs(sort="date") if p.proposer == "reference"][::-1]
    assert len(references) == 2
    directory = copy_campaign(whole, tmp_path / "killed")
    roll_back(directory, keep_through=references[-1], pending=(references[-1],), charged=0)
    assert resume(directory) == expected


# --- 8. status that tells the truth ----------------------------------------------------------


def dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid  # exited and reaped: nothing runs under this id now (reuse within a test is rare)


def test_a_killed_campaign_is_shown_stopped_not_running(tmp_path, monkeypatch, capsys):
    import os
    import socket
    from datetime import datetime, timedelta, timezone

    from archive.store import effective_status

    root = tmp_path / "campaigns"
    directory = root / "killed-1"
    with archive.open(directory, create=True) as store:
        cid = store.create_campaign("killed", {}, seed=0)
        store.set_campaign_runner(cid, pid=os.getpid())
        assert effective_status(store.campaign()) == "running"  # this process is alive
        store.set_campaign_runner(cid, pid=dead_pid())
        assert store.campaign().host == socket.gethostname()
        assert effective_status(store.campaign()) == "stopped (killed)"
        # Another machine's campaign: its heartbeat says whether it still runs.
        stale = (datetime.now(timezone.utc) - timedelta(minutes=30)).isoformat(timespec="milliseconds")
        conn = store._conn
        conn.execute("UPDATE campaigns SET host = 'elsewhere', heartbeat_at = ?", (stale,))
        assert effective_status(store.campaign()) == "stopped (killed)"
        store.heartbeat(cid)
        assert effective_status(store.campaign()) == "running"
        conn.execute("UPDATE campaigns SET host = ?, pid = ?", (socket.gethostname(), dead_pid()))
    code, out, err = run_main(["campaigns", str(root), "--json"], monkeypatch, capsys)
    row = json.loads(out)[0]
    assert row["status"] == "stopped (killed)" and row["recorded_status"] == "running"


def test_ctrl_c_exits_130_and_says_interrupted(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    out_dir = tmp_path / "c"
    # A campaign that cannot end by itself before the signal, however slow the machine: a large
    # budget and no "stuck" stop (on this tiny workload many mutants behave alike: duplicates).
    argv = [str(Path(sys.executable).parent / "discover"), "run", "--max-evaluations", "5000", "--workers", "1",
            "--set", "search.max_stalled_proposals=100000",
            "--output-dir", str(out_dir), "--set", 'evaluation.tasks=["noisy_quadratic"]',
            "--set", "evaluation.steps_scale=0.2", "--set", "evaluation.lr_grid=[0.001, 0.01, 0.1]",
            "--set", 'search.seed_programs=["adamw"]', "--set", "evaluation.test_tier=false"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # Ctrl-C as a terminal delivers it: a pytest started in the background (`pytest &`) ignores
    # SIGINT, and a child would inherit that (Python keeps an inherited SIG_IGN).
    proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            dbs = list(out_dir.glob("*/archive.db"))
            if dbs:
                conn = sqlite3.connect(f"file:{dbs[0]}?mode=ro", uri=True)
                try:  # interrupt as soon as there is work in flight
                    done = conn.execute("SELECT count(*) FROM programs").fetchone()[0]
                except sqlite3.Error:
                    done = 0
                finally:
                    conn.close()
                if done >= 1:
                    break
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = (out + err).decode()
    assert proc.returncode == 130, text[-2000:]
    assert "interrupted" in text.lower() and "Campaign finished" not in text
    with archive.open(dbs[0].parent) as store:
        assert store.campaign().status == "stopped"


# --- 7. machine-readable failures --------------------------------------------------------------


@pytest.mark.parametrize("body, reason, line", [
    ("    return grad.__class__, {}\n", "forbidden_construct", 5),
    ("    return grad +\n", "invalid_code", 5),
])
def test_eval_json_on_a_rejected_program_prints_the_failure(body, reason, line, tmp_path, monkeypatch, capsys):
    bad = tmp_path / "bad.py"
    bad.write_text('HPARAMS = {"lr": 0.1}\ndef init(param):\n    return {}\n'
                   "def update(grad, param, state, step, hp):\n" + body)
    code, out, err = run_main(["eval", str(bad), "--json"], monkeypatch, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    failure = json.loads(out)["failure"]
    assert failure["reason"] == reason and failure["line"] == line and failure["message"]


# --- 6. slow hostile code ----------------------------------------------------------------------

SLOW_POWER = '''HPARAMS = {"lr": 1e-3}
N = 100000000

def init(param):
    return {}

def update(grad, param, state, step, hp):
    big = %s
    return -hp.lr * grad, {}
'''


@pytest.mark.parametrize("expression", ["7 ** (10**8)", "(2 ** 20) ** (2 ** 20)", "3 ** N", "-(5 ** 99999 * 5 ** 99999)"])
def test_constant_big_integer_powers_are_rejected_statically(expression):
    from sandbox.contract import CandidateError, validate

    with pytest.raises(CandidateError) as info:
        validate(SLOW_POWER % expression)
    assert info.value.reason == "forbidden_construct" and info.value.line == 8 and "too large" in str(info.value)


@pytest.mark.parametrize("expression", ["2 ** 10", "10 ** -8", "step ** 2", "(-1) ** (10**12)", "1.5 ** 40"])
def test_small_or_non_constant_powers_still_pass(expression):
    from sandbox.contract import validate

    validate(SLOW_POWER % expression)


def test_a_slow_candidate_is_stopped_at_a_multiple_of_adamws_time():
    import re

    from sandbox.jobbound import TimeBoundExecutor
    from sandbox.executor import LocalExecutor
    from sandbox.references import reference_source

    slow = (REPO / "tests" / "hostile" / "nested_loops_bigint.py").read_text()  # passes validation
    payload = {"task": "noisy_quadratic", "configs": [[1e-3, 0]], "steps": 20, "device": "cpu"}
    with TimeBoundExecutor(LocalExecutor(size=1), factor=10.0, floor=1.0) as executor:
        ok = executor.submit("evaluate", {**payload, "source": reference_source("sgd_momentum")}, 120).result()
        assert ok.ok, ok.message  # an ordinary program runs within the bound
        limit = executor.limit(payload, 120)
        per_run = executor.seconds_per_run(payload, 120)
        assert limit == pytest.approx(max(1.0, 10 * per_run)) and limit < 120
        result = executor.submit("evaluate", {**payload, "source": slow}, 120).result()
    assert result.reason == "timeout"
    stated = float(re.search(r"past its ([\d.e+-]+) s", result.message).group(1))
    assert stated == pytest.approx(limit, rel=1e-3)  # the bound, not the 120 s the caller allowed


# --- 9. smaller ------------------------------------------------------------------------------


def test_non_finite_numbers_are_stored_as_standard_json(tmp_path):
    def strict(text):
        return json.loads(text, parse_constant=lambda name: pytest.fail(f"non-standard JSON constant {name}"))

    with archive.open(tmp_path, create=True) as store:
        pid = store.add_program(GOOD, scores={"t": {"final_loss": float("inf")}})
        store.add_evaluation(pid, suite="search", task="t", seed=0, role="measure",
                             metrics={"final_loss": float("inf"), "test_metric": float("nan"), "status": "diverged"},
                             curve=[1.0, float("inf")])
        assert store.evaluations(pid)[0].metrics["final_loss"] is None
    conn = sqlite3.connect(tmp_path / "archive.db")
    metrics, curve = conn.execute("SELECT metrics, curve FROM evaluations").fetchone()
    scores = conn.execute("SELECT scores FROM programs").fetchone()[0]
    conn.close()
    assert strict(metrics) == {"final_loss": None, "test_metric": None, "status": "diverged"}
    assert strict(curve) == [1.0, None] and strict(scores) == {"t": {"final_loss": None}}


def test_run_config_accepts_a_campaign_directory_and_names_a_plain_one(tmp_path, monkeypatch, capsys):
    from discover.config import load_config as load

    campaign = tmp_path / "campaign-1"
    campaign.mkdir()
    (campaign / "config.toml").write_text('name = "again"\nseed = 7\n')
    assert load(campaign).seed == 7  # `discover run --config campaigns/<name>` reruns it
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, err = run_main(["run", "--config", str(empty)], monkeypatch, capsys)
    assert code == 2 and "is a directory" in err and "does not exist" not in err


def test_a_hyperparameter_named_clip_is_allowed():
    from sandbox.contract import load_program
    from sandbox.jobs import evaluate_job

    source = GOOD.replace('"weight_decay": 0.0}', '"weight_decay": 0.0, "clip": 1.0}').replace(
        "return -hp.lr * tanh(m / (rms(m) + 1e-8))", "return -hp.lr * clamp(m / (rms(m) + 1e-8), -hp.clip, hp.clip)")
    assert "hp.clip" in source
    assert load_program(source).hparams["clip"] == 1.0
    for batched in (True, False):
        runs = evaluate_job({"source": source, "task": "noisy_quadratic", "configs": [[1e-2, 0]], "steps": 10,
                             "batched": batched})["runs"]
        assert runs[0]["status"] == "ok"


PIPELINED = {**RESUME, "search": {"pipeline": True}}
KILLED_WRITER = """
import json, sys
from discover.campaign import Campaign
from discover.config import load_config
from tests.test_campaign import SMALL
Campaign.create(load_config(overrides=[SMALL, {"output_dir": sys.argv[1]}, json.loads(sys.argv[2])])).run()
"""


@pytest.mark.parametrize("kill_after", [3, 5])
def test_a_pipelined_campaign_killed_mid_batch_resumes_to_the_same_archive(kill_after, tmp_path, tmp_path_factory):
    import os
    import signal
    import subprocess
    import sys
    import time

    whole = run(load_config(overrides=[SMALL, {"output_dir": str(tmp_path / "whole")}, PIPELINED]))[0].directory
    expected = snapshot(whole)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(tmp_path / "killed"), json.dumps(PIPELINED)],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    directory, deadline = None, time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            dbs = list((tmp_path / "killed").glob("*/archive.db"))
            if dbs:
                conn = sqlite3.connect(f"file:{dbs[0]}?mode=ro", uri=True)
                try:
                    count = conn.execute("SELECT count(*) FROM programs").fetchone()[0]
                except sqlite3.Error:
                    count = 0
                finally:
                    conn.close()
                if count >= kill_after:  # references done, a batch archived, the next one built ahead
                    directory = dbs[0].parent
                    break
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert directory is not None, proc.stderr.read().decode()[-2000:]
    got = resume(directory)
    assert got == expected


# --- 10. slow local servers and budgets (issue 19 items 5 and 6) -------------------------------

CONTEXT_400 = ("This model's maximum context length is 2048 tokens. However, you requested 4100 tokens "
               "(3076 in the messages, 1024 in the completion). Please reduce the length of the messages or completion.")


def test_a_prompt_too_long_for_the_context_stops_the_campaign_at_once_with_exit_2(tmp_path, fake_llm_server,
                                                                                  monkeypatch, capsys):
    from discover.config import to_toml
    from tests.fake_openai import Status

    fake_llm_server.script([Reply("ready", 3, 1)])  # the preflight's tiny prompt fits
    fake_llm_server.responder = lambda request: Status(400, message=CONTEXT_400)
    config = llm_config(tmp_path, fake_llm_server, search={"search": {"proposers": {"full": 1}}},
                        budget={"budget": {"max_evaluations": 20}})
    (tmp_path / "campaign.toml").write_text(to_toml(config))
    code, out, err = run_main(["run", "--config", str(tmp_path / "campaign.toml")], monkeypatch, capsys)
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err
    assert "3,076 tokens" in lines[0] and "context of 2,048 tokens" in lines[0] and "--resume" in lines[0]
    [directory] = [p for p in tmp_path.iterdir() if p.is_dir() and not p.is_symlink()]
    with archive.open(directory) as store:
        assert store.campaign().status == "stopped"
        assert {p.proposer for p in store.programs()} == {"reference"}  # no `crashed` programs
        errors = [c for c in store.llm_calls() if c.outcome == "error"]
        assert errors and all("context" in c.response for c in errors)
    assert len(fake_llm_server.requests) - 1 <= 2  # one batch, not 60 failures


def test_max_seconds_cancels_requests_in_flight_and_archives_them_as_cancelled(tmp_path, fake_llm_server):
    from tests.fake_openai import SlowStream

    fake_llm_server.script([Reply("ready", 3, 1)])
    # A slow local model: 2 s to the end of a 100 s answer whatever the client's timeout allows.
    fake_llm_server.responder = lambda request: SlowStream("x" * 400, pieces=200, seconds=0.5)
    # Seeding takes as long as the machine's load makes it: a first session seeds and stops at a
    # token cap (the preflight used it up); the resumed one has 8 s of time budget left.
    config = llm_config(tmp_path, fake_llm_server, search={"search": {"proposers": {"full": 1}}},
                        llm={"llm": {"timeout": 30, "max_attempts": 3}}, budget={"budget": {"max_tokens": 1}})
    campaign, first = run(config)
    assert first.stop_reason.startswith("token budget") and len(fake_llm_server.requests) == 1
    limit = round(first.spend["seconds"]) + 8.0
    resumed = load_config(campaign.directory / "config.toml",
                          overrides=[{"budget": {"max_tokens": None, "max_seconds": limit, "max_evaluations": 50}}])
    events = []
    campaign = Campaign(resumed, campaign.directory, resume=True)
    campaign.on_event = events.append
    try:
        summary = campaign.run()
    finally:
        campaign.close()
    assert summary.stop_reason.startswith(f"time budget of {limit:g} s reached")
    # Honoured within a few seconds (the grace is 1 s), not after the 100 s answer or a timeout.
    assert summary.spend["seconds"] < limit + 5
    with archive.open(campaign.directory) as store:
        assert store.campaign().status == "finished"
        assert {p.proposer for p in store.programs()} == {"reference"}  # nothing failed, nothing charged
        cancelled = [c for c in store.llm_calls() if c.outcome == "cancelled"]
        in_flight = [c for c in cancelled if not c.response.startswith("not sent")]
        assert in_flight, "no request was in flight at the deadline (did seeding outlast the budget?)"
        assert all(c.tokens_in > 0 and c.tokens_out >= 1 and "xx" in c.response for c in in_flight)
        assert all(c.program_id is None for c in cancelled)
        assert summary.spend["tokens_out"] == 1 + sum(c.tokens_out for c in in_flight)  # preflight + streamed
    assert summary.counts["failed"] == 0 and summary.spend["evaluations"] == 0
    phases = [(e.data["id"], e.reason) for e in events if e.kind == "llm_request"]
    assert ("start" in {p for _, p in phases}) and ("cancelled" in {p for _, p in phases})
    assert {i for i, p in phases if p == "start"} == {i for i, p in phases if p != "start"}  # every start ends
    assert any(e.kind == "cancelled" for e in events)
    assert fake_llm_server.max_in_flight == 1  # a local server gets one request at a time
    assert all(r["stream"] and r["max_tokens"] == 1024 for r in fake_llm_server.requests[1:])


def test_a_token_budget_cuts_proposals_as_cancelled_not_crashed(tmp_path, fake_llm_server):
    fake_llm_server.script([Reply("ready", 3, 1)])
    from sandbox.references import reference_source

    # Copies of a seed program: archived as duplicates, nothing to evaluate (seconds, not minutes).
    fake_llm_server.responder = lambda request: Reply(f"```python\n{reference_source('adamw')}```", 400, 100)
    config = llm_config(tmp_path, fake_llm_server, search={"search": {"proposers": {"full": 1}}},
                        budget={"budget": {"max_tokens": 1000, "max_evaluations": 50}})
    campaign, summary = run(config)
    assert summary.stop_reason.startswith("token budget of 1,000 reached")
    with archive.open(campaign.directory) as store:
        assert not store.programs(status="failed")
        cancelled = [c for c in store.llm_calls() if c.outcome == "cancelled"]
        assert cancelled and all(c.response.startswith("not sent: token budget") and c.tokens_in == 0
                                 and c.program_id is None for c in cancelled)


@pytest.mark.parametrize("props, setting, compact", [
    ({"default_generation_settings": {"n_ctx": 2048}}, "auto", True),
    (None, "auto", False),  # the server does not say (llama-cpp-python): full prompts
    ({"default_generation_settings": {"n_ctx": 32768}}, "auto", False),
    (None, "on", True),
])
def test_compact_prompts_for_a_small_context(props, setting, compact, tmp_path, fake_llm_server):
    from discover.proposers import compact_system_prompt

    fake_llm_server.props = props
    fake_llm_server.script([Reply("ready", 3, 1)])
    from discover.errors import UserError
    from tests.fake_openai import Status

    # The first proposal's prompt is all this needs: a context error then stops the campaign.
    fake_llm_server.responder = lambda request: Status(400, message=CONTEXT_400)
    config = llm_config(tmp_path, fake_llm_server, search={"search": {"proposers": {"full": 1}}},
                        llm={"llm": {"compact_prompt": setting}})
    with pytest.raises(UserError, match="does not fit the model's context"):
        run(config)
    [directory] = [p for p in tmp_path.iterdir() if p.is_dir() and not p.is_symlink()]
    recorded = load_config(directory / "config.toml").llm.compact_prompt
    assert recorded == ("on" if compact else "off")  # a resumed or replayed campaign sends the same prompts
    system = fake_llm_server.requests[1]["messages"][0]["content"]
    assert (system == compact_system_prompt()) is compact
    assert len(system) < 1600 if compact else len(system) > 4000
