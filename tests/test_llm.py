"""The LLM client against a local OpenAI-compatible server, with the real ``openai`` package."""

from __future__ import annotations

import json
import threading
import time
import warnings

import pytest

from discover.budget import Budget, BudgetExhausted, Spend
from discover.llm import Completion, LLMClient, LLMError, LLMSettings, ReplayMiss, ResponseCache
from tests.fake_openai import (  # noqa: F401 (fake_llm_server is a fixture)
    Delay,
    Malformed,
    Reply,
    Status,
    TruncatedStream,
    fake_llm_server,
)

MESSAGES = [{"role": "system", "content": "You write optimizers."}, {"role": "user", "content": "Propose one."}]


def make_client(server, spend: Spend | None = None, **overrides) -> LLMClient:
    settings = dict(
        base_url=server.base_url,
        models={"proposer": "fake-model"},
        api_key_env="FAKE_LLM_TEST_KEY",
        timeout=2.0,
        backoff_base=0.01,
        backoff_max=0.05,
        max_attempts=4,
        prices={"fake-model": (2.0, 8.0), "critic-model": (1.0, 1.0)},
        cache_mode="off",
    )
    settings.update(overrides)
    return LLMClient(LLMSettings(**settings), spend=spend)


def test_success_counts_tokens_and_dollars_exactly(fake_llm_server):
    fake_llm_server.script([Reply("HPARAMS = {}", prompt_tokens=1000, completion_tokens=500)])
    spend = Spend()
    answer = make_client(fake_llm_server, spend).complete(MESSAGES, temperature=0.3, max_tokens=256, seed=7)
    assert answer.text == "HPARAMS = {}"
    assert (answer.prompt_tokens, answer.completion_tokens) == (1000, 500)
    assert answer.cost_usd == pytest.approx((1000 * 2.0 + 500 * 8.0) / 1e6)
    assert answer.model == "fake-model" and answer.attempts == 1 and not answer.cached
    assert answer.finish_reason == "stop" and answer.seconds > 0
    assert (spend.tokens_in, spend.tokens_out, spend.llm_calls) == (1000, 500, 1)
    assert spend.usd == pytest.approx(0.006)
    [sent] = fake_llm_server.requests
    assert sent["model"] == "fake-model" and sent["messages"] == MESSAGES
    assert (sent["temperature"], sent["max_tokens"], sent["seed"]) == (0.3, 256, 7)
    assert not sent.get("stream")


def test_each_role_uses_its_model_and_a_missing_role_falls_back(fake_llm_server):
    fake_llm_server.script(["a", "b"])
    client = make_client(fake_llm_server, models={"proposer": "fake-model", "critic": "critic-model"})
    client.complete(MESSAGES, role="critic")
    assert fake_llm_server.requests[-1]["model"] == "critic-model"
    assert make_client(fake_llm_server).model_for("critic") == "fake-model"
    with pytest.raises(LLMError, match="unknown role 'judge'"):
        client.complete(MESSAGES, role="judge")


def test_rate_limit_waits_at_least_retry_after(fake_llm_server):
    fake_llm_server.script([Status(429, retry_after=0.3), Reply("ok")])
    started = time.monotonic()
    answer = make_client(fake_llm_server).complete(MESSAGES)
    assert time.monotonic() - started >= 0.3
    assert answer.text == "ok" and answer.attempts == 2
    assert len(fake_llm_server.requests) == 2


def test_server_error_is_retried(fake_llm_server):
    fake_llm_server.script([Status(500), Status(502), Reply("ok")])
    answer = make_client(fake_llm_server).complete(MESSAGES)
    assert answer.text == "ok" and answer.attempts == 3


def test_timeout_is_retried(fake_llm_server):
    fake_llm_server.script([Delay(2.0), Reply("fast")])
    answer = make_client(fake_llm_server, timeout=0.3).complete(MESSAGES)
    assert answer.text == "fast" and answer.attempts == 2


def test_persistent_failure_raises_after_bounded_attempts(fake_llm_server):
    fake_llm_server.script([Status(503, message="overloaded")] * 3)
    with pytest.raises(LLMError, match=r"after 3 attempt\(s\).*HTTP 503.*overloaded") as info:
        make_client(fake_llm_server, max_attempts=3).complete(MESSAGES)
    assert info.value.cause is not None
    assert len(fake_llm_server.requests) == 3


def test_rejected_key_fails_at_once_naming_the_variable(fake_llm_server):
    fake_llm_server.script([Status(401, message="bad key"), Reply("never")])
    with pytest.raises(LLMError, match="HTTP 401.*FAKE_LLM_TEST_KEY"):
        make_client(fake_llm_server).complete(MESSAGES)
    assert len(fake_llm_server.requests) == 1


