"""Population batching at the scheduler: concurrent ``evaluate`` jobs on one task become one job.

A campaign evaluates several candidates at once (``search.in_flight``), and the evaluator submits
each candidate's runs task by task as ``evaluate`` jobs. :class:`PopulationExecutor` wraps an
executor and holds each ``evaluate`` job for a short window; the jobs that arrive in that window
for the same task, step budget, device and task modules are sent as one ``evaluate_population``
job (:func:`sandbox.jobs.evaluate_population_job`: one stacked model, one batched forward and
backward, each program's update on its own rows). Each caller's future resolves to exactly the
:class:`~sandbox.worker.JobResult` its own ``evaluate`` job would have given: the same run
records (bit for bit on CPU, tests/test_population.py), or that program's own failure. A
population job that fails as a whole (a timeout, a dead worker) is re-run job by job, so one
hanging program cannot fail its batch-mates.

It pays most where a step is launch-bound (a GPU running small models: the issue's H200 measured
~0.3 ms per step whatever the batch; not measured here yet). On 2 CPU cores, 8 candidates in
flight, it scored 1.21-1.67x as many candidates per hour as one job per program, with identical
fitness (``benchmarks/throughput.py --executors local,population``; the single-pass figures of
``benchmarks/population.py`` are 1.0-1.25x: the gain is also fewer, larger jobs). A whole quick
campaign, though, ran slower with it (145 s against 118 s, cold run cache: the tuned baselines of
a task merge into one job and leave the other slot idle, and 2 candidates in flight rarely
coincide), so campaigns use it by default only on CUDA (``evaluation.population = "auto"``).
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any

from sandbox.executor import Executor, WrappingExecutor
from sandbox.worker import JobResult

MERGEABLE_KEYS = frozenset({"source", "task", "configs", "steps", "device", "task_modules"})
"""An ``evaluate`` payload with anything else (``batched``, overrides) is passed through as is."""


class PopulationExecutor(WrappingExecutor):
    """Wraps ``inner``; merges ``evaluate`` jobs that arrive within ``window`` seconds of each other
    on the same task into ``evaluate_population`` jobs of at most ``max_programs`` programs."""

    def __init__(self, inner: Executor, *, window: float = 0.05, max_programs: int = 8, share: str = "auto"):
        if window < 0 or max_programs < 1:
            raise ValueError(f"window must be >= 0 and max_programs >= 1, got {window}, {max_programs}")
        super().__init__(inner)
        self.window = window
        self.max_programs = max_programs
        self.share = share
        self._lock = threading.Lock()
        self._groups: dict[tuple, list[tuple[dict, float, Future]]] = {}
        self.stats = {"evaluate_jobs": 0, "population_jobs": 0, "programs_merged": 0, "rerun_alone": 0}

    def close(self) -> None:
        with self._lock:
            keys = list(self._groups)
        for key in keys:
            self._flush(key)
        super().close()

    def submit(self, job_name: str, payload: dict[str, Any], timeout: float = 60.0) -> Future[JobResult]:
        if job_name != "evaluate" or not set(payload) <= MERGEABLE_KEYS:
            return self.inner.submit(job_name, payload, timeout)
        key = (payload.get("task"), payload.get("steps"), payload.get("device"), repr(payload.get("task_modules")))
        future: Future[JobResult] = Future()
        with self._lock:
            self.stats["evaluate_jobs"] += 1
            group = self._groups.setdefault(key, [])
            group.append((payload, timeout, future))
            full, first = len(group) >= self.max_programs, len(group) == 1
        if full:
            self._flush(key)
        elif first:
            timer = threading.Timer(self.window, self._flush, args=(key,))
            timer.daemon = True
            timer.start()
        return future

    def _flush(self, key: tuple) -> None:
        with self._lock:
            group = self._groups.pop(key, [])
        if not group:
            return
        # One job per window and task, however many slots there are: splitting it to keep every
        # slot busy measured slower (0.96-1.08x instead of 1.21-1.35x over per-program jobs on 2
        # cores with 8 candidates in flight).
        if len(group) == 1:
            payload, timeout, future = group[0]
            _chain(self.inner.submit("evaluate", payload, timeout), future)
            return
        members = [{"source": p["source"], "configs": p["configs"]} for p, _, _ in group]
        first = group[0][0]
        population = {k: first[k] for k in ("task", "steps", "device", "task_modules") if k in first}
        population.update(programs=members, share=self.share)
        with self._lock:
            self.stats["population_jobs"] += 1
            self.stats["programs_merged"] += len(group)
        timeout = max(t for _, t, _ in group)
        self.inner.submit("evaluate_population", population, timeout).add_done_callback(
            lambda done, group=group: self._split(done, group))

    def _split(self, done: Future, group: list[tuple[dict, float, Future]]) -> None:
        try:
            result = done.result()
        except Exception as exc:  # noqa: BLE001 (the executor itself failed: each job alone decides)
            result = JobResult.failure("crashed", f"population job: {exc}")
        if not result.ok:
            # A timeout or a dead worker is not any one program's failure: each runs alone.
            with self._lock:
                self.stats["rerun_alone"] += len(group)
            for payload, timeout, future in group:
                _chain(self.inner.submit("evaluate", payload, timeout), future)
            return
        for (_, _, future), entry in zip(group, result.value["programs"]):
            if entry.get("ok"):
                future.set_result(JobResult(True, None, "", {"runs": entry["runs"]}, result.seconds, result.worker_pid))
            else:
                future.set_result(JobResult.failure(entry.get("reason") or "crashed", entry.get("message") or "",
                                                    result.seconds, result.worker_pid))


def _chain(source: Future, target: Future) -> None:
    """Resolve ``target`` with ``source``'s outcome when it completes."""
    def copy(done: Future) -> None:
        try:
            target.set_result(done.result())
        except Exception as exc:  # noqa: BLE001
            target.set_exception(exc)
    source.add_done_callback(copy)
