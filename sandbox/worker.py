"""One sandboxed worker process: the controller-side handle and the in-worker main loop.

A worker is a long-lived ``python -m sandbox.worker`` subprocess. It imports torch once, then
runs many jobs, each named from the fixed registry in :mod:`sandbox.jobs`. Candidate code only
ever runs here, never in the controller.

Why a plain subprocess rather than ``multiprocessing``: the environment is built from an
allow-list of variables *before* the process exists (``/proc/self/environ`` of a spawned child would still show the
parent's variables however the child edits ``os.environ``), and no pickle crosses the
boundary in either direction. The protocol is one JSON object per line: jobs go in on the
worker's stdin, results come back on its original stdout. The worker points fd 1 at stderr
before running anything, so a stray print cannot forge a result.

Limits set inside the worker, before any job (see :class:`WorkerConfig`):

- address space (``RLIMIT_AS``), so a huge allocation fails with ``MemoryError`` (-> ``oom``)
  instead of taking the machine down; off by default on CUDA, whose driver reserves tens of GiB
  of virtual address space (GPU memory is capped by a per-process memory fraction instead);
- CPU time (``RLIMIT_CPU``, re-armed per job) as a backstop to the controller's wall-clock
  timeout, and no core dumps;
- no network: a fresh network namespace when the kernel allows one (root, or unprivileged user
  namespaces), and in every case ``socket`` creation replaced by a function that raises;
- ``PR_SET_NO_NEW_PRIVS`` and ``PR_SET_PDEATHSIG`` (the worker dies with its controller thread);
- ``torch.set_num_threads`` (1 by default) and, on CUDA, one pinned GPU.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

GIB = 1024**3
DEFAULT_ADDRESS_SPACE = 4 * GIB
"""Default ``RLIMIT_AS`` on CPU. Measured: torch 2.13 (CPU) plus scikit-learn peak at ~0.85 GiB
of virtual address space after import, so 4 GiB leaves room for the proxy tasks."""

MAX_MESSAGE_BYTES = 32 * 1024 * 1024
"""The largest reply line the controller reads; a longer one means a misbehaving worker."""

_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH", re.IGNORECASE)
_SECRET_PREFIXES = ("OPENAI_", "ANTHROPIC_", "AWS_", "HF_", "HUGGING_FACE_", "AZURE_", "GOOGLE_")
_ALLOWED_NAMES = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TMP", "TEMP", "TERM",
    "PYTHONPATH", "PYTHONHASHSEED", "PYTHONUTF8", "PYTHONIOENCODING", "PYTHONNOUSERSITE", "VIRTUAL_ENV",
    "LD_LIBRARY_PATH", "CUDA_HOME", "CUDA_PATH", "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER",
    "CUBLAS_WORKSPACE_CONFIG", "PYTORCH_CUDA_ALLOC_CONF", "NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES",
    "XDG_CACHE_HOME", "TORCH_HOME", "TORCHINDUCTOR_CACHE_DIR", "KMP_DUPLICATE_LIB_OK",
})
_ALLOWED_PREFIXES = ("LC_",)
"""Workers start from these variables only, never from the controller's whole environment:
a new secret under a name nobody thought of cannot leak. (Names that look like secrets are
dropped even from this list.)"""
_OOM_HINTS = ("memoryerror", "bad_alloc", "out of memory", "can't allocate memory", "cannot allocate memory")


@dataclass(frozen=True)
class JobResult:
    """The outcome of one job. ``reason`` is None when ``ok``, else a failure reason
    (``timeout``, ``oom``, ``nan``, ``shape_error``, ``crashed``, ...). ``value`` is plain JSON
    data; ``seconds`` is the controller-measured wall time of the round trip."""

    ok: bool
    reason: str | None
    message: str
    value: Any = None
    seconds: float = 0.0
    worker_pid: int | None = None

    @classmethod
    def failure(cls, reason: str, message: str, seconds: float = 0.0, worker_pid: int | None = None) -> JobResult:
        return cls(False, reason, message, None, seconds, worker_pid)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class WorkerStartError(RuntimeError):
    """A worker process could not start (a broken environment, not a candidate's fault)."""


@dataclass(frozen=True)
class WorkerConfig:
    """Limits and placement of one worker process.

    ``address_space_bytes``: ``RLIMIT_AS``; ``"auto"`` means 4 GiB on CPU and no limit on CUDA.
    ``gpu``: the host GPU index this worker is pinned to (it then sees only that GPU, as
    ``cuda:0``); None on CPU. ``cuda_memory_fraction``: passed to
    ``torch.cuda.set_per_process_memory_fraction``.
    """

    device: str = "cpu"
    gpu: int | None = None
    address_space_bytes: int | None | str = "auto"
    num_threads: int = 1
    cuda_memory_fraction: float = 0.9
    isolate_network: bool = True
    cpu_time_backstop: bool = True
    start_timeout: float = 180.0
    python: str = field(default_factory=lambda: sys.executable)

    def resolved_address_space(self) -> int | None:
        if self.address_space_bytes == "auto":
            return None if self.device.startswith("cuda") else DEFAULT_ADDRESS_SPACE
        if self.address_space_bytes is not None and not isinstance(self.address_space_bytes, int):
            raise ValueError(f"address_space_bytes must be an int, None or 'auto', got {self.address_space_bytes!r}")
        return self.address_space_bytes


def is_secret_name(name: str) -> bool:
    """True for environment variable names that may hold credentials."""
    return bool(_SECRET_NAME.search(name)) or name.upper().startswith(_SECRET_PREFIXES)


def is_allowed_name(name: str) -> bool:
    """True for the variables a worker inherits: what Python, torch and CUDA need to run."""
    upper = name.upper()
    return (upper in _ALLOWED_NAMES or upper.startswith(_ALLOWED_PREFIXES)) and not is_secret_name(name)


def scrubbed_environment(env: Mapping[str, str], config: WorkerConfig) -> dict[str, str]:
    """The environment a worker starts with: only the allow-listed variables of ``env`` (so a
    key under any name, e.g. a custom ``llm.api_key_env``, stays out by construction), plus the
    thread count, the GPU pin and a ``PYTHONPATH`` that finds this package."""
    clean = {name: value for name, value in env.items() if is_allowed_name(name)}
    root = str(Path(__file__).resolve().parent.parent)
    clean["PYTHONPATH"] = os.pathsep.join(p for p in (root, clean.get("PYTHONPATH", "")) if p)
    clean["PYTHONDONTWRITEBYTECODE"] = "1"
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        clean[name] = str(config.num_threads)
    if config.gpu is not None:
        # Pin through the driver: the worker cannot touch any other GPU. Respect the parent's
        # own CUDA_VISIBLE_DEVICES, whose i-th entry is what the parent calls cuda:i.
        visible = [d for d in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
        clean["CUDA_VISIBLE_DEVICES"] = visible[config.gpu] if config.gpu < len(visible) else str(config.gpu)
    return clean


# --- controller side -----------------------------------------------------------------------


class WorkerProcess:
    """Controller-side handle of one worker: start it, run jobs on it, kill it.

    Not thread-safe: one thread drives one worker (the pool gives each worker its own thread).
    The thread that creates the worker should outlive it, because the worker asks the kernel
    to kill it when that thread exits (``PR_SET_PDEATHSIG``).
    """

    def __init__(self, config: WorkerConfig | None = None):
        self.config = config or WorkerConfig()
        self.info: dict[str, Any] | None = None
        self._buffer = b""
        self._killed_by_us = False
        self._stderr = tempfile.TemporaryFile()
        self._started = time.monotonic()
        wire = {**asdict(self.config), "address_space_bytes": self.config.resolved_address_space()}
        self._proc = subprocess.Popen(
            [self.config.python, "-m", "sandbox.worker", json.dumps(wire)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=scrubbed_environment(os.environ, self.config),
            cwd=str(Path(__file__).resolve().parent.parent),
            start_new_session=True,  # Ctrl-C goes to the controller, which shuts workers down
            close_fds=True,
        )

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None

    def wait_ready(self, timeout: float | None = None) -> dict[str, Any]:
        """Block until the worker has imported torch and applied its limits; return its report
        (pid, isolation layers applied, start-up seconds). Raise :class:`WorkerStartError`."""
        if self.info is not None:
            return self.info
        limit = self.config.start_timeout if timeout is None else timeout
        line, problem = self._read_line(time.monotonic() + limit)
        message = None
        if line is not None:
            try:
                message = json.loads(line)
            except ValueError:
                message = None
        if not (isinstance(message, dict) and message.get("ready") is True):
            self.kill()
            detail = problem or "it sent no ready message"
            raise WorkerStartError(f"sandbox worker failed to start: {detail}; stderr: {self.stderr_tail() or '(empty)'}")
        message["startup_seconds"] = time.monotonic() - self._started
        self.info = message
        return message

    def run(self, job_name: str, payload: dict[str, Any], timeout: float) -> JobResult:
        """Run one job; never raises for anything the job or candidate does.

        On timeout the worker is killed (the caller starts a new one); on a reply that is not
        well-formed JSON the worker is killed too, because it can no longer be trusted.
        """
        self.wait_ready()
        # The worker is idle, so nobody writes its stderr now: start a fresh log for this job,
        # so a crash report quotes this job's last words, not an old warning.
        self._stderr.seek(0)
        self._stderr.truncate()
        start = time.monotonic()
        request = json.dumps({"job": job_name, "payload": payload, "timeout": timeout}) + "\n"
        try:
            assert self._proc.stdin is not None
            self._proc.stdin.write(request.encode())
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return self._death_result(start)
        line, problem = self._read_line(start + timeout)
        elapsed = time.monotonic() - start
        if line is None:
            if problem == "timeout":
                self.kill()
                return JobResult.failure(
                    "timeout", f"the job ran past its {timeout:g} s wall-clock limit; its worker was killed",
                    elapsed, self.pid)
            if problem == "eof":
                return self._death_result(start)
            self.kill()
            return JobResult.failure("crashed", f"worker protocol error: {problem}", elapsed, self.pid)
        return self._parse_reply(line, elapsed)

    def _parse_reply(self, line: bytes, elapsed: float) -> JobResult:
        # The reply comes from a process that ran untrusted code: plain JSON, checked field by field.
        try:
            reply = json.loads(line)
        except (ValueError, RecursionError):
            reply = None
        if not (isinstance(reply, dict) and isinstance(reply.get("ok"), bool)):
            self.kill()
            return JobResult.failure("crashed", "worker sent a malformed reply; it was killed", elapsed, self.pid)
        reason = reply.get("reason")
        message = reply.get("message")
        return JobResult(
            ok=reply["ok"],
            reason=None if reply["ok"] else (reason if isinstance(reason, str) else "crashed"),
            message=(message if isinstance(message, str) else "")[:2000],
            value=reply.get("value"),
            seconds=elapsed,
            worker_pid=self.pid,
        )

    def _death_result(self, start: float) -> JobResult:
        """Explain a worker that died mid-job: signal, exit code, and the tail of its stderr."""
        try:
            code = self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self._proc.returncode
        elapsed = time.monotonic() - start
        tail = self.stderr_tail()
        last = tail.strip().splitlines()[-1] if tail.strip() else ""
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            how = f"the worker was killed by {name}"
        else:
            how = f"the worker exited with code {code}"
        detail = f"{how}: {last}" if last else how
        if code == -signal.SIGXCPU:
            reason = "timeout"  # the RLIMIT_CPU backstop fired
        elif code == -signal.SIGKILL and not self._killed_by_us:
            reason, detail = "oom", detail + " (an unexpected SIGKILL is usually the kernel's out-of-memory killer)"
        elif any(hint in tail.lower() for hint in _OOM_HINTS):
            reason = "oom"
        else:
            reason = "crashed"
        return JobResult.failure(reason, detail, elapsed, self.pid)

    def _read_line(self, deadline: float) -> tuple[bytes | None, str | None]:
        """One reply line, or (None, "timeout" | "eof" | what went wrong)."""
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        poller = select.poll()  # not select.select: a busy controller may hold fds above 1024
        poller.register(fd, select.POLLIN)
        while b"\n" not in self._buffer:
            if len(self._buffer) > MAX_MESSAGE_BYTES:
                return None, f"a reply longer than {MAX_MESSAGE_BYTES} bytes"
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None, "timeout"
            if not poller.poll(max(1, int(remaining * 1000))):
                continue
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return None, "eof"
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line, None

    def stderr_tail(self, limit: int = 2000) -> str:
        """The last ``limit`` characters the worker wrote to stderr (for diagnosing crashes)."""
        try:
            size = self._stderr.seek(0, os.SEEK_END)
            self._stderr.seek(max(0, size - limit))
            return self._stderr.read().decode(errors="replace")
        except (OSError, ValueError):
            return ""

    def kill(self) -> None:
        """SIGKILL the worker's whole process group and reap it."""
        self._killed_by_us = True
        if self._proc.poll() is None:
            try:
                os.killpg(self._proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self._proc.kill()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def close(self, grace: float = 2.0) -> None:
        """Ask the worker to exit (EOF on its stdin), kill it after ``grace`` seconds."""
        if self._proc.poll() is None:
            try:
                assert self._proc.stdin is not None
                self._proc.stdin.close()
                self._proc.wait(timeout=grace)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill()
        for stream in (self._proc.stdin, self._proc.stdout, self._stderr):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass


# --- worker side ---------------------------------------------------------------------------

_CLONE_NEWNET = 0x40000000
_CLONE_NEWUSER = 0x10000000
_PR_SET_PDEATHSIG = 1
_PR_SET_NO_NEW_PRIVS = 38


def _libc():
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _isolate_network() -> str:
    """Move into a fresh network namespace (only a down loopback inside). Must run while the
    process is still single-threaded. Returns what worked, for the ready report."""
    import ctypes

    libc = _libc()
    if libc.unshare(_CLONE_NEWNET) == 0:
        return "network namespace"
    first = os.strerror(ctypes.get_errno())
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET) == 0:
        # Map our own ids so files keep their owners; best effort, isolation holds without it.
        try:
            Path("/proc/self/setgroups").write_text("deny")
            Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
            Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")
        except OSError:
            pass
        return "user and network namespace"
    return f"unavailable ({first}; user namespace: {os.strerror(ctypes.get_errno())})"


def _block_sockets() -> None:
    """Make every way to open a socket from Python raise, whatever the namespace allows."""
    import _socket
    import socket

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError("network access is disabled in sandbox workers")

    class BlockedSocket(socket.socket):  # a subclass keeps isinstance checks in libraries working
        def __init__(self, *args: Any, **kwargs: Any):
            refuse()

    class BlockedRawSocket(_socket.socket):
        def __init__(self, *args: Any, **kwargs: Any):
            refuse()

    socket.socket = BlockedSocket  # type: ignore[misc]
    socket.SocketType = BlockedSocket  # type: ignore[misc]
    _socket.socket = BlockedRawSocket  # type: ignore[misc]
    _socket.SocketType = BlockedRawSocket  # type: ignore[misc]
    for name in ("socketpair", "fromfd", "create_connection", "create_server", "getaddrinfo", "gethostbyname"):
        setattr(socket, name, refuse)
        if hasattr(_socket, name):
            setattr(_socket, name, refuse)


def _apply_limits(config: dict[str, Any]) -> dict[str, Any]:
    """Everything that must happen before torch is imported (threads, address space)."""
    import resource

    report: dict[str, Any] = {}
    libc = _libc()
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    report["no_new_privs"] = libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a segfaulting candidate leaves no core file
    if config.get("isolate_network", True):
        report["network"] = _isolate_network()
    limit = config.get("address_space_bytes")
    if limit:
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit if hard == resource.RLIM_INFINITY else min(limit, hard)))
    report["address_space_bytes"] = limit
    return report


def _arm_cpu_backstop(timeout: float, threads: int) -> None:
    """Let the kernel stop a job that the controller somehow failed to stop (SIGXCPU)."""
    import resource

    used = resource.getrusage(resource.RUSAGE_SELF)
    spent = used.ru_utime + used.ru_stime
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = int(spent + timeout * max(1, threads) * 2 + 10)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def main(argv: list[str] | None = None) -> None:
    """Worker entry point: set limits, import torch, report ready, then serve jobs until EOF."""
    argv = sys.argv[1:] if argv is None else argv
    config = json.loads(argv[0]) if argv else {}
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the controller decides when workers stop
    # Private reply channel; fd 1 becomes stderr so nothing else can write a reply line.
    replies = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    requests = sys.stdin.buffer

    report = _apply_limits(config)
    import torch

    threads = int(config.get("num_threads", 1))
    torch.set_num_threads(threads)
    device = "cpu"
    if str(config.get("device", "cpu")).startswith("cuda"):
        device = "cuda:0"  # the one GPU CUDA_VISIBLE_DEVICES left visible
        if torch.cuda.is_available():
            torch.cuda.set_per_process_memory_fraction(float(config.get("cuda_memory_fraction", 0.9)), 0)
    from sandbox import jobs

    _block_sockets()
    report["socket_blocked"] = True
    report.update(ready=True, pid=os.getpid(), device=device, threads=threads, torch=torch.__version__)
    replies.write(json.dumps(report).encode() + b"\n")

    for line in requests:
        try:
            request = json.loads(line)
            name, payload, timeout = request["job"], request["payload"], float(request["timeout"])
        except (ValueError, KeyError, TypeError) as exc:
            reply: dict[str, Any] = {"ok": False, "reason": "crashed", "message": f"bad request: {exc}", "value": None}
        else:
            if config.get("cpu_time_backstop", True):
                _arm_cpu_backstop(timeout, threads)
            reply = jobs.run_job(name, payload, device)
        try:
            data = json.dumps(reply).encode()
        except (TypeError, ValueError) as exc:
            data = json.dumps({"ok": False, "reason": "crashed", "message": f"job returned a non-JSON value: {exc}",
                               "value": None}).encode()
        replies.write(data + b"\n")


if __name__ == "__main__":
    main()
