"""The worker pool's walls and failure handling, with real worker processes.

Each test states one property: secrets stay out, sockets fail, a big allocation is an ``oom``,
a hung job kills only its own worker, a dead worker is replaced, futures always resolve.
"""

from __future__ import annotations

import os
import stat
import sys
import threading
from concurrent.futures import CancelledError

import pytest
import torch

from sandbox.executor import EXECUTORS, LocalExecutor, make_executor, register_executor
from sandbox.jobs import probe_job
from sandbox.pool import WorkerPool, default_size, slot_configs, workers_per_gpu
from sandbox.references import reference_source
from sandbox.worker import DEFAULT_ADDRESS_SPACE, GIB, WorkerConfig, WorkerStartError, is_secret_name, scrubbed_environment


@pytest.fixture(scope="module")
def pool():
    # Secrets are set before the workers start, as a user's shell would have them.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPENAI_API_KEY", "sk-must-not-leak")
        patch.setenv("MY_SERVICE_TOKEN", "must-not-leak")
        with WorkerPool(size=2) as pool:
            pool.map("selftest", [{"mode": "echo"}] * 2, timeout=10)  # both workers started
            yield pool


def selftest(pool, timeout=10.0, **payload):
    return pool.submit("selftest", payload, timeout=timeout).result()


def test_workers_cannot_see_secrets(pool):
    result = selftest(pool, mode="env")
    assert result.ok, result.message
    visible = set(result.value["visible"])  # os.environ and the process's initial environment
    assert "OPENAI_API_KEY" not in visible and "MY_SERVICE_TOKEN" not in visible
    assert "PATH" in visible


def test_secret_names_are_recognised():
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_X", "AWS_REGION", "HF_HOME", "GITHUB_TOKEN",
                 "db_password", "MY_SECRET", "GOOGLE_APPLICATION_CREDENTIALS", "HTTP_AUTHORIZATION"):
        assert is_secret_name(name), name
    for name in ("PATH", "HOME", "LANG", "CUDA_VISIBLE_DEVICES", "PYTHONPATH"):
        assert not is_secret_name(name), name


def test_worker_environment_pins_its_gpu_within_the_parents_visible_set():
    env = scrubbed_environment({"CUDA_VISIBLE_DEVICES": "3,5", "PATH": "/bin"}, WorkerConfig(device="cuda", gpu=1))
    assert env["CUDA_VISIBLE_DEVICES"] == "5"
    assert env["OMP_NUM_THREADS"] == "1"


