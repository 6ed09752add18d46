"""Time limits for evaluation jobs, set by what the task costs a tuned AdamW.

One fixed wall-clock limit for every job (300 s) lets a slow candidate (a dynamic big-integer
loop, nested loops of matrix ops) hold a worker for minutes on a task that AdamW trains in a
second. :class:`TimeBoundExecutor` wraps any executor and gives each ``evaluate`` job a limit
of ``factor`` times what AdamW takes on the same task and step budget, per run, times the job's
number of runs: at least ``floor`` seconds, never more than the caller's own timeout.

AdamW's cost is measured once per (task, steps, device) in this process with small jobs (one
run each, on the sequential path: the slowest way a legitimate program runs), so the limit
follows the machine it runs on. If that measurement fails, the caller's timeout stands. The
floor covers what a job costs beyond its runs (a cold worker's imports, building the task).
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any

from sandbox.executor import Executor, WrappingExecutor
from sandbox.references import reference_source
from sandbox.worker import JobResult

CALIBRATION_LR = 1e-3
"""AdamW's learning rate for the timing run: trains everywhere without diverging (a diverging
run stops early and would understate the cost)."""


CALIBRATION_STEPS = 40
"""Steps of each timing run (fewer when the task's budget is smaller), scaled to the budget."""


BOUNDED_JOBS = ("evaluate", "evaluate_population")
_POPULATION_KEYS = ("programs", "share")


def _runs(payload: dict[str, Any]) -> int:
    """The runs of an ``evaluate`` job, or of every program of an ``evaluate_population`` job."""
    if "programs" in payload:
        return sum(len(member.get("configs") or ()) for member in payload["programs"])
    return len(payload.get("configs") or ())


class TimeBoundExecutor(WrappingExecutor):
    """An executor whose ``evaluate`` (and ``evaluate_population``) jobs get a limit of ``factor``
    x tuned AdamW's time on the job's task (per run, times the job's runs, over all its programs),
    at least ``floor`` seconds and at most the timeout the caller asked for. Other jobs pass
    through unchanged."""

    def __init__(self, inner: Executor, *, factor: float = 10.0, floor: float = 30.0):
        if not factor > 0 or not floor > 0:
            raise ValueError(f"factor and floor must be positive, got {factor}, {floor}")
        super().__init__(inner)
        self.factor = factor
        self.floor = floor
        self._lock = threading.Lock()
        self._costs: dict[tuple, Future] = {}  # (task, steps, device) -> seconds per run (None: unknown)

    def seconds_per_run(self, payload: dict[str, Any], timeout: float) -> float | None:
        """AdamW's measured wall time for one run of ``payload``'s task (None: not measurable)."""
        key = (payload.get("task"), payload.get("steps"), payload.get("device"))
        with self._lock:
            cost = self._costs.get(key)
            mine = cost is None
            if mine:
                cost = self._costs[key] = Future()
        if mine:
            steps = payload.get("steps")
            short = min(steps, CALIBRATION_STEPS) if isinstance(steps, int) and steps > 0 else None
            probe = {**{k: v for k, v in payload.items() if k not in _POPULATION_KEYS},
                     "source": reference_source("adamw"), "configs": [[CALIBRATION_LR, 0]], "batched": False}
            if short is not None:
                probe["steps"] = short  # time per step is what is measured: a short run says it
            # A worker's first job on a task also imports the harness and builds the task
            # (seconds, against milliseconds for a small run): one more run than there are
            # workers, one after another, puts two on some worker, and the fastest is warm.
            seconds = []
            try:
                for _ in range(self.inner.capacity + 1):
                    result = self.inner.submit("evaluate", probe, timeout).result()
                    if result.ok:
                        seconds.append(result.seconds)
            except Exception:  # noqa: BLE001 (no measurement: the caller's timeout stands)
                pass
            cost.set_result(min(seconds) * (steps / short if short else 1.0) if seconds else None)
        return cost.result()

    def limit(self, payload: dict[str, Any], timeout: float) -> float:
        """The wall-clock limit for an ``evaluate`` job with this payload."""
        per_run = self.seconds_per_run(payload, timeout)
        if per_run is None:
            return timeout
        runs = max(1, _runs(payload))
        return min(timeout, max(self.floor, self.factor * per_run * runs))

    def submit(self, job_name: str, payload: dict[str, Any], timeout: float = 60.0) -> Future[JobResult]:
        if job_name in BOUNDED_JOBS:
            timeout = self.limit(payload, timeout)
        return self.inner.submit(job_name, payload, timeout)
