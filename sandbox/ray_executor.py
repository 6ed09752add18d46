"""Evaluation on a Ray cluster: the same sandboxed jobs, spread over many machines and GPUs.

Layout: one Ray actor per evaluation slot. Each actor (:class:`SandboxActor`) owns a one-worker
:class:`~sandbox.pool.WorkerPool`, that is one long-lived ``python -m sandbox.worker`` process
with every wall of a local run (AST validation, rlimits, scrubbed environment, no network,
wall-clock timeout, failure reasons), restarted by the actor whenever it dies. Torch is imported
once per actor, not once per job. On the driver, one thread per slot takes jobs from a shared
queue, sends each to its actor and resolves a :class:`concurrent.futures.Future` with the
:class:`~sandbox.worker.JobResult`, so results stream back in any order.

Resources: each actor asks Ray for ``num_cpus`` CPUs (default 1) and, on ``cuda``, a
``num_gpus`` fraction of a GPU (default 0.25), so Ray packs four evaluations onto each GPU of a
multi-GPU cluster. Ray sets the actor's ``CUDA_VISIBLE_DEVICES`` to the GPU it chose, the sandbox
worker is pinned to that GPU, and its CUDA memory cap is the same fraction of the GPU's memory.

Fault tolerance: a job whose actor, Ray worker or node dies (or stops answering for
``stall_timeout`` seconds past the job's own timeout) goes back on the queue and is retried on
another, ready actor at most ``max_retries`` times, then ends as a ``crashed``
:class:`JobResult` that says what happened; the lost actor is replaced in the background. A slot
takes jobs only while its actor is ready, so actors that are starting or waiting for resources
hold nothing up; if no actor at all has been ready for ``start_timeout`` seconds (the cluster
is gone), queued jobs fail with :class:`~sandbox.executor.ExecutorUnavailable` instead of
waiting forever. A finished result is never thrown away. Candidate failures (timeout, oom, nan,
a worker that exits) are *not* retried: they are the candidate's result, as on the local pool.

Code shipping: when this executor connects to Ray, the driver's own ``sandbox`` package travels
to the cluster in the job's ``py_modules`` runtime environment, so the nodes need torch, numpy
and scikit-learn but not this project, and always run the driver's version of the sandbox. (A
session the caller initialised keeps its own runtime environment; on one machine Ray passes the
driver's ``sys.path`` to its workers, which is enough.)

    with RayExecutor(address="auto") as executor:          # an existing cluster
        result = executor.submit("probe", {"source": text}, timeout=30).result()
"""

from __future__ import annotations

import logging
import math
import os
import queue
import re
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.executor import Executor, ExecutorUnavailable
from sandbox.jobs import check_job_request
from sandbox.worker import JobResult, WorkerStartError

RAY_INSTALL_HINT = "pip install -e '.[ray]'"
DEFAULT_GPU_FRACTION = 0.25
"""GPU share of one evaluation on ``cuda``: four evaluations per GPU."""
DEFAULT_MAX_RETRIES = 2
"""How many times a job lost with its actor is retried on another actor before it is ``crashed``."""
DEFAULT_START_TIMEOUT = 180.0
"""Seconds the first actor (Ray worker, torch import, sandbox worker) may take to become ready,
and how long the executor may go without any ready actor before queued jobs fail."""

_STOP = object()
_log = logging.getLogger(__name__)


def import_ray():
    """The ``ray`` module, or :class:`ExecutorUnavailable` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ExecutorUnavailable(f"the ray executor needs the ray package, which is not installed: "
                                  f"{RAY_INSTALL_HINT}") from None
    return ray


def _lost_errors(ray) -> tuple[type[BaseException], ...]:
    """Ray exceptions that mean "the job's actor, worker or node is gone", not "the job failed"."""
    names = ("RayActorError", "WorkerCrashedError", "NodeDiedError", "ObjectLostError", "GetTimeoutError",
             "LocalRayletDiedError", "TaskCancelledError")
    return tuple(getattr(ray.exceptions, name) for name in names if hasattr(ray.exceptions, name))


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit)\b")


def _describe(exc: BaseException, limit: int = 300) -> str:
    """One line about a Ray error: its first line and, when Ray quotes a remote traceback
    (an actor that died in ``__init__``), the exception that ended it."""
    lines = [line.strip() for line in _ANSI.sub("", str(exc)).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    head = lines[0].split(" (pid=")[0][:limit]
    cause = next((line for line in reversed(lines[1:]) if _EXCEPTION_LINE.match(line)), None)
    return f"{type(exc).__name__}: {head}" + (f": {cause[:limit]}" if cause else "")


def placement(device: str, num_gpus: float | None, resources: dict[str, float]) -> tuple[str, float]:
    """The device kind (``cpu`` or ``cuda``) and GPU share of one evaluation on a cluster with
    ``resources`` (``ray.cluster_resources()``). ``auto`` is ``cuda`` when the cluster has GPUs,
    whatever the driver's own machine has; the share defaults to 0.25 of a GPU on ``cuda``."""
    if device == "auto":
        device = "cuda" if resources.get("GPU") else "cpu"
    cuda = device.startswith("cuda")
    share = (DEFAULT_GPU_FRACTION if cuda else 0.0) if num_gpus is None else float(num_gpus)
    if cuda and not share > 0:
        raise ValueError(f"device {device!r} needs num_gpus > 0 per evaluation, got {share}")
    if not cuda and share:
        raise ValueError(f"num_gpus={share} asked for on device 'cpu'; use device='cuda'")
    return ("cuda" if cuda else "cpu"), share