def test_cuda_workers_are_pinned_and_share_a_gpus_memory(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    configs = slot_configs(3, WorkerConfig(device="cuda"))
    assert [c.gpu for c in configs] == [0, 1, 2]
    assert [c.cuda_memory_fraction for c in configs] == [0.9, 0.9, 0.9]  # alone on its GPU: all of it
    configs = slot_configs(5, WorkerConfig(device="cuda", cuda_memory_fraction=0.8))
    assert [c.gpu for c in configs] == [0, 1, 2, 0, 1]
    assert [c.cuda_memory_fraction for c in configs] == [0.4, 0.4, 0.8, 0.4, 0.4]
    assert [c.cuda_memory_fraction for c in slot_configs(4, WorkerConfig(device="cuda:2"))] == [0.225] * 4
    assert all(c.resolved_address_space() is None for c in configs)  # CUDA reserves huge address space
    assert [c.gpu for c in slot_configs(2, WorkerConfig(device="cuda:1"))] == [1, 1]
    assert WorkerConfig().resolved_address_space() == DEFAULT_ADDRESS_SPACE
    with pytest.raises(ValueError, match="only 3"):
        slot_configs(1, WorkerConfig(device="cuda:3"))
    with pytest.raises(ValueError, match="unknown device"):
        slot_configs(1, WorkerConfig(device="tpu"))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(ValueError, match="no CUDA GPU"):
        slot_configs(1, WorkerConfig(device="cuda"))


def test_several_workers_share_a_gpu_by_default(monkeypatch):
    # One worker cannot fill a GPU with small launch-bound steps: one per core per GPU, up to 8.
    assert workers_per_gpu(1, cores=16) == 8 and workers_per_gpu(1, cores=2) == 2
    assert workers_per_gpu(4, cores=16) == 4 and workers_per_gpu(8, cores=4) == 1
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    cores = len(os.sched_getaffinity(0))
    assert default_size("cuda") == 2 * workers_per_gpu(2, cores)
    assert default_size("cuda:1") == workers_per_gpu(2, cores)
    assert default_size("cpu") == cores


def test_sockets_fail_inside_workers(pool):
    result = selftest(pool, mode="socket")
    assert result.ok, result.message
    assert result.value["python"].startswith("blocked")
    assert result.value["syscall"] != "connected"


def test_limits_are_in_force(pool):
    result = selftest(pool, mode="limits")
    assert result.ok, result.message
    assert result.value["address_space"] == DEFAULT_ADDRESS_SPACE
    assert result.value["threads"] == 1
    assert 0 < result.value["cpu_seconds"] < 10**6  # the per-job RLIMIT_CPU backstop is armed


def test_allocation_beyond_the_address_space_limit_is_oom_and_the_worker_survives(pool):
    # 6 GiB of untouched torch.empty: fine without the limit, impossible under 4 GiB.
    before = pool.restarts
    result = selftest(pool, mode="allocate", bytes=6 * GIB)
    assert (result.ok, result.reason) == (False, "oom"), result.message
    assert selftest(pool, mode="allocate", bytes=1024).ok
    assert pool.restarts == before


def test_timeout_kills_only_that_worker(pool):
    pids = pool.worker_pids()
    hung = pool.submit("selftest", {"mode": "sleep", "seconds": 600}, timeout=1.0)
    result = hung.result(timeout=60)
    assert (result.ok, result.reason) == (False, "timeout")
    assert result.seconds < 30
    after = pool.worker_pids()
    assert result.worker_pid in pids and result.worker_pid not in after
    assert len(set(pids) & set(after)) == 1  # the other worker was not touched
    assert all(r.ok for r in pool.map("selftest", [{"mode": "echo", "value": i} for i in range(4)]))


@pytest.mark.parametrize("mode, how", [("exit", "exited with code 3"), ("segfault", "SIGSEGV")])
def test_a_dying_worker_is_reported_and_replaced(pool, mode, how):
    result = selftest(pool, mode=mode)
    assert (result.ok, result.reason) == (False, "crashed")
    assert how in result.message
    assert result.worker_pid not in pool.worker_pids()
    assert selftest(pool, mode="echo", value=7).value == 7


def test_probe_in_a_worker_matches_in_process(pool):
    payload = {"source": reference_source("adamw"), "steps": 3}
    result = pool.submit("probe", payload, timeout=30).result()
    assert result.ok, result.message
    assert result.value == probe_job(payload)
    assert len(result.value) == 3 * (5 + 12 + 12 + 4)  # 3 steps of the four probe tensors


def test_validate_job_reports_the_program(pool):
    result = pool.submit("validate", {"source": reference_source("adamw")}).result()
    assert result.ok and result.value["hparams"]["lr"] == 1e-3
    bad = pool.submit("validate", {"source": "import os"}).result()
    assert (bad.ok, bad.reason) == (False, "forbidden_construct")


def test_many_threads_can_submit_at_once(pool):
    outputs: dict[int, object] = {}

    def client(i):
        outputs[i] = pool.submit("selftest", {"mode": "echo", "value": [i, "x"]}).result().value

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outputs == {i: [i, "x"] for i in range(8)}


def test_caller_mistakes_raise_at_once(pool):
    with pytest.raises(ValueError, match="unknown job"):
        pool.submit("os.system", {})
    with pytest.raises(ValueError, match="JSON"):
        pool.submit("probe", {"source": torch.zeros(1)})
    with pytest.raises(ValueError, match="timeout"):
        pool.submit("probe", {"source": ""}, timeout=0)


def test_close_cancels_queued_jobs_and_finishes_running_ones():
    pool = WorkerPool(size=1)
    running = pool.submit("selftest", {"mode": "sleep", "seconds": 0.5}, timeout=30)
    queued = [pool.submit("selftest", {"mode": "echo"}) for _ in range(3)]
    while not running.running() and not running.done():
        threading.Event().wait(0.01)
    pool.close()
    assert running.result().ok
    assert all(f.cancelled() for f in queued)
    with pytest.raises(CancelledError):
        queued[0].result()
    with pytest.raises(RuntimeError, match="closed"):
        pool.submit("selftest", {"mode": "echo"})


def test_a_worker_that_cannot_start_fails_the_future_loudly(tmp_path):
    broken = tmp_path / "python"
    broken.write_text("#!/bin/sh\necho 'cannot import torch' >&2\nexit 1\n")
    broken.chmod(broken.stat().st_mode | stat.S_IEXEC)
    with WorkerPool(size=1, python=str(broken)) as pool:
        with pytest.raises(WorkerStartError, match="cannot import torch"):
            pool.submit("selftest", {"mode": "echo"}).result(timeout=60)


@pytest.mark.parametrize("behaviour, reason, words", [
    ("echo 'not json'; sleep 60", "crashed", "malformed"),  # a compromised worker
    ("kill -KILL $$", "oom", "SIGKILL"),  # what the kernel's OOM killer does
    ("echo 'terminate called after std::bad_alloc' >&2; kill -ABRT $$", "oom", "SIGABRT"),
    ("kill -XCPU $$", "timeout", "SIGXCPU"),  # the RLIMIT_CPU backstop
    ("exit 9", "crashed", "code 9"),
])
def test_how_a_worker_ended_decides_the_reason(tmp_path, behaviour, reason, words):
    # A stand-in worker: a valid ready line, then it reads the job and misbehaves.
    fake = tmp_path / "python"
    fake.write_text(f"#!/bin/sh\necho '{{\"ready\": true}}'\nread request\n{behaviour}\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    with WorkerPool(size=1, python=str(fake)) as pool:
        result = pool.submit("selftest", {"mode": "echo"}, timeout=10).result(timeout=60)
        assert (result.ok, result.reason) == (False, reason), result.message
        assert words in result.message
        assert pool.restarts == 1


def test_executor_factory_builds_a_local_executor():
    with pytest.raises(ValueError, match="local"):
        make_executor("nonexistent")
    register_executor("local-alias", LocalExecutor)
    try:
        with make_executor("local-alias", size=1) as executor:
            assert executor.capacity == 1
            [result] = executor.map("selftest", [{"mode": "echo", "value": sys.version_info[0]}])
            assert result.value == sys.version_info[0]
    finally:
        EXECUTORS.pop("local-alias")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_workers_are_pinned_and_capped():
    with WorkerPool(device="cuda:0", size=1, cuda_memory_fraction=0.5) as pool:
        result = pool.submit("selftest", {"mode": "limits"}, timeout=60).result()
        assert result.ok, result.message
        assert result.value["device"] == "cuda:0"
        assert result.value["address_space"] == -1  # RLIM_INFINITY: CUDA needs the address space
        too_big = pool.submit("selftest", {"mode": "allocate_cuda", "fraction": 0.75}, timeout=60).result()
        assert (too_big.ok, too_big.reason) == (False, "oom"), too_big.message
