"""A pool of long-lived sandbox workers, driven from any number of threads through futures.

Each worker slot owns one thread and one :class:`~sandbox.worker.WorkerProcess`. The thread
takes jobs from a shared queue, runs them with a wall-clock timeout, and replaces its worker
whenever it timed out, died or misbehaved, so one bad candidate costs one worker restart and
nothing else. Futures always resolve to a :class:`~sandbox.worker.JobResult` for anything a
candidate does; only a worker that cannot start at all (a broken installation) resolves its
future with :class:`~sandbox.worker.WorkerStartError`.

    with WorkerPool(size=2) as pool:
        result = pool.submit("probe", {"source": text}, timeout=30).result()
"""

from __future__ import annotations

import os
import queue
import threading
from concurrent.futures import Future
from dataclasses import replace
from typing import Any, Iterable

from sandbox.jobs import check_job_request
from sandbox.worker import JobResult, WorkerConfig, WorkerProcess, WorkerStartError

_STOP = object()


MAX_WORKERS_PER_GPU = 8
"""Workers sharing one GPU by default (fewer when there are fewer CPU cores per GPU). One worker
cannot fill a GPU with these small models: a step is launch-bound (~0.3 ms per batched digits-MLP
step on an H200, whatever the batch), so several processes launch into it at once. On an H200
with 16 cores the search suite took 38 s per candidate with one worker and 31 s with 8 (issue 14)."""
GPU_MEMORY_FRACTION = 0.9
"""The share of a GPU's memory its workers may use together (each gets an equal part)."""


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def workers_per_gpu(gpus: int, cores: int | None = None) -> int:
    """Default workers per GPU: one per CPU core per GPU, at most :data:`MAX_WORKERS_PER_GPU`."""
    cores = _cores() if cores is None else cores
    return max(1, min(MAX_WORKERS_PER_GPU, cores // max(1, gpus)))


def default_size(device: str) -> int:
    """One worker per CPU core on CPU; :func:`workers_per_gpu` per visible GPU for ``cuda``, and
    for the one GPU of ``cuda:i``."""
    if device.startswith("cuda"):
        import torch

        gpus = max(1, torch.cuda.device_count())
        return workers_per_gpu(gpus) * (gpus if device == "cuda" else 1)
    return _cores()


def slot_configs(size: int, config: WorkerConfig) -> list[WorkerConfig]:
    """Per-worker configs: on ``cuda`` worker i is pinned to GPU ``i % gpus``; on ``cuda:k``
    every worker is pinned to GPU k; on CPU they are all alike."""
    device = config.device
    if device.startswith("cuda"):
        import torch

        gpus = torch.cuda.device_count()
        if gpus == 0:
            raise ValueError(f"device {device!r} asked for, but no CUDA GPU is visible; use device='cpu'")
    if device == "cuda":
        pinned = [i % gpus for i in range(size)]
    elif device.startswith("cuda:"):
        index = int(device.split(":", 1)[1])
        if index >= gpus:
            raise ValueError(f"device {device!r} asked for, but only {gpus} GPU(s) are visible")
        pinned = [index] * size
    if device.startswith("cuda"):
        # Workers sharing a GPU share its memory: each may take an equal part of the configured
        # fraction (one worker per GPU keeps the whole of it, as before).
        sharing = {gpu: pinned.count(gpu) for gpu in pinned}
        return [replace(config, device="cuda", gpu=gpu,
                        cuda_memory_fraction=round(config.cuda_memory_fraction / sharing[gpu], 4)) for gpu in pinned]
    if device != "cpu":
        raise ValueError(f"unknown device {device!r}: use 'cpu', 'cuda' or 'cuda:N'")
    return [config] * size


class _Slot:
    """One worker process and the thread that feeds it."""

    def __init__(self, index: int, config: WorkerConfig, jobs: queue.SimpleQueue):
        self.index = index
        self.config = config
        self.jobs = jobs
        self.worker: WorkerProcess | None = None
        self.restarts = 0
        # The worker must be started by this thread: it dies when its creating thread exits.
        self.thread = threading.Thread(target=self._serve, name=f"sandbox-worker-{index}", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            self.worker = WorkerProcess(self.config)
        except OSError:
            self.worker = None  # the first job retries and reports the error on its future
        try:
            while True:
                item = self.jobs.get()
                if item is _STOP:
                    return
                future, job_name, payload, timeout = item
                if not future.set_running_or_notify_cancel():
                    continue
                try:
                    future.set_result(self._run(job_name, payload, timeout))
                except Exception as exc:  # WorkerStartError, OSError: never leave a future hanging
                    future.set_exception(exc)
        finally:
            if self.worker is not None:
                self.worker.close()

    def _run(self, job_name: str, payload: dict[str, Any], timeout: float) -> JobResult:
        if self.worker is None or not self.worker.alive:
            self._replace()
        assert self.worker is not None
        try:
            self.worker.wait_ready()
        except WorkerStartError:
            # One retry: a worker can lose a race with the OOM killer while importing torch.
            self._replace()
            self.worker.wait_ready()
        result = self.worker.run(job_name, payload, timeout)
        if not self.worker.alive:
            # Start the next worker now, so its torch import overlaps with the queue wait.
            self._replace()
        return result

    def _replace(self) -> None:
        if self.worker is not None:
            self.worker.close(grace=0)
        self.restarts += 1
        self.worker = WorkerProcess(self.config)


class WorkerPool:
    """Long-lived sandbox workers behind ``submit(job, payload, timeout) -> Future[JobResult]``.

    ``size``: number of workers (default :func:`default_size` for the device). ``device``:
    ``cpu``, ``cuda`` (workers spread over the GPUs, each pinned to one; those sharing a GPU
    share its ``cuda_memory_fraction``) or ``cuda:N``. Other keyword options are
    :class:`~sandbox.worker.WorkerConfig` fields (``address_space_bytes``, ``num_threads``,
    ``cuda_memory_fraction``, ``isolate_network``, ...). Safe to call from several threads.
    """

    def __init__(self, size: int | None = None, *, device: str = "cpu", **worker_options: Any):
        config = WorkerConfig(device=device, **worker_options)
        size = default_size(device) if size is None else size
        if size < 1:
            raise ValueError(f"a pool needs at least one worker, got size={size}")
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self._slots = [_Slot(i, cfg, self._jobs) for i, cfg in enumerate(slot_configs(size, config))]

    @property
    def size(self) -> int:
        return len(self._slots)

    @property
    def restarts(self) -> int:
        """How many times a worker was replaced (after a timeout, crash or start failure)."""
        return sum(slot.restarts for slot in self._slots)

    def worker_pids(self) -> list[int | None]:
        """Current worker process ids, by slot (None before a slot has started its worker)."""
        return [slot.worker.pid if slot.worker is not None else None for slot in self._slots]

    def submit(self, job_name: str, payload: dict[str, Any], timeout: float = 60.0) -> Future[JobResult]:
        """Queue one job; the future resolves to its :class:`JobResult`.

        Raises ``ValueError`` for an unknown job name, a payload that is not JSON data or a
        non-positive timeout (caller bugs, reported at once), ``RuntimeError`` after close().
        """
        check_job_request(job_name, payload, timeout)
        future: Future[JobResult] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("this WorkerPool is closed")
            self._jobs.put((future, job_name, payload, float(timeout)))
        return future

    def map(self, job_name: str, payloads: Iterable[dict[str, Any]], timeout: float = 60.0) -> list[JobResult]:
        """Run one job per payload across the pool; results in payload order."""
        futures = [self.submit(job_name, payload, timeout) for payload in payloads]
        return [future.result() for future in futures]

    def close(self) -> None:
        """Cancel queued jobs, let running ones finish (each is bounded by its timeout), stop
        the workers. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            while True:
                try:
                    item = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if item is not _STOP:
                    item[0].cancel()
            for _ in self._slots:
                self._jobs.put(_STOP)
        for slot in self._slots:
            slot.thread.join()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
