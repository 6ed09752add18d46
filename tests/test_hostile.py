"""Every program in tests/hostile/ goes through a real worker pool and fails the way its first
line (``# expect: <reason>``) says; afterwards the host and the pool are still fine.

Files expecting ``invalid_code`` or ``forbidden_construct`` must be rejected by validation alone,
before any of their code runs.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch

from sandbox.contract import FAILURE_REASONS, CandidateError, load_program, validate
from sandbox.jobs import probe_job
from sandbox.pool import WorkerPool
from sandbox.references import reference_source

CORPUS = sorted((Path(__file__).parent / "hostile").glob("*.py"))
STATIC_REASONS = {"invalid_code", "forbidden_construct"}
JOB_TIMEOUT = 3.0  # a probe takes milliseconds; the runaway programs are meant to hit this


def expected_reason(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name}: first line must be '# expect: <reason>'"
    return first.removeprefix("# expect: ").strip()


@pytest.fixture(scope="module")
def pool():
    with WorkerPool(size=2) as pool:
        yield pool


@pytest.fixture(scope="module")
def corpus_results(pool):
    """Run the whole corpus at once (two workers), so the timeouts overlap."""
    futures = {path.name: pool.submit("probe", {"source": path.read_text()}, timeout=JOB_TIMEOUT) for path in CORPUS}
    return {name: future.result() for name, future in futures.items()}


def test_corpus_covers_every_failure_kind():
    assert len(CORPUS) >= 30
    reasons = {expected_reason(path) for path in CORPUS}
    assert reasons <= set(FAILURE_REASONS) | {"ok"}
    assert {"forbidden_construct", "invalid_code", "timeout", "oom", "nan", "shape_error", "crashed"} <= reasons


@pytest.mark.parametrize("path", [p for p in CORPUS if expected_reason(p) in STATIC_REASONS], ids=lambda p: p.stem)
def test_static_rejection_happens_before_anything_runs(path):
    with pytest.raises(CandidateError) as caught:
        validate(path.read_text())
    assert caught.value.reason == expected_reason(path), str(caught.value)


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_hostile_program_fails_as_expected_in_a_worker(corpus_results, path):
    result = corpus_results[path.name]
    expected = expected_reason(path)
    if expected == "ok":
        assert result.ok, result.message
    else:
        assert (result.ok, result.reason) == (False, expected), result.message
        assert result.message


def test_pool_and_host_are_fine_after_the_corpus(pool, corpus_results):
    # Runaway programs really were stopped by killing their workers.
    assert pool.restarts >= sum(expected_reason(p) == "timeout" for p in CORPUS)
    source = reference_source("adamw")
    results = pool.map("probe", [{"source": source}] * pool.size, timeout=30)
    in_process = probe_job({"source": source})
    for result in results:
        assert result.ok, result.message
        assert result.value == in_process
    assert len(set(pool.worker_pids())) == pool.size
    # Nothing a worker did reached the controller: its socket module and environment are intact.
    assert socket.socket.__module__ == "socket"
    assert "PATH" in os.environ


def test_mutating_inputs_leaves_the_callers_tensors_alone():
    program = load_program((Path(__file__).parent / "hostile" / "mutate_inputs.py").read_text())
    grad, param = torch.ones(3), torch.full((3,), 2.0)
    delta, _ = program.update(grad, param, program.init(param), 1, program.hp())
    assert torch.equal(grad, torch.ones(3)) and torch.equal(param, torch.full((3,), 2.0))
    assert torch.allclose(delta, -program.hparams["lr"] * torch.full((3,), 2.0))
