"""The fixed set of jobs a sandbox worker can run, and how their failures are classified.

A controller names a job (``"probe"``, ``"validate"``, ...) and sends a JSON payload; the worker
looks the name up in :data:`_JOBS` (never a callable sent by anyone) and returns plain JSON data.
Every job function has the signature ``job(payload: dict, device: str) -> JSON-able value`` and
signals a candidate's failure by raising :class:`~sandbox.contract.CandidateError`;
:func:`run_job` turns any exception into a failure record, so a worker never dies of one.

These functions are also what a Ray executor runs, inside the same sandboxed worker process.
"""

from __future__ import annotations

import gc
import json
import os
import time
from typing import Any, Callable

import torch

from sandbox.contract import CandidateError, HParams, load_program, program_hash, run_init, run_update

JobFunction = Callable[[dict, str], Any]

PROBE_SHAPES: tuple[tuple[int, ...], ...] = ((5,), (3, 4), (6, 2), (4,))
"""A bias-like vector, a wide and a tall matrix (matrix ops treat the two differently), and a
vector whose gradients are tiny (see PROBE_GRAD_SCALES)."""
PROBE_GRAD_SCALES: tuple[float, ...] = (1.0, 1.0, 1.0, 1e-8)
"""Gradient scale per probe tensor: at 1e-8 an `eps` of 1e-8 vs 2e-8 changes the update, so two
programs that differ only in eps are not mistaken for twins."""
PROBE_SEED = 1234
MAX_PROBE_STEPS = 8  # 33 numbers a step: at most 264 numbers in a probe
PROBE_DIGITS = 6  # significant digits kept, so float noise in the last bits does not split twins


def _probe_problem(steps: int) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
    """Initial parameters and per-step gradient noise, the same on every machine (CPU, seeded)."""
    gen = torch.Generator().manual_seed(PROBE_SEED)
    params = [torch.randn(shape, generator=gen) * scale for shape, scale in zip(PROBE_SHAPES, PROBE_GRAD_SCALES)]
    noise = [[torch.randn(shape, generator=gen) * scale for shape, scale in zip(PROBE_SHAPES, PROBE_GRAD_SCALES)]
             for _ in range(steps)]
    return params, noise


def _round(value: float) -> float:
    return float(f"{value:.{PROBE_DIGITS}g}") + 0.0  # + 0.0 turns -0.0 into 0.0


def _check_finite(delta: torch.Tensor, state: dict, step: int, index: int) -> None:
    if not bool(torch.isfinite(delta).all()):
        raise CandidateError("nan", f"update's delta is NaN or infinite at step {step} (probe tensor {index})")
    for key, value in state.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CandidateError("nan", f"state[{key!r}] is NaN or infinite at step {step} (probe tensor {index})")


def probe_job(payload: dict, device: str = "cpu") -> list[float]:
    """A behavioural fingerprint of a candidate: every delta it produces over a few steps.

    Payload: ``source`` (program text), optional ``steps`` (default 5, at most 8) and ``hparams``
    (overrides of the program's HPARAMS). Each probe tensor is updated with ``param += delta``
    under gradient ``noise + 0.5 * param`` (a noisy quadratic bowl), so the fingerprint depends on
    how the rule reacts to both. Always runs on CPU in float32 so fingerprints compare across
    machines. Returns the deltas flattened and rounded to 6 significant digits.
    """
    program = load_program(payload["source"])
    steps = int(payload.get("steps", 5))
    if not 1 <= steps <= MAX_PROBE_STEPS:
        raise ValueError(f"probe steps must be in 1..{MAX_PROBE_STEPS}, got {steps}")
    hp = HParams({**program.hparams, **payload.get("hparams", {})})
    params, noise = _probe_problem(steps)
    states = []
    for index, param in enumerate(params):
        state = run_init(program, param.clone())
        _check_finite(torch.zeros(()), state, 0, index)
        states.append(state)
    out: list[float] = []
    for step in range(1, steps + 1):
        for index, param in enumerate(params):
            grad = noise[step - 1][index] + 0.5 * param
            # Fresh copies: whatever the candidate does to its inputs cannot reach our tensors.
            state_in = {key: value.clone() for key, value in states[index].items()}
            delta, state = run_update(program, grad.clone(), param.clone(), state_in, step, hp)
            _check_finite(delta, state, step, index)
            params[index] = param + delta.detach().to(param.dtype)
            states[index] = state
            out.extend(_round(v) for v in delta.detach().reshape(-1).tolist())
    return out


def validate_job(payload: dict, device: str = "cpu") -> dict[str, Any]:
    """Validate and load ``payload["source"]``; return its hash, HPARAMS and the ops it uses."""
    program = load_program(payload["source"])
    return {
        "hash": program_hash(program.source),
        "hparams": program.hparams,
        "ops_used": sorted(program.ops_used),
        "doc": program.doc,
    }


