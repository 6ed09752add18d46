"""The Ray executor: the same sandbox as the local pool, on a Ray cluster started inside the test.

Each test states one property: the sandbox's walls and failure reasons hold through Ray, results
stream back in any order, a lost actor's job is retried on another actor and ends ``crashed``
after bounded retries, a stalled actor cannot hang the caller, and a campaign on Ray archives
exactly what the local pool does for the same seed. Without ray installed, only the tests that
need no cluster run (the "pip install" error, GPU packing arithmetic, batch sizing).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import archive
from discover.campaign import Campaign, in_flight_for
from discover.config import load_config
from discover.errors import UserError
from sandbox.executor import ExecutorUnavailable, make_executor
from sandbox.ray_executor import cluster_slots, placement, sandbox_options
from sandbox.runcache import MemoryRunCache
from tests.test_campaign import SMALL, programs

try:
    import ray
except ImportError:  # the [ray] extra is optional; CI installs it
    ray = None

REPO = Path(__file__).resolve().parents[1]


def test_missing_ray_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if not installed
    with pytest.raises(ExecutorUnavailable, match=r"pip install -e '\.\[ray\]'"):
        make_executor("ray")
    config = load_config(overrides=[SMALL, {"output_dir": str(tmp_path), "evaluation": {"executor": "ray"}}])
    with pytest.raises(UserError, match=r"ray package, which is not installed: pip install"):
        Campaign.create(config)


def test_cli_without_ray_prints_the_install_command(tmp_path):
    code = ("import sys; sys.modules['ray'] = None; sys.argv[0] = 'discover'; "
            "from discover.cli import main; main()")
    done = subprocess.run([sys.executable, "-c", code, "run", "--executor", "ray", "--output-dir", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == "error: the ray executor needs the ray package, which is not installed: " \
                                  "pip install -e '.[ray]'"


def test_nothing_else_imports_ray():
    code = ("import sys, sandbox.executor, sandbox.evaluate, discover.campaign, discover.cli; "
            "assert 'ray' not in sys.modules, 'ray was imported'")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=120)


def test_in_flight_fills_a_large_executor_unless_pinned():
    tasks = {"evaluation": {"tasks": ["noisy_quadratic", "rosenbrock"]}}
    default = load_config(overrides=[tasks])
    assert in_flight_for(default, capacity=2) == default.search.in_flight == 2
    assert in_flight_for(default, capacity=64) == 32  # two tasks per program: 32 programs fill 64 slots
    pinned = load_config(overrides=[tasks, {"search": {"in_flight": 3}}])
    assert in_flight_for(pinned, capacity=64) == 3


def test_gpu_clusters_pack_four_evaluations_per_gpu():
    # Pure arithmetic on cluster resources: runs without ray or a GPU.
    eight_gpus = {"CPU": 64.0, "GPU": 8.0}
    assert placement("auto", None, eight_gpus) == ("cuda", 0.25)
    assert placement("auto", None, {"CPU": 64.0}) == ("cpu", 0.0)
    assert placement("cuda:3", 0.5, eight_gpus) == ("cuda", 0.5)  # Ray picks the GPU
    assert cluster_slots(eight_gpus, 1.0, 0.25) == 32
    assert cluster_slots({"CPU": 16.0, "GPU": 8.0}, 1.0, 0.25) == 16  # CPUs bound it
    assert cluster_slots(eight_gpus, 1.0, 0.0) == 64
    options = sandbox_options("cuda", 2.0, 0.25, {})
    assert options == {"device": "cuda", "num_threads": 2, "cuda_memory_fraction": 0.225}
    assert sandbox_options("cpu", 1.0, 0.0, {"num_threads": 4}) == {"device": "cpu", "num_threads": 4}
    with pytest.raises(ExecutorUnavailable, match="no GPU"):
        cluster_slots({"CPU": 8.0}, 1.0, 0.25)
    with pytest.raises(ExecutorUnavailable, match="cannot fit one evaluation"):
        cluster_slots({"CPU": 1.0}, 2.0, 0.0)
    with pytest.raises(ValueError, match="use device='cuda'"):
        placement("cpu", 0.5, eight_gpus)


@pytest.fixture(scope="module")
def ray_cluster():
    if ray is None:
        pytest.skip("ray is not installed: pip install -e '.[ray]'")
    # A secret in the environment the cluster starts from, as a user's shell would have it.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPENAI_API_KEY", "sk-must-not-leak")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    try:
        yield ray
    finally:
        ray.shutdown()


def selftest(executor, timeout=10.0, **payload):
    return executor.submit("selftest", payload, timeout=timeout).result(timeout=120)


def wait_for(condition, deadline=60.0):
    """Poll ``condition`` until it returns something true; return that."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {deadline} s")