def cluster_slots(resources: dict[str, float], num_cpus: float, num_gpus: float) -> int:
    """How many evaluations of ``num_cpus`` CPUs and ``num_gpus`` GPUs fit on the cluster at once."""
    slots = int(resources.get("CPU", 0) // num_cpus)
    if num_gpus:
        gpus = resources.get("GPU", 0)
        if not gpus:
            raise ExecutorUnavailable("device 'cuda' asked for, but the Ray cluster has no GPU; "
                                      "use --device cpu or add GPU nodes")
        slots = min(slots, int(gpus / num_gpus + 1e-9))
    if slots < 1:
        raise ExecutorUnavailable(f"the Ray cluster cannot fit one evaluation ({num_cpus:g} CPU, {num_gpus:g} GPU); "
                                  f"it has {resources}")
    return slots


def sandbox_options(device: str, num_cpus: float, num_gpus: float, options: dict[str, Any]) -> dict[str, Any]:
    """:class:`~sandbox.worker.WorkerConfig` settings of the sandbox worker in each actor: torch
    threads match the CPUs Ray gave the actor, and on CUDA the worker's memory cap is its share
    of the GPU (0.9 of it, as for a whole GPU locally). Explicit ``options`` win."""
    out = {"device": device, "num_threads": max(1, int(num_cpus)), **options}
    if device == "cuda":
        out.setdefault("cuda_memory_fraction", round(0.9 * min(1.0, num_gpus), 4))
    return out


class SandboxActor:
    """The body of one Ray actor: a sandbox worker process on a cluster node.

    A one-worker :class:`~sandbox.pool.WorkerPool` gives the worker its own long-lived thread
    (the worker dies with the thread that started it) and restarts it after a timeout or crash.
    Ray runs this class's methods one at a time.
    """

    def __init__(self, worker_options: dict[str, Any]):
        from sandbox.pool import WorkerPool

        self.pool = WorkerPool(size=1, **worker_options)

    def ready(self) -> dict[str, Any]:
        """Wait until the sandbox worker answers; report where this actor runs."""
        result = self.pool.submit("selftest", {"mode": "echo", "value": "ready"}, 60.0).result()
        if not result.ok:
            raise WorkerStartError(f"the sandbox worker did not answer: {result.reason}: {result.message}")
        import ray

        return {"actor_pid": os.getpid(), "node_id": ray.get_runtime_context().get_node_id(),
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}

    def run(self, job_name: str, payload: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Run one job in the sandbox worker; the :class:`JobResult` as a plain dict."""
        return self.pool.submit(job_name, payload, timeout).result().as_dict()

    def close(self) -> None:
        self.pool.close()


@dataclass
class _Job:
    """A submitted job and the actor losses it has survived so far."""

    future: Future
    name: str
    payload: dict[str, Any]
    timeout: float
    started: float = field(default_factory=time.monotonic)
    losses: list[str] = field(default_factory=list)
    running: bool = False

    def settle(self, result: JobResult | None = None, error: BaseException | None = None) -> None:
        """Resolve the future (unless the caller cancelled it before it ran)."""
        if not self.running:
            if not self.future.set_running_or_notify_cancel():
                return
            self.running = True
        if error is not None:
            self.future.set_exception(error)
        else:
            self.future.set_result(result)


class _ActorSlot:
    """One evaluation slot: a Ray actor and the driver thread that feeds it jobs.

    The thread takes a job only while its actor is ready, so an actor that is still starting,
    waiting for resources or being replaced never holds a job back from the other slots.
    """

    def __init__(self, index: int, owner: RayExecutor):
        self.index = index
        self.owner = owner
        self.restarts = 0
        self.info: dict[str, Any] = {}
        self.current_job: str | None = None
        self.ready = False
        self.last_error = ""
        self.actor = None
        self.ready_ref = None
        self._start_actor()
        self.thread = threading.Thread(target=self._serve, name=f"ray-slot-{index}", daemon=True)

    def _serve(self) -> None:
        while self._wait_until_ready():
            job = self.owner._jobs.get()
            if job is _STOP:
                return
            if not job.running:
                if not job.future.set_running_or_notify_cancel():
                    continue  # cancelled while queued
                job.running = True
            self.current_job = job.name
            try:
                self._run(job)
            except BaseException as exc:  # a bug of ours: never leave a future hanging
                job.settle(error=exc)
            finally:
                self.current_job = None

    def _wait_until_ready(self) -> bool:
        """Block until this slot's actor answers (True) or the executor closes (False). An actor
        that fails to start is replaced, with a growing pause between attempts."""
        ray, owner = self.owner._ray, self.owner
        failures = 0
        while not owner._closing.is_set():
            if self.ready:
                return True
            if self.actor is None:
                self._start_actor()
            done, _ = ray.wait([self.ready_ref], timeout=1.0)
            if not done:
                owner._check_outage()
                continue
            try:
                self.info = ray.get(self.ready_ref)
            except Exception as exc:  # the actor died while starting, or the sandbox cannot start there
                failures += 1
                self.last_error = _describe(exc, 600)
                _log.warning("ray slot %d: actor failed to start: %s", self.index, self.last_error)
                self._discard_actor()
                owner._closing.wait(min(30.0, 2.0**failures))
                continue
            self.ready = True
            owner._mark_alive()
            return True
        return False

    def _run(self, job: _Job) -> None:
        ray, owner = self.owner._ray, self.owner
        try:
            ref = self.actor.run.remote(job.name, job.payload, job.timeout)
            reply = ray.get(ref, timeout=job.timeout + owner.stall_timeout)
        except owner._lost as exc:
            self.last_error = _describe(exc)
            _log.warning("ray slot %d lost its actor during a %s job: %s", self.index, job.name, self.last_error)
            self._discard_actor()
            owner._retry_or_fail(job, self.last_error)
            return
        except ray.exceptions.RayTaskError as exc:
            # Our own code raised inside the actor (the sandbox cannot start there): not the
            # candidate's fault, so it surfaces as an exception, like WorkerStartError locally.
            self._discard_actor()
            cause = getattr(exc, "cause", None)
            job.settle(error=cause if isinstance(cause, Exception) else exc)
            return
        owner._mark_alive()
        job.settle(JobResult(**reply))

    def _start_actor(self) -> None:
        if self.ready_ref is not None:
            self.restarts += 1
        self.actor = self.owner._new_actor()
        self.ready_ref = self.actor.ready.remote()

    def _discard_actor(self) -> None:
        self.ready = False
        self.info = {}
        if self.actor is not None:
            try:
                self.owner._ray.kill(self.actor, no_restart=True)
            except Exception:  # already gone, or its node is: nothing left to stop
                pass
        self.actor = None

    def shutdown(self) -> None:
        """Stop the sandbox worker cleanly, then the actor."""
        if self.actor is None:
            return
        if self.ready:
            try:
                self.owner._ray.get(self.actor.close.remote(), timeout=15)
            except Exception:  # a dead or stuck actor is killed below all the same
                pass
        self._discard_actor()


class RayExecutor(Executor):
    """Sandboxed evaluations on a Ray cluster, one actor per slot.

    ``address``: None starts a local Ray instance in this process (stopped again by ``close``);
    ``"auto"`` joins the cluster running on this machine; ``"ray://host:10001"`` connects a Ray
    client to a remote head. If Ray is already initialised in this process, that session is used.
    ``size``: number of slots (actors); default: every slot the cluster has, that is
    ``CPU // num_cpus`` and, on ``cuda``, at most ``GPU / num_gpus``.
    ``device``: ``cpu``, ``cuda`` (Ray picks the GPU of each actor; ``cuda:N`` means ``cuda``) or
    ``auto`` (``cuda`` when the cluster has GPUs); ``self.device`` is the resolved kind.
    ``num_cpus``, ``num_gpus``: Ray resources of one evaluation (defaults 1 and, on ``cuda``, 0.25).
    ``max_retries``: retries of a job whose actor was lost, each on another ready actor (the
    lost one is replaced in the background).
    ``start_timeout``: seconds the first actor may take to start; also how long the executor
    tolerates having no ready actor at all before queued jobs fail with ``ExecutorUnavailable``.
    ``stall_timeout``: seconds past a job's timeout after which a silent actor is presumed lost
    (the sandbox enforces the job's timeout itself, so this only fires when an actor or node hangs).
    ``runtime_env``: Ray runtime environment of the job when this executor connects (default:
    ship the ``sandbox`` package; ``{}`` ships nothing, for nodes that have this project installed).
    Other keyword options are :class:`~sandbox.worker.WorkerConfig` fields for the sandbox workers.
    """

    def __init__(self, size: int | None = None, *, device: str = "cpu", address: str | None = None,
                 num_cpus: float = 1.0, num_gpus: float | None = None, max_retries: int = DEFAULT_MAX_RETRIES,
                 start_timeout: float = DEFAULT_START_TIMEOUT, stall_timeout: float | None = None,
                 runtime_env: dict[str, Any] | None = None, **worker_options: Any):
        ray = import_ray()
        if device not in ("auto", "cpu") and not device.startswith("cuda"):
            raise ValueError(f"unknown device {device!r}: use 'auto', 'cpu' or 'cuda'")
        if not num_cpus > 0 or max_retries < 0 or (size is not None and size < 1):
            raise ValueError(f"need num_cpus > 0, max_retries >= 0 and size >= 1; got {num_cpus}, "
                             f"{max_retries}, {size}")
        self._ray = ray
        self._lost = _lost_errors(ray)
        self.num_cpus = float(num_cpus)
        self.max_retries = max_retries
        self.start_timeout = float(start_timeout)
        self.runtime_env = _default_runtime_env() if runtime_env is None else runtime_env
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._slots: list[_ActorSlot] = []
        self._owns_ray = self._connect(address, size)
        try:
            self.device, self.num_gpus = placement(device, num_gpus, ray.cluster_resources())
            self.worker_options = sandbox_options(self.device, self.num_cpus, self.num_gpus, worker_options)
            if stall_timeout is None:  # an actor may have to restart its sandbox worker twice (pool.py)
                stall_timeout = 2 * float(self.worker_options.get("start_timeout", DEFAULT_START_TIMEOUT)) + 60.0
            self.stall_timeout = float(stall_timeout)
            slots = size or cluster_slots(ray.cluster_resources(), self.num_cpus, self.num_gpus)
            self._slots = [_ActorSlot(i, self) for i in range(slots)]
            self._wait_first_ready()
        except BaseException:
            self._release()
            raise
        self._last_alive = time.monotonic()
        for slot in self._slots:
            slot.thread.start()

    # --- set-up -----------------------------------------------------------------------------

    def _connect(self, address: str | None, size: int | None) -> bool:
        """Initialise Ray unless this process already has; True when we started the session."""
        ray = self._ray
        if ray.is_initialized():
            return False
        options: dict[str, Any] = {"address": address, "log_to_driver": False, "logging_level": logging.WARNING,
                                   "runtime_env": self.runtime_env or None}
        if address is None:  # a local instance: size it to the slots asked for
            options["include_dashboard"] = False
            if size is not None:
                options["num_cpus"] = math.ceil(size * self.num_cpus)
        try:
            ray.init(**options)
        except Exception as exc:
            where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
            raise ExecutorUnavailable(f"could not start or reach {where}: {_describe(exc)}") from None
        return True

    def _new_actor(self):
        remote = self._ray.remote(SandboxActor).options(
            num_cpus=self.num_cpus, num_gpus=self.num_gpus, max_restarts=0, max_task_retries=0)
        return remote.remote(self.worker_options)

    def _wait_first_ready(self) -> None:
        """Fail fast on a cluster where the sandbox cannot start; the other actors warm up while
        the first jobs run (on an autoscaling cluster they may be waiting for nodes)."""
        ray = self._ray
        refs = [slot.ready_ref for slot in self._slots]
        done, _ = ray.wait(refs, num_returns=1, timeout=self.start_timeout)
        if not done:
            raise ExecutorUnavailable(f"no Ray actor became ready within {self.start_timeout:g} s; "
                                      f"cluster resources: {ray.cluster_resources()}")
        try:
            ray.get(done[0], timeout=10)
        except Exception as exc:
            raise ExecutorUnavailable(f"the sandbox could not start on the Ray cluster: {_describe(exc, 600)}") from None

    # --- bookkeeping shared by the slots -----------------------------------------------------

    def _mark_alive(self) -> None:
        self._last_alive = time.monotonic()

    def _retry_or_fail(self, job: _Job, loss: str) -> None:
        """A job whose actor was lost goes back on the queue (any ready slot takes it) until it
        has been lost ``max_retries + 1`` times; then it is a ``crashed`` result."""
        job.losses.append(loss)
        with self._lock:
            if len(job.losses) <= self.max_retries and not self._closing.is_set():
                self._jobs.put(job)
                return
        retries = self.max_retries
        gave_up = (f"gave up after {retries} retr{'y' if retries == 1 else 'ies'} on other actors"
                   if len(job.losses) > retries else "the executor was closing")
        job.settle(JobResult.failure(
            "crashed",
            f"the Ray actor running this job was lost {len(job.losses)} time(s) (its process, Ray worker or node "
            f"died or stopped answering); {gave_up}; last error: {loss}",
            time.monotonic() - job.started))

    def _check_outage(self) -> None:
        """When no slot has had a ready actor for ``start_timeout`` seconds (the cluster is gone or
        full), fail the queued jobs with :class:`ExecutorUnavailable` instead of waiting forever."""
        with self._lock:
            if self._closing.is_set() or any(slot.ready for slot in self._slots):
                return
            down = time.monotonic() - self._last_alive
            if down < self.start_timeout:
                return
            stranded = _drain(self._jobs)
        if not stranded:
            return
        errors = sorted({slot.last_error for slot in self._slots if slot.last_error})
        error = ExecutorUnavailable(
            f"no Ray actor has been available for {down:.0f} s (cluster resources: "
            f"{self._ray.cluster_resources()}; last errors: {'; '.join(errors) or 'none, actors are pending'})")
        for job in stranded:
            job.settle(error=error)

    # --- the Executor interface ------------------------------------------------------------

    @property
    def capacity(self) -> int:
        return len(self._slots)

    @property
    def restarts(self) -> int:
        """How many actors were replaced (after being lost, or failing to start)."""
        return sum(slot.restarts for slot in self._slots)

    def slot_states(self) -> list[dict[str, Any]]:
        """Per slot: where its actor runs (``actor_pid``, ``node_id``, ``cuda_visible_devices``,
        known while the actor is ready), whether it is ``ready``, the ``job`` it is running, and
        how often its actor was replaced (``restarts``)."""
        return [{"slot": s.index, **s.info, "ready": s.ready, "job": s.current_job, "restarts": s.restarts}
                for s in self._slots]

    def submit(self, job_name: str, payload: dict[str, Any], timeout: float = 60.0) -> Future[JobResult]:
        """Queue one job; the future resolves to its :class:`JobResult`.

        Raises ``ValueError`` for an unknown job, a non-JSON payload or a non-positive timeout,
        ``RuntimeError`` after close().
        """
        check_job_request(job_name, payload, timeout)
        future: Future[JobResult] = Future()
        with self._lock:
            if self._closing.is_set():
                raise RuntimeError("this RayExecutor is closed")
            self._jobs.put(_Job(future, job_name, payload, float(timeout)))
        return future

    def close(self) -> None:
        """Cancel queued jobs, let running ones finish (each has a deadline), stop the actors,
        and shut Ray down if this executor started it. Idempotent."""
        with self._lock:
            if self._closing.is_set():
                return
            self._closing.set()
            stranded = _drain(self._jobs)
            for _ in self._slots:
                self._jobs.put(_STOP)
        for job in stranded:
            if not job.future.cancel():  # a retry already under way cannot be cancelled
                job.settle(JobResult.failure("crashed", "the executor closed before this job's retry could run"))
        for slot in self._slots:
            if slot.thread.is_alive():
                slot.thread.join()
        self._release()

    def _release(self) -> None:
        for slot in self._slots:
            slot.shutdown()
        if self._owns_ray:
            self._owns_ray = False
            self._ray.shutdown()


def _drain(jobs: queue.SimpleQueue) -> list[_Job]:
    """Take every job off the queue (stop markers are dropped)."""
    out = []
    while True:
        try:
            item = jobs.get_nowait()
        except queue.Empty:
            return out
        if item is not _STOP:
            out.append(item)


def _default_runtime_env() -> dict[str, Any]:
    """Ship this checkout's ``sandbox`` package to the actors (and nothing else of ours)."""
    return {"py_modules": [str(Path(__file__).resolve().parent)]}