def selftest_job(payload: dict, device: str = "cpu") -> Any:
    """Used only by the test suite, to prove the worker's walls hold; runs no candidate code.

    Modes (``payload["mode"]``): ``echo`` (return ``value``), ``sleep`` (``seconds``),
    ``allocate`` (a torch tensor of ``bytes`` bytes), ``allocate_cuda`` (``fraction`` of the
    GPU's memory), ``exit`` (``os._exit(code)``), ``segfault``,
    ``env`` (which secret-looking variables are visible), ``socket`` (try to open sockets),
    ``limits`` (the limits in force).
    """
    mode = payload["mode"]
    if mode == "echo":
        return payload.get("value")
    if mode == "sleep":
        time.sleep(float(payload["seconds"]))
        return payload["seconds"]
    if mode == "allocate":
        tensor = torch.empty(int(payload["bytes"]), dtype=torch.uint8)
        return tensor.numel()
    if mode == "allocate_cuda":
        total = torch.cuda.get_device_properties(0).total_memory
        tensor = torch.empty(int(total * float(payload["fraction"])), dtype=torch.uint8, device=device)
        return tensor.numel()
    if mode == "exit":
        os._exit(int(payload.get("code", 3)))
    if mode == "segfault":
        import ctypes

        ctypes.string_at(0)
    if mode == "env":
        with open("/proc/self/environ", "rb") as handle:
            initial = [item.split(b"=", 1)[0].decode(errors="replace") for item in handle.read().split(b"\0") if item]
        return {"visible": sorted(set(os.environ) | set(initial))}
    if mode == "socket":
        return _socket_attempts(payload.get("address", "1.1.1.1"), int(payload.get("port", 80)))
    if mode == "limits":
        import resource

        return {
            "address_space": resource.getrlimit(resource.RLIMIT_AS)[0],
            "cpu_seconds": resource.getrlimit(resource.RLIMIT_CPU)[0],
            "threads": torch.get_num_threads(),
            "device": device,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        }
    raise ValueError(f"unknown selftest mode {mode!r}")


def _socket_attempts(address: str, port: int) -> dict[str, str]:
    """Try the Python-level socket API and, bypassing it, a raw socket syscall via ctypes."""
    import ctypes
    import socket

    results: dict[str, str] = {}
    try:
        socket.create_connection((address, port), timeout=2).close()
        results["python"] = "connected"
    except OSError as exc:
        results["python"] = f"blocked: {exc}"
    # Below the Python layer only the network namespace stands in the way.
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    if fd < 0:
        results["syscall"] = f"blocked: {os.strerror(ctypes.get_errno())}"
        return results

    class SockaddrIn(ctypes.Structure):
        _fields_ = [("family", ctypes.c_ushort), ("port", ctypes.c_uint16), ("addr", ctypes.c_uint32),
                    ("zero", ctypes.c_char * 8)]

    import ipaddress

    target = SockaddrIn(socket.AF_INET, socket.htons(port), socket.htonl(int(ipaddress.IPv4Address(address))))
    rc = libc.connect(fd, ctypes.byref(target), ctypes.sizeof(target))
    results["syscall"] = "connected" if rc == 0 else f"blocked: {os.strerror(ctypes.get_errno())}"
    libc.close(fd)
    return results


def evaluate_job(payload: dict, device: str = "cpu") -> dict[str, Any]:
    """Train a candidate on one task for every ``(lr, seed)`` config; return raw run records.

    Payload: ``source``, ``task`` (a registered task name, or ``name@variant``), ``configs`` (``[[lr, seed], ...]``),
    ``steps``, optional ``batched`` (default True), ``device`` (overrides the worker's),
    ``task_modules`` (``[{"ref", "path"}]``: the user's task modules, imported before the task
    is looked up; see :func:`sandbox.tasks.load_task_module`) and ``halving`` (a
    :meth:`sandbox.halving.Schedule.to_json`: successive halving over the configs' learning
    rates; the configs dropped at a rung come back with status ``pruned``). Only raw losses and
    metrics come back; the controller scores them.
    """
    from sandbox.halving import Schedule
    from sandbox.harness import RunConfig, run_candidate
    from sandbox.tasks import get_task, load_task_module

    for module in payload.get("task_modules") or []:
        load_task_module(module["ref"], search_path=module.get("path"))
    program = load_program(payload["source"])
    task = get_task(payload["task"])
    configs = [RunConfig(float(lr), int(seed)) for lr, seed in payload["configs"]]
    halving = Schedule.from_json(payload["halving"]) if payload.get("halving") is not None else None
    results = run_candidate(program, task, configs, steps=payload.get("steps"),
                            device=payload.get("device") or device, batched=payload.get("batched", True),
                            halving=halving)
    return {"runs": _run_records(results)}


def _run_records(results) -> list[dict[str, Any]]:
    """``RunResult``s as the JSON records a job sends back."""
    return [
        {"losses": [float(x) for x in r.losses], "final_loss": float(r.final_loss), "initial_loss": float(r.initial_loss),
         "test_metric": None if r.test_metric is None else float(r.test_metric), "status": r.status,
         "stopped_at": r.stopped_at, "batched": r.batched,
         "val_steps": list(r.val_steps), "val_losses": [float(x) for x in r.val_losses]}
        for r in results
    ]