def all_idle(executor, deadline=60.0) -> None:
    """Wait until every slot is ready and holds no job, so the next running job is ours (a slot
    still showing the previous test's job would otherwise be mistaken for it)."""
    wait_for(lambda: all(s["ready"] and s["job"] is None for s in executor.slot_states()), deadline)


def running_actor(executor, job="selftest", deadline=60.0, not_pid=None) -> int:
    """The pid of the actor that is running ``job`` now (waits until one is)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        for state in executor.slot_states():
            if state["job"] == job and state.get("actor_pid") not in (None, not_pid):
                return state["actor_pid"]
        time.sleep(0.05)
    raise AssertionError(f"no actor started {job!r} within {deadline} s: {executor.slot_states()}")


@pytest.fixture(scope="class")
def executor(ray_cluster):
    """One executor over the whole 2-CPU cluster for a class of tests (actors start slowly).
    ``max_retries=1`` and a short stall timeout keep the fault tests quick."""
    with make_executor("ray", max_retries=1, stall_timeout=3.0) as executor:
        yield executor


@pytest.mark.ray
class TestRayExecutor:
    """The executor's contract, on one shared executor."""

    def test_capacity_is_the_cluster_slots(self, executor):
        assert executor.capacity == 2  # ray.init(num_cpus=2), one CPU per evaluation

    def test_cuda_on_a_cluster_without_gpus_is_refused(self, ray_cluster):
        if ray_cluster.cluster_resources().get("GPU"):
            pytest.skip("this cluster has GPUs")
        with pytest.raises(ExecutorUnavailable, match="no GPU"):
            make_executor("ray", device="cuda")

    def test_sandbox_walls_and_failure_reasons_hold_through_ray(self, executor):
        assert selftest(executor, mode="echo", value=[1, "a"]).value == [1, "a"]
        visible = set(selftest(executor, mode="env").value["visible"])
        assert "OPENAI_API_KEY" not in visible and "PATH" in visible
        limits = selftest(executor, mode="limits").value
        assert limits["address_space"] == 4 * 1024**3 and limits["threads"] == 1
        invalid = executor.submit("validate", {"source": "import os"}, 10).result(timeout=60)
        assert (invalid.ok, invalid.reason) == (False, "forbidden_construct")
        started = time.monotonic()
        hung = selftest(executor, timeout=1.0, mode="sleep", seconds=60)
        assert hung.reason == "timeout" and time.monotonic() - started < 30
        restarts = executor.restarts
        exited = selftest(executor, mode="exit", code=7)
        assert exited.reason == "crashed" and "code 7" in exited.message
        assert executor.restarts == restarts  # the sandbox worker died, not the actor: nothing retried
        assert selftest(executor, mode="echo", value=2).value == 2

    def test_results_stream_back_in_any_order(self, executor):
        slow = executor.submit("selftest", {"mode": "sleep", "seconds": 3}, 20)
        fast = executor.submit("selftest", {"mode": "echo", "value": "fast"}, 20)
        assert fast.result(timeout=60).value == "fast"
        assert not slow.done()
        assert slow.result(timeout=60).ok

    def test_a_killed_actor_is_replaced_and_its_job_retried(self, executor):
        all_idle(executor)
        restarts = executor.restarts
        future = executor.submit("selftest", {"mode": "sleep", "seconds": 2}, 30)
        os.kill(running_actor(executor), signal.SIGKILL)
        result = future.result(timeout=120)
        assert result.ok and result.value == 2, result
        assert executor.restarts == restarts + 1

    def test_a_job_whose_actor_keeps_dying_ends_crashed_after_bounded_retries(self, executor):
        all_idle(executor)
        future = executor.submit("selftest", {"mode": "sleep", "seconds": 3}, 30)
        first = running_actor(executor)
        os.kill(first, signal.SIGKILL)
        os.kill(running_actor(executor, not_pid=first), signal.SIGKILL)  # the retry, on another actor
        result = future.result(timeout=120)
        assert (result.ok, result.reason) == (False, "crashed")
        assert "lost 2 time(s)" in result.message and "gave up after 1 retry" in result.message
        assert selftest(executor, mode="echo", value=3).value == 3  # the executor goes on

    def test_a_stalled_actor_cannot_hang_the_caller(self, executor):
        all_idle(executor)
        restarts = executor.restarts
        future = executor.submit("selftest", {"mode": "sleep", "seconds": 1}, 2)
        stalled = running_actor(executor)
        os.kill(stalled, signal.SIGSTOP)  # alive but silent: only the deadline can notice
        try:
            result = future.result(timeout=120)
        finally:
            try:
                os.kill(stalled, signal.SIGKILL)
            except ProcessLookupError:
                pass
        assert result.ok and result.value == 1, result  # retried on another actor after 2 + 3 s
        assert executor.restarts == restarts + 1


