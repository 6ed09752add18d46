"""Population batching at the scheduler: waiting ``evaluate`` jobs on one task become one job.

A campaign evaluates several candidates at once (``search.in_flight``), and the evaluator submits
each candidate's runs task by task as ``evaluate`` jobs. :class:`PopulationExecutor` wraps an
executor and is *work-conserving*: a job goes to the wrapped executor at once while one of its
slots is free, and only jobs that would have waited for a slot anyway are merged. When more jobs
wait than slots are free, the oldest leaves together with every other waiting job for the same task,
step budget, device, task modules and halving schedule (at most ``max_programs``), as one
``evaluate_population`` job (:func:`sandbox.jobs.evaluate_population_job`: one stacked model, one
batched forward and backward, each program's update on its own rows). Each caller's future
resolves to exactly the :class:`~sandbox.worker.JobResult` its own ``evaluate`` job would have
given: the same run records (bit for bit on CPU, tests/test_population_executor.py), or that
program's own failure. A population job that fails as a whole (a timeout, a dead worker) is
re-run job by job, so one hanging program cannot fail its batch-mates. When a population job comes
back with no program sharing a pass (the worker found the task's rows dependent on their
batch-mates, or a shared pass slower than each program's own), that task's jobs are not merged
again: the worker had run each program alone, and the merged job only added its checks.

The first version held every job for a 50 ms window and merged what arrived in it, free slots
or not. A whole quick campaign from a cold run cache then ran slower with it on 2 CPU cores
(145 s against 118 s): a task's tuned baselines merged into one job while the other slot sat
idle. Merging only what waits cannot idle a slot that plain jobs would have kept busy.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from sandbox.executor import Executor, WrappingExecutor
from sandbox.worker import JobResult

MERGEABLE_KEYS = frozenset({"source", "task", "configs", "steps", "device", "task_modules", "halving"})
"""An ``evaluate`` payload with anything else (``batched``, overrides) is passed through as is."""


@dataclass
class _Waiting:
    key: tuple
    payload: dict[str, Any]
    timeout: float
    future: Future


class PopulationExecutor(WrappingExecutor):
    """Wraps ``inner``; keeps at most ``slots`` (default: ``inner.capacity``) jobs running there
    and merges the ``evaluate`` jobs waiting for a slot on the same task into
    ``evaluate_population`` jobs of at most ``max_programs`` programs."""

    def __init__(self, inner: Executor, *, max_programs: int = 8, share: str = "auto", slots: int | None = None):
        if max_programs < 1 or (slots is not None and slots < 1):
            raise ValueError(f"max_programs and slots must be >= 1, got {max_programs}, {slots}")
        super().__init__(inner)
        self.max_programs = max_programs
        self.share = share
        self.slots = slots or max(1, inner.capacity)
        self._cond = threading.Condition()
        self._waiting: deque[_Waiting] = deque()
        self._running = 0
        self._closed = False
        self._dispatcher: threading.Thread | None = None
        self._unshared: set[tuple] = set()  # keys whose population job shared no pass: sent alone since
        self.stats = {"evaluate_jobs": 0, "population_jobs": 0, "programs_merged": 0, "rerun_alone": 0,
                      "unshared_tasks": 0}

    def submit(self, job_name: str, payload: dict[str, Any], timeout: float = 60.0) -> Future[JobResult]:
        if job_name != "evaluate" or not set(payload) <= MERGEABLE_KEYS:
            return self._send(job_name, payload, timeout)
        # A population has one halving schedule: jobs merge only with jobs of the same one (or none).
        key = (payload.get("task"), payload.get("steps"), payload.get("device"), repr(payload.get("task_modules")),
               json.dumps(payload.get("halving"), sort_keys=True, default=repr))
        future: Future[JobResult] = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("the executor is closed")
            self.stats["evaluate_jobs"] += 1
            self._waiting.append(_Waiting(key, payload, timeout, future))
            if self._dispatcher is None:
                # Submitting to the wrapped executor happens on this thread, never in a job's
                # done-callback: TimeBoundExecutor may block there while it times a task.
                self._dispatcher = threading.Thread(target=self._dispatch, name="population-dispatch", daemon=True)
                self._dispatcher.start()
            self._cond.notify_all()
        return future

    def close(self) -> None:
        with self._cond:
            self._closed = True
            waiting, self._waiting = list(self._waiting), deque()
            self._cond.notify_all()
            dispatcher = self._dispatcher
        for entry in waiting:  # as the wrapped pool does with its queued jobs
            entry.future.cancel()
        if dispatcher is not None:
            dispatcher.join()
        super().close()

    def _dispatch(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (not self._waiting or self._running >= self.slots):
                    self._cond.wait()
                if self._closed:
                    return
                oldest = self._waiting[0].key
                if len(self._waiting) <= self.slots - self._running or oldest in self._unshared:
                    group = [self._waiting[0]]  # a slot for each (none waits), or merging did not pay
                else:
                    group = [e for e in self._waiting if e.key == oldest][:self.max_programs]
                for entry in group:
                    self._waiting.remove(entry)
                if len(group) > 1:
                    self.stats["population_jobs"] += 1
                    self.stats["programs_merged"] += len(group)
            if len(group) == 1:
                _chain(self._send("evaluate", group[0].payload, group[0].timeout), group[0].future)
                continue
            members = [{"source": e.payload["source"], "configs": e.payload["configs"]} for e in group]
            first = group[0].payload
            population = {k: first[k] for k in ("task", "steps", "device", "task_modules", "halving") if k in first}
            population.update(programs=members, share=self.share)
            timeout = max(e.timeout for e in group)
            self._send("evaluate_population", population, timeout).add_done_callback(
                lambda done, group=group: self._split(done, group))

    def _send(self, job_name: str, payload: dict[str, Any], timeout: float) -> Future[JobResult]:
        """Submit to the wrapped executor, counting the job against the slots until it ends."""
        with self._cond:
            self._running += 1
        try:
            future = self.inner.submit(job_name, payload, timeout)
        except BaseException:
            self._release(None)
            raise
        future.add_done_callback(self._release)
        return future

    def _release(self, _done: Future | None) -> None:
        with self._cond:
            self._running -= 1
            self._cond.notify_all()

    def _split(self, done: Future, group: list[_Waiting]) -> None:
        try:
            result = done.result()
        except Exception as exc:  # noqa: BLE001 (the executor itself failed: each job alone decides)
            result = JobResult.failure("crashed", f"population job: {exc}")
        if not result.ok:
            # A timeout or a dead worker is not any one program's failure: each runs alone, ahead
            # of the waiting jobs (they are older than anything waiting).
            with self._cond:
                self.stats["rerun_alone"] += len(group)
                if not self._closed:
                    self._waiting.extendleft(reversed([_Waiting(("alone", id(e)), e.payload, e.timeout, e.future)
                                                       for e in group]))
                    self._cond.notify_all()
                    return
            for entry in group:
                entry.future.cancel()
            return
        members = result.value["programs"]
        ran = [member for member in members if member.get("ok")]
        if ran and not any(member.get("shared") for member in ran):
            # The worker ran every program alone (rows not independent, or a shared pass measured
            # slower): the merged job cost more than plain jobs (its checks, one long job instead
            # of two short ones), so this task's jobs are no longer merged.
            with self._cond:
                self._unshared.add(group[0].key)
                self.stats["unshared_tasks"] = len(self._unshared)
        runs = [len(entry.payload["configs"]) for entry in group]
        for entry, member, own in zip(group, members, runs):
            # Each program is charged its share of the job's time (by runs), so the jobs'
            # seconds still add up to the time the workers spent.
            seconds = result.seconds * own / max(1, sum(runs))
            if member.get("ok"):
                entry.future.set_result(JobResult(True, None, "", {"runs": member["runs"]}, seconds,
                                                  result.worker_pid))
            else:
                entry.future.set_result(JobResult.failure(member.get("reason") or "crashed", member.get("message") or "",
                                                          seconds, result.worker_pid))


def _chain(source: Future, target: Future) -> None:
    """Resolve ``target`` with ``source``'s outcome when it completes."""
    def copy(done: Future) -> None:
        if target.done():
            return
        if done.cancelled():
            target.cancel()
            return
        try:
            target.set_result(done.result())
        except Exception as exc:  # noqa: BLE001
            target.set_exception(exc)
    source.add_done_callback(copy)