def evaluate_population_job(payload: dict, device: str = "cpu") -> dict[str, Any]:
    """Several candidates on one task in one batched pass (:func:`sandbox.population.run_population`).

    Payload: ``task``, ``steps``, ``device``, ``task_modules`` as for ``evaluate``, optional
    ``share`` (one of :data:`sandbox.population.SHARE_MODES`, default ``auto``), ``halving`` (one
    schedule for every program, as ``evaluate``'s), and ``programs``: ``[{"source", "configs": [[lr, seed], ...]}, ...]``.
    Returns ``{"programs": [...]}``, one entry per program in order: ``{"ok": true, "runs": [...],
    "shared": bool}`` with the very records ``evaluate`` returns for that program alone, or
    ``{"ok": false, "reason", "message"}`` with the failure ``evaluate`` reports for it. One
    program's failure (invalid code included) never fails the others; a job-level error (bad
    payload, unknown task) fails the job.
    """
    from sandbox.halving import Schedule
    from sandbox.harness import RunConfig
    from sandbox.population import train_population
    from sandbox.tasks import get_task, load_task_module

    for module in payload.get("task_modules") or []:
        load_task_module(module["ref"], search_path=module.get("path"))
    task = get_task(payload["task"])
    halving = Schedule.from_json(payload["halving"]) if payload.get("halving") is not None else None
    members = payload["programs"]
    if not isinstance(members, list) or not members:
        raise ValueError("an evaluate_population payload needs a non-empty list 'programs'")
    entries: list[dict[str, Any] | None] = [None] * len(members)
    programs, configs, where = [], [], []
    for index, member in enumerate(members):
        member_configs = [RunConfig(float(lr), int(seed)) for lr, seed in member["configs"]]
        try:
            program = load_program(member["source"])
        except Exception as exc:  # noqa: BLE001 (the failure `evaluate` reports for this program alone)
            reason, message = classify_exception(exc)
            entries[index] = {"ok": False, "reason": reason, "message": message[:2000]}
            continue
        programs.append(program)
        configs.append(member_configs)
        where.append(index)
    if programs:
        outcome = train_population(programs, task, configs, steps=payload.get("steps"),
                                   device=payload.get("device") or device, share=payload.get("share", "auto"),
                                   halving=halving)
        for index, result, shared in zip(where, outcome.results, outcome.shared):
            if isinstance(result, CandidateError):
                reason, message = classify_exception(result)
                entries[index] = {"ok": False, "reason": reason, "message": message[:2000]}
            else:
                entries[index] = {"ok": True, "runs": _run_records(result), "shared": shared}
    return {"programs": entries}


_JOBS: dict[str, JobFunction] = {
    "evaluate": evaluate_job,
    "evaluate_population": evaluate_population_job,
    "probe": probe_job,
    "validate": validate_job,
    "selftest": selftest_job,
}

JOB_NAMES = frozenset(_JOBS)
"""Names a controller may submit."""


def check_job_request(job_name: str, payload: dict, timeout: float) -> None:
    """Reject a caller's bad submission at once (unknown job, non-JSON payload, bad timeout):
    these are bugs in the caller, not candidate failures, so they raise ``ValueError``."""
    if job_name not in JOB_NAMES:
        raise ValueError(f"unknown job {job_name!r}; known jobs: {', '.join(sorted(JOB_NAMES))}")
    if not timeout > 0:
        raise ValueError(f"timeout must be positive, got {timeout!r}")
    try:
        json.dumps(payload)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"a job payload must be JSON data (str, numbers, lists, dicts): {exc}") from None

_OOM_TEXT = ("out of memory", "can't allocate memory", "cannot allocate memory", "bad_alloc")


def classify_exception(exc: BaseException) -> tuple[str, str]:
    """``(reason, one-line message)`` for an exception raised by a job."""
    if isinstance(exc, CandidateError):
        return exc.reason, str(exc)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    message = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    if isinstance(exc, MemoryError) or (isinstance(exc, RuntimeError) and any(t in text.lower() for t in _OOM_TEXT)):
        return "oom", message
    if isinstance(exc, RecursionError):
        return "crashed", "RecursionError: the program nests too deeply"
    return "crashed", message


def run_job(name: str, payload: dict, device: str = "cpu") -> dict[str, Any]:
    """Run job ``name`` and return its reply record ``{ok, reason, message, value}``; never raises
    for an ordinary exception (``SystemExit`` and ``KeyboardInterrupt`` still propagate)."""
    job = _JOBS.get(name)
    if job is None:
        return {"ok": False, "reason": "crashed", "message": f"unknown job {name!r}", "value": None}
    try:
        value = job(payload, device)
    except Exception as exc:  # candidate failures and bugs alike become a record
        reason, message = classify_exception(exc)
        if reason == "oom":
            # Give the memory back before the next job on this worker.
            gc.collect()
            if torch.cuda.is_initialized():
                torch.cuda.empty_cache()
        return {"ok": False, "reason": reason, "message": message[:2000], "value": None}
    return {"ok": True, "reason": None, "message": "", "value": value}