@pytest.mark.ray
def test_a_slot_waiting_for_resources_holds_no_job(ray_cluster):
    # Three slots on two CPUs: the third actor never starts, and no job waits for it.
    with make_executor("ray", size=3) as executor:
        wait_for(lambda: sum(state["ready"] for state in executor.slot_states()) == 2)
        started = time.monotonic()
        futures = [executor.submit("selftest", {"mode": "sleep", "seconds": 0.2}, 10) for _ in range(8)]
        assert all(f.result(timeout=120).ok for f in futures)
        assert time.monotonic() - started < 30  # about 1 s of work on two slots
        assert sorted(state["ready"] for state in executor.slot_states()) == [False, True, True]


@pytest.mark.ray
def test_a_cluster_without_room_fails_queued_jobs_instead_of_hanging(ray_cluster):
    @ray_cluster.remote(num_cpus=1)
    class Blocker:
        def ping(self) -> int:
            return os.getpid()

    with make_executor("ray", size=1, num_cpus=2, max_retries=1) as executor:  # the whole cluster
        executor.start_timeout = 4.0  # tolerate 4 s without any ready actor (after a normal start)
        os.kill(wait_for(lambda: executor.slot_states()[0].get("actor_pid")), signal.SIGKILL)
        wait_for(lambda: ray_cluster.available_resources().get("CPU", 0) >= 2)
        blocker = Blocker.remote()  # now a replacement actor (2 CPUs) cannot fit
        ray_cluster.get(blocker.ping.remote(), timeout=60)
        started = time.monotonic()
        with pytest.raises(ExecutorUnavailable, match="no Ray actor has been available"):
            executor.submit("selftest", {"mode": "echo", "value": 1}, 10).result(timeout=60)
        assert time.monotonic() - started < 30
        ray_cluster.kill(blocker)  # room again: the executor recovers by itself
        wait_for(lambda: executor.slot_states()[0]["ready"])
        assert selftest(executor, timeout=10, mode="echo", value=2).value == 2


@pytest.mark.ray
def test_campaign_on_ray_archives_what_the_local_pool_does(ray_cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("DISCOVER_CACHE_DIR", str(tmp_path / "unused-cache"))
    results = {}
    for kind in ("local", "ray"):
        config = load_config(overrides=[SMALL, {"output_dir": str(tmp_path / kind), "seed": 5,
                                                "evaluation": {"executor": kind}}])
        campaign = Campaign.create(config, cache=MemoryRunCache())  # every run really executes
        try:
            assert campaign.executor.capacity == 2
            if kind == "ray" and not ray_cluster.cluster_resources().get("GPU"):
                assert campaign.device == "cpu"  # device "auto" resolved by the cluster's resources
            summary = campaign.run()
        finally:
            campaign.close()
        assert summary.spend["evaluations"] == 4
        results[kind] = programs(campaign.directory)
        with archive.open(campaign.directory) as store:
            assert store.campaign().status == "finished" and not store.programs(status="pending")
    assert results["ray"] == results["local"]
    assert sum(1 for p in results["ray"] if p[1] == "evaluated") >= 4
