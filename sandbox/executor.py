"""Where jobs run: one small interface, a registry of implementations, and a factory.

An :class:`Executor` accepts ``submit(job_name, payload, timeout) -> Future[JobResult]``: the
job is a name from :mod:`sandbox.jobs`, the payload plain JSON data, and the future always
resolves to a :class:`~sandbox.worker.JobResult` for whatever the candidate does. ``capacity``
says how many jobs run at once, so a caller knows how many to keep in flight.

``local`` (the default) is a :class:`~sandbox.pool.WorkerPool` on this machine. ``ray``
(:mod:`sandbox.ray_executor`, the optional ``[ray]`` extra) runs the same jobs on a Ray
cluster: every Ray actor holds a :class:`~sandbox.worker.WorkerProcess` there and calls ``run``
on it, which keeps the same sandbox walls around the same job functions. Ray is imported only
when a ``ray`` executor is built, so nothing else needs it installed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from concurrent.futures import Future
from typing import Any, Callable, Iterable

from sandbox.pool import WorkerPool
from sandbox.worker import JobResult


class Executor(ABC):
    """Runs named sandbox jobs somewhere; safe to use from several threads."""

    @property
    @abstractmethod
    def capacity(self) -> int:
        """How many jobs run concurrently."""

    @abstractmethod
    def submit(self, job_name: str, payload: dict[str, Any], timeout: float = 60.0) -> Future[JobResult]:
        """Queue a job; the future resolves to its :class:`JobResult`."""

    @abstractmethod
    def close(self) -> None:
        """Cancel queued jobs, finish running ones, release workers. Idempotent."""

    def map(self, job_name: str, payloads: Iterable[dict[str, Any]], timeout: float = 60.0) -> list[JobResult]:
        """Run one job per payload; results in payload order."""
        futures = [self.submit(job_name, payload, timeout) for payload in payloads]
        return [future.result() for future in futures]

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class WrappingExecutor(Executor):
    """An executor that adds a policy around another one (``inner``): ``capacity``, ``close`` and
    every other attribute (``device``, ``slot_states``, ...) are the wrapped executor's."""

    def __init__(self, inner: Executor):
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (during construction or unpickling)
            raise AttributeError(name)
        return getattr(self.inner, name)

    @property
    def capacity(self) -> int:
        return self.inner.capacity

    def close(self) -> None:
        self.inner.close()


class LocalExecutor(Executor):
    """Sandboxed worker processes on this machine. Options are :class:`WorkerPool`'s:
    ``size``, ``device`` (``cpu``, ``cuda``, ``cuda:N``), ``address_space_bytes``,
    ``num_threads``, ``cuda_memory_fraction``, ``isolate_network``."""

    def __init__(self, **options: Any):
        self.pool = WorkerPool(**options)

    @property
    def capacity(self) -> int:
        return self.pool.size

    def submit(self, job_name: str, payload: dict[str, Any], timeout: float = 60.0) -> Future[JobResult]:
        return self.pool.submit(job_name, payload, timeout)

    def close(self) -> None:
        self.pool.close()


class ExecutorUnavailable(RuntimeError):
    """An executor cannot be built here: a missing optional package, an unreachable cluster.
    The message says what to do about it."""


def _ray_executor(**options: Any) -> Executor:
    """Build a :class:`~sandbox.ray_executor.RayExecutor`; ray is imported only now."""
    from sandbox.ray_executor import RayExecutor

    return RayExecutor(**options)


EXECUTORS: dict[str, Callable[..., Executor]] = {"local": LocalExecutor, "ray": _ray_executor}
"""Executor kind -> factory taking keyword options."""


def register_executor(kind: str, factory: Callable[..., Executor]) -> None:
    """Make ``make_executor(kind, ...)`` build executors with ``factory(**options)``."""
    EXECUTORS[kind] = factory


def make_executor(kind: str = "local", **options: Any) -> Executor:
    """Build an executor of a registered kind; ``ValueError`` names the known kinds."""
    try:
        factory = EXECUTORS[kind]
    except KeyError:
        raise ValueError(f"unknown executor {kind!r}; known: {', '.join(sorted(EXECUTORS))}") from None
    return factory(**options)