def test_unknown_model_fails_at_once_with_a_hint(fake_llm_server):
    fake_llm_server.script([Status(404, message="model not found")])
    with pytest.raises(LLMError, match="model 'fake-model'.*check the model name"):
        make_client(fake_llm_server).complete(MESSAGES)


def test_malformed_body_is_retried_then_reported(fake_llm_server):
    fake_llm_server.script([Malformed(), Reply("ok")])
    assert make_client(fake_llm_server).complete(MESSAGES).attempts == 2
    fake_llm_server.script([Malformed()] * 2)
    with pytest.raises(LLMError, match="not a chat completion"):
        make_client(fake_llm_server, max_attempts=2).complete(MESSAGES)


def test_missing_usage_is_estimated_so_token_caps_still_bite(fake_llm_server):
    fake_llm_server.script([Reply("x" * 40, include_usage=False)])
    answer = make_client(fake_llm_server).complete(MESSAGES)
    assert answer.completion_tokens == 10
    assert answer.prompt_tokens == -(-len("You write optimizers.\nPropose one.") // 4)


def test_streaming_counts_tokens_from_the_usage_chunk(fake_llm_server):
    fake_llm_server.script([Reply("def update(): pass", prompt_tokens=12, completion_tokens=6)])
    answer = make_client(fake_llm_server, stream=True).complete(MESSAGES)
    assert answer.text == "def update(): pass"
    assert (answer.prompt_tokens, answer.completion_tokens, answer.finish_reason) == (12, 6, "stop")
    sent = fake_llm_server.requests[0]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("clean_eof", [False, True], ids=["connection-cut", "stream-ends-early"])
def test_truncated_stream_is_retried(fake_llm_server, clean_eof):
    fake_llm_server.script([TruncatedStream("HPARAMS = {", clean_eof=clean_eof), Reply("whole answer")])
    answer = make_client(fake_llm_server, stream=True).complete(MESSAGES)
    assert answer.text == "whole answer" and answer.attempts == 2


def test_persistently_truncated_stream_raises_a_clear_error(fake_llm_server):
    fake_llm_server.script([TruncatedStream("HPARAMS", clean_eof=True)] * 2)
    with pytest.raises(LLMError, match="stream ended before the answer was complete"):
        make_client(fake_llm_server, stream=True, max_attempts=2).complete(MESSAGES)


def test_truncated_plain_body_is_retried(fake_llm_server):
    fake_llm_server.script([TruncatedStream("cut"), Reply("ok")])
    assert make_client(fake_llm_server).complete(MESSAGES).attempts == 2


def test_cache_serves_repeats_for_free_and_replays_without_a_server(fake_llm_server, tmp_path):
    cache_dir = tmp_path / "llm-cache"
    fake_llm_server.script([Reply("first", 100, 50), Reply("other seed", 100, 50)])
    spend = Spend()
    client = make_client(fake_llm_server, spend, cache_dir=cache_dir, cache_mode="read_write")
    miss = client.complete(MESSAGES, seed=1)
    hit = client.complete(MESSAGES, seed=1)
    assert (miss.cached, hit.cached) == (False, True)
    assert hit.text == "first" and hit.cost_usd == 0 and hit.attempts == 0
    assert (hit.prompt_tokens, hit.completion_tokens) == (100, 50)
    assert client.complete(MESSAGES, seed=2).text == "other seed"  # a different request
    assert len(fake_llm_server.requests) == 2
    assert (spend.llm_calls, spend.cached_calls, spend.tokens) == (2, 1, 300)
    entries = sorted(cache_dir.glob("*.json"))
    assert len(entries) == 2 and not list(cache_dir.glob(".tmp-*"))
    stored = json.loads(entries[0].read_text())
    assert stored["key"] == entries[0].stem and "api_key" not in json.dumps(stored)

    replay = make_client(fake_llm_server, cache_dir=cache_dir, cache_mode="replay", base_url="http://127.0.0.1:9/v1")
    assert replay.complete(MESSAGES, seed=1).text == "first"
    with pytest.raises(ReplayMiss, match="replay mode: no cached answer.*'fake-model'.*Propose one"):
        replay.complete(MESSAGES, seed=3)
    assert len(fake_llm_server.requests) == 2


def test_cache_key_ignores_the_endpoint_but_not_the_sampling(tmp_path):
    request = {"model": "m", "messages": MESSAGES, "temperature": 0.7, "max_tokens": 100, "seed": None, "n": 1}
    key = ResponseCache.key(request)
    assert key == ResponseCache.key({**request, "base_url": "http://elsewhere/v1"})
    assert key != ResponseCache.key({**request, "temperature": 0.8})
    assert key != ResponseCache.key({**request, "seed": 1})


def test_exhausted_budget_stops_before_sending(fake_llm_server):
    fake_llm_server.script([Reply("a", 10, 5), Reply("never sent")])
    spend = Spend(Budget(max_tokens=15))
    client = make_client(fake_llm_server, spend)
    client.complete(MESSAGES)
    with pytest.raises(BudgetExhausted, match="token budget of 15 reached"):
        client.complete(MESSAGES)
    assert len(fake_llm_server.requests) == 1


def test_concurrency_is_bounded(fake_llm_server):
    fake_llm_server.responder = lambda request: Delay(0.1, Reply("slow"))
    client = make_client(fake_llm_server, max_concurrency=2)
    answers: list[Completion] = []
    threads = [threading.Thread(target=lambda: answers.append(client.complete(MESSAGES))) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 6
    assert fake_llm_server.max_in_flight == 2


def test_unpriced_model_costs_nothing_and_warns_once(fake_llm_server):
    fake_llm_server.script(["a", "b"])
    client = make_client(fake_llm_server, prices={})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert client.complete(MESSAGES).cost_usd == 0.0
        client.complete(MESSAGES)
    assert [str(w.message) for w in caught if "no price" in str(w.message)] == [
        "no price for model 'fake-model': its calls count as $0 (add it to the LLM price table to enforce a "
        "dollar budget; token and time budgets still apply)"]


def test_local_server_needs_no_key_but_openai_does(fake_llm_server, monkeypatch):
    monkeypatch.delenv("FAKE_LLM_TEST_KEY", raising=False)
    fake_llm_server.script(["ok"])
    assert make_client(fake_llm_server).complete(MESSAGES).text == "ok"
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(LLMError, match="set the environment variable FAKE_LLM_TEST_KEY"):
        make_client(fake_llm_server, base_url=None).complete(MESSAGES)


def test_bad_messages_and_settings_are_rejected():
    with pytest.raises(LLMError, match="message 0 must be"):
        LLMClient(LLMSettings(base_url="http://127.0.0.1:9/v1", cache_mode="off")).complete([{"role": "user"}])
    with pytest.raises(ValueError, match="cache_mode 'replay' needs a cache_dir"):
        LLMSettings(cache_mode="replay")
    with pytest.raises(ValueError, match="cache_mode must be one of"):
        LLMSettings(cache_mode="sometimes")


# --- the spend ledger ----------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_spend_reasons_remaining_and_cached_calls():
    spend = Spend(Budget(max_usd=0.50, max_evaluations=3))
    spend.charge_llm(Completion("x", 100, 10, 0.51, "m"))
    spend.charge_llm(Completion("x", 100, 10, 0.0, "m", cached=True))
    assert spend.exhausted() == "dollar budget of $0.50 reached ($0.51 spent)"
    assert (spend.tokens, spend.llm_calls, spend.cached_calls) == (110, 1, 1)
    spend.charge_evaluations(2)
    assert spend.remaining() == {"tokens": None, "usd": 0.0, "evaluations": 1, "seconds": None}
    with pytest.raises(BudgetExhausted, match=r"\$0\.50"):
        spend.check()
    only_evals = Spend(Budget(max_evaluations=2))
    only_evals.charge_evaluations(2)
    assert only_evals.exhausted() == "evaluation budget of 2 reached (2 run)"


def test_a_free_model_is_stopped_by_time_not_dollars():
    clock = FakeClock()
    spend = Spend(Budget(max_usd=0.01, max_seconds=60), clock=clock)
    spend.charge_llm(Completion("x", 10_000, 10_000, 0.0, "local-model"))
    assert spend.exhausted() is None
    clock.now += 61
    assert spend.exhausted() == "time budget of 60 s reached (61 s elapsed)"


def test_spend_round_trips_and_resumes_the_clock():
    clock = FakeClock()
    spend = Spend(Budget(max_seconds=100), clock=clock)
    spend.charge_llm(Completion("x", 7, 3, 0.25, "m"))
    spend.charge_evaluations(4)
    clock.now += 40
    saved = json.loads(json.dumps(spend.to_dict()))
    clock.now += 1000  # the campaign was stopped for a while: that time does not count
    restored = Spend.from_dict(saved, Budget(max_seconds=100), clock=clock)
    assert restored.to_dict() == saved
    clock.now += 30
    assert restored.seconds == pytest.approx(70)
    assert restored.remaining()["seconds"] == pytest.approx(30)
    assert Budget.from_dict(Budget(max_tokens=5).to_dict()) == Budget(max_tokens=5)
