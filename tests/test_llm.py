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
        stream=False,  # the fake server is local: say what each test exercises, not the local defaults
        max_concurrency=4,
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


# --- local-speed robustness (issue 19 item 5) ------------------------------------------------


@pytest.mark.parametrize("url, local", [
    ("http://127.0.0.1:8080/v1", True), ("http://localhost:11434/v1", True), ("http://[::1]:8000/v1", True),
    ("http://192.168.1.20:8000/v1", True), ("http://10.0.0.5/v1", True), ("http://gpu-box.local:8000/v1", True),
    ("https://api.openai.com/v1", False), ("https://8.8.8.8/v1", False), (None, False)])
def test_local_endpoints_get_one_slot_short_answers_and_streaming(url, local):
    from discover.llm import is_local_endpoint

    settings = LLMSettings(base_url=url)
    assert is_local_endpoint(url) is local
    assert (settings.max_tokens, settings.max_concurrency, settings.stream) == ((1024, 1, True) if local else (2048, 4, False))
    chosen = LLMSettings(base_url=url, max_tokens=300, max_concurrency=3, stream=False)
    assert (chosen.max_tokens, chosen.max_concurrency, chosen.stream) == (300, 3, False)


def test_a_retry_after_a_timeout_is_not_the_same_request_and_the_timeout_is_counted(fake_llm_server):
    fake_llm_server.script([Delay(3.0, Reply("runaway")), Reply("ok", 40, 2)])
    spend = Spend()
    answer = make_client(fake_llm_server, spend, timeout=0.3).complete(MESSAGES, seed=7)
    first, second = fake_llm_server.requests
    assert first["seed"] == 7 and second["seed"] != 7  # a new sample, not the runaway one again
    assert {k: v for k, v in first.items() if k != "seed"} == {k: v for k, v in second.items() if k != "seed"}
    [lost] = answer.abandoned
    prompt_estimate = -(-len("You write optimizers.\nPropose one.") // 4)
    assert lost["reason"] == "timeout" and lost["estimated"]
    assert (lost["prompt_tokens"], lost["completion_tokens"]) == (prompt_estimate, 0)  # nothing streamed: unknown, 0
    assert answer.text == "ok" and answer.attempts == 2
    assert (spend.tokens_in, spend.tokens_out) == (40 + prompt_estimate, 2)


def test_a_stalled_stream_is_closed_and_what_streamed_is_counted(fake_llm_server):
    from tests.fake_openai import SlowStream

    fake_llm_server.script([SlowStream("abcd" * 4, pieces=4, seconds=0.0)])
    answer = make_client(fake_llm_server, stream=True, timeout=0.5).complete(MESSAGES, seed=1)
    assert answer.text == "abcd" * 4 and not answer.abandoned and answer.completion_tokens == 4
    # One piece, then a second of silence: past the 0.5 s allowed between chunks.
    fake_llm_server.script([SlowStream("x" * 40, pieces=20, seconds=1.0), Reply("done", 10, 1)])
    spend = Spend()
    answer = make_client(fake_llm_server, spend, stream=True, timeout=0.5).complete(MESSAGES, seed=1)
    [lost] = answer.abandoned
    assert lost["reason"] == "timeout" and lost["text"] == "xx" and lost["completion_tokens"] == 1
    assert answer.text == "done" and spend.tokens_out == 1 + 1


def test_a_request_in_flight_at_the_time_budget_is_cancelled_and_its_stream_closed(fake_llm_server):
    from discover.llm import DEADLINE_GRACE, RequestCancelled
    from tests.fake_openai import SlowStream

    events: list[dict] = []
    fake_llm_server.script([SlowStream("y" * 120, pieces=60, seconds=0.25)])  # a 15 s answer
    spend = Spend(Budget(max_seconds=1.0))
    client = make_client(fake_llm_server, spend, stream=True, timeout=30)
    client.on_request = events.append
    given_up = r"time budget of 1 s reached \(\d s elapsed\); a proposer request in flight was given up"
    with pytest.raises(RequestCancelled, match=given_up) as info:
        client.complete(MESSAGES, seed=3)
    [lost] = info.value.abandoned
    assert lost["reason"] == "cancelled" and lost["completion_tokens"] >= 1 and lost["text"].startswith("yy")
    assert lost["seconds"] < 1.0 + DEADLINE_GRACE + 2  # given up at the deadline, not after the 15 s answer
    assert spend.tokens_out == lost["completion_tokens"] and spend.tokens_in == lost["prompt_tokens"]
    assert [e["phase"] for e in events] == ["start", "cancelled"] and events[0]["id"] == events[1]["id"]
    assert events[0]["in_flight"] == 1 and events[1]["in_flight"] == 0 and client.in_flight == 0
    assert events[0]["timeout"] <= 1.0 + DEADLINE_GRACE
    for _ in range(40):  # the server notices the closed connection at its next write
        if fake_llm_server.disconnects:
            break
        time.sleep(0.1)
    assert fake_llm_server.disconnects == 1
    assert len(fake_llm_server.requests) == 1  # not retried past the deadline
    with pytest.raises(BudgetExhausted, match="time budget"):
        client.complete(MESSAGES, seed=4)


def test_a_plain_request_at_the_time_budget_is_cancelled_with_its_completion_unknown(fake_llm_server):
    from discover.llm import RequestCancelled

    fake_llm_server.script([Delay(20.0, Reply("late"))])
    spend = Spend(Budget(max_seconds=0.5))
    with pytest.raises(RequestCancelled) as info:
        make_client(fake_llm_server, spend, timeout=30).complete(MESSAGES)
    [lost] = info.value.abandoned
    assert lost["reason"] == "cancelled" and lost["completion_tokens"] == 0 and lost["prompt_tokens"] > 0


@pytest.mark.parametrize("message, extra, prompt, context", [
    ("This model's maximum context length is 2048 tokens. However, you requested 3100 tokens (2076 in the "
     "messages, 1024 in the completion). Please reduce the length of the messages or completion.", {}, 2076, 2048),
    ("This model's maximum context length is 4096 tokens. However, your request has 5000 input tokens.", {}, 5000, 4096),
    ("Requested tokens (3071) exceed context window of 2048", {}, 3071, 2048),
    ("the request exceeds the available context size, try increasing it", {"n_prompt_tokens": 2900, "n_ctx": 2048},
     2900, 2048),
    ("context_length_exceeded", {}, None, None),
], ids=["openai-vllm", "vllm-new", "llama-cpp-python", "llama-server", "no-figures"])
def test_a_context_length_rejection_says_prompt_size_against_context(message, extra, prompt, context, fake_llm_server):
    from discover.llm import ContextLengthError

    fake_llm_server.script([Status(400, message=message, extra=extra), Reply("never")])
    with pytest.raises(ContextLengthError) as info:
        make_client(fake_llm_server).complete(MESSAGES, max_tokens=1024)
    error = info.value
    assert len(fake_llm_server.requests) == 1  # not retried: no retry can make it fit
    assert (error.prompt_tokens, error.context) == (prompt or -(-len("You write optimizers.\nPropose one.") // 4), context)
    text = str(error)
    assert "does not fit the model's context" in text and "1,024 for the answer" in text
    assert "compact_prompt" in text and "\n" not in text
    if context:
        assert f"{prompt:,} tokens" in text and f"context of {context:,} tokens" in text
    else:
        assert "(estimated)" in text


def test_other_400s_are_not_context_errors(fake_llm_server):
    from discover.llm import ContextLengthError

    fake_llm_server.script([Status(400, message="Unrecognized request argument supplied: seed")])
    with pytest.raises(LLMError, match="HTTP 400") as info:
        make_client(fake_llm_server).complete(MESSAGES)
    assert not isinstance(info.value, ContextLengthError)


def test_one_slot_means_one_request_at_a_time(fake_llm_server):
    fake_llm_server.responder = lambda request: Delay(0.05, Reply("slow"))
    client = LLMClient(LLMSettings(base_url=fake_llm_server.base_url, models={"proposer": "m"}, cache_mode="off",
                                   prices={"m": (0.0, 0.0)}))
    assert client.settings.max_concurrency == 1
    threads = [threading.Thread(target=client.complete, args=(MESSAGES,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(fake_llm_server.requests) == 4 and fake_llm_server.max_in_flight == 1
    assert all(r["stream"] and r["max_tokens"] == 1024 for r in fake_llm_server.requests)


def test_server_context_is_read_where_servers_report_it(fake_llm_server):
    from discover.llm import server_context

    assert server_context(fake_llm_server.base_url) is None  # the fake server, like llama-cpp-python, does not say
    assert server_context(None) is None
    fake_llm_server.props = {"default_generation_settings": {"n_ctx": 2048}, "total_slots": 1}  # llama-server
    assert server_context(fake_llm_server.base_url) == 2048
    fake_llm_server.max_model_len = 32768  # vLLM
    assert server_context(fake_llm_server.base_url) == 32768
