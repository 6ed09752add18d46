"""Train a candidate program on a proxy task, for many (learning rate, seed) configs at once.

One run of a candidate on a task with config (lr, seed) and budget T is::

    params = task.init_params(seed)
    state  = {name: init(p) for name, p in params.items()}
    for step in 1..T:
        grads = grad(task.loss)(params, task.batch(step, seed))
        hp.lr = lr * task.lr_factor(step, T)               # the other HPARAMS as the program set them
        for each name:  delta, state[name] = update(grads[name], params[name], state[name], step, hp)
                        params[name] = params[name] + delta
        losses[step] = task.loss(params, task.eval_batch())  # the scoring loss after the step
        if step in val_steps(T): val[step] = task.val_loss(params)  # the validation value

The *batched* path runs all configs as one: every tensor gets a leading config dimension and
``torch.func.vmap`` maps the gradient and the update over it, with ``hp.lr`` a 0-d tensor per
config. The *sequential* path is the readable reference: one config at a time, no vmap. Both
pass ``hp.lr`` as a float32 0-d tensor and call the same functions, so they agree to float
rounding: bit for bit on most tasks; where a matmul runs as a different kernel under vmap, to
~1e-6 relative, except that a run at a learning rate on the edge of stability is chaotic and
amplifies even that (teacher_student at lr=1). A program that vmap cannot trace (Python ``if``
on a tensor's value, say) falls back to the sequential path automatically.

On CPU the batched path takes two shortcuts past vmap, each only where it gives the same bits
(the per-op bookkeeping of vmap, not arithmetic, is most of a small task's step): the gradient
by plain autograd through the vmapped loss where the task declares that exact
(``Task.exact_stacked_grad``), and the update called once on the stacked rows, ``hp.lr`` a
column of rates, for a rule whose tensors only meet correctly rounded elementwise ops
(:func:`sandbox.rule_analysis.position_independent`). Elsewhere the step is one vmapped call.
Every vmapped call goes through :func:`sandbox.lean_vmap.lean_vmap`, vmap's own primitives
without its per-call Python checks (the same bits; ~50 us a call saved, a quarter of a quick
campaign's CPU time).

For a full-batch task (``task.stochastic`` False) the training batch is the evaluation batch,
so the loss computed with step t+1's gradient *is* the scoring loss after step t: it is
recorded from there instead of paying for a second forward pass.

The validation value (what scores are computed on, AlgoPerf-style) is measured at the start
and every ``T // 50`` steps (:func:`~sandbox.tasks.base.val_steps`), in the same pass.

A run stops early when its scoring loss becomes NaN/inf (status ``nan``) or rises above
``DIVERGENCE_FACTOR`` times its starting loss (status ``diverged``). The batched path drops
stopped configs from the batch and ends when none is left.

*Successive halving* (``halving``, a :class:`~sandbox.halving.Schedule`): at each rung step (a
validation step) the configs, grouped by learning rate (a group's value: the mean over its
seeds of :func:`sandbox.halving.partial_value`), are cut to the schedule's survivors
(:func:`sandbox.halving.rung_survivors`, over every LR still in the race, stopped ones counting
as worst); the others stop there with status ``pruned`` (``stopped_at`` = the rung step, their
curves the prefix of the full run up to and including it). Survivors are continued, not
restarted, so their records are the full runs' records: bit for bit wherever a config's row does
not depend on the batch's size (it does on a few matmul tasks under MKL, as when a diverged run
leaves the batch). The batched path drops pruned rows like stopped ones; the sequential path
trains every config to the rung, one at a time, keeps their parameters and state, decides,
and continues the survivors. A full-batch run learns step t's loss one step later, so it
decides after step t + 1 (the pruned configs' extra step is discarded).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache, partial

import torch
from torch.func import grad, grad_and_value

from sandbox.contract import (
    CandidateError,
    HParams,
    Program,
    executable_module,
    run_init,
    run_update,
)
from sandbox.halving import PRUNED, Schedule, rung_survivors
from sandbox.lean_vmap import lean_vmap
from sandbox.rule_analysis import position_independent
from sandbox.stacked import FlatLayout, stacked_grads, stacked_update
from sandbox.tasks.base import Batch, Params, Task, val_steps

STATUSES = ("ok", "nan", "diverged", PRUNED)

DIVERGENCE_FACTOR = 100.0
"""A run whose scoring loss exceeds this multiple of its starting loss has diverged. Losses are
non-negative with infimum ~0, so the test is scale-free. A factor of 10 also stopped runs that
spike at high learning rates and then recover (cross-entropy of a few confident mistakes);
a run 100x above its start has lost everything it learned and stopping it costs nothing."""

CHECK_EVERY = {"cpu": 1, "cuda": 16}
"""Steps between divergence checks: each check copies losses to the host, which stalls a GPU.
The results do not depend on it (a run's losses are cut at its first bad step either way)."""


@dataclass(frozen=True)
class RunConfig:
    """One training run: a base learning rate (scaled by the task's schedule) and a seed."""

    lr: float
    seed: int


@dataclass(frozen=True)
class RunResult:
    """The outcome of one config. ``losses[t - 1]`` is the scoring loss after step t."""

    lr: float
    seed: int
    status: str
    """``ok``, ``nan`` (the loss became NaN/inf), ``diverged`` (see DIVERGENCE_FACTOR) or
    ``pruned`` (halted at a successive-halving rung: not a candidate, not a finished run)."""
    losses: list[float]
    """One scoring loss per step run; for a stopped run the last entry is the offending one."""
    initial_loss: float
    """The scoring loss of the starting parameters."""
    val_steps: list[int]
    """The steps after which the validation value was measured (0 = the start); a stopped run's
    list ends before the step it stopped at."""
    val_losses: list[float]
    """``val_losses[k]`` is the task's validation value after step ``val_steps[k]``."""
    test_metric: float | None
    """The task's test metric of the final parameters; None for a run that did not finish."""
    stopped_at: int | None
    """The step at which a failed run was stopped (a pruned one: its rung step, the last step it
    trained); None for ``ok``."""
    batched: bool
    """Whether the run went through the vmapped path (False after a fallback)."""

    @property
    def final_loss(self) -> float:
        return self.losses[-1] if self.losses else self.initial_loss

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def resolve_device(device: str | torch.device) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N`` as a torch device; raises if CUDA is asked for but absent.

    ``auto`` is the caller's business (it knows whether a GPU is *wanted*); here it is an error.
    """
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; use 'cpu', 'cuda' or 'cuda:N'") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {device!r} was requested but CUDA is not available on this machine; use 'cpu'")
        index = resolved.index or 0
        if index >= torch.cuda.device_count():
            raise RuntimeError(f"device {device!r} was requested but this machine has {torch.cuda.device_count()} CUDA device(s)")
        return torch.device("cuda", index)
    if resolved.type != "cpu":
        raise ValueError(f"unsupported device {device!r}; use 'cpu', 'cuda' or 'cuda:N'")
    return resolved


def run_candidate(
    program: Program,
    task: Task,
    configs: Sequence[RunConfig],
    *,
    steps: int | None = None,
    device: str | torch.device = "cpu",
    batched: bool = True,
    hparam_overrides: Mapping[str, float] | None = None,
    halving: Schedule | None = None,
) -> list[RunResult]:
    """Train ``program`` on ``task`` once per config; results come back in config order.

    ``steps`` overrides the task's budget (the schedule stretches to fit). ``hparam_overrides``
    replaces HPARAMS values other than ``lr`` (which comes from each config). ``halving``: cut
    the learning rates at its rungs (module docstring); the configs should be a whole grid, each
    LR on the same seeds. Raises ``CandidateError`` when the program breaks the contract or crashes.
    """
    run = _Run(program, task, configs, steps, resolve_device(device), hparam_overrides, halving)
    if batched and len(run.configs) > 1:
        try:
            return run.batched()
        except Exception:
            # vmap could not trace this program (data-dependent control flow, an op without a
            # batching rule) or it broke the contract; the sequential path is the authority on
            # both, and raises the candidate's own error if there is one.
            run = _Run(program, task, configs, steps, run.device, hparam_overrides, halving)
    return run.sequential()


# --- calling candidate code ----------------------------------------------------------------------


_SHAPE_WORDS = ("shape", "size of tensor", "sizes", "dimension", "mat1 and mat2", "broadcast")


@lru_cache(maxsize=256)
def _stackable_update(source: str) -> bool:
    """Whether the rule's update may run on the stacked rows (see sandbox.stacked.stacked_update).
    Memoised: a worker runs one program on task after task, and the analysis re-parses the
    source (~2 ms, next to a job's few hundred)."""
    return position_independent(executable_module(source), frozenset({"lr"}))


def _candidate_failure(exc: Exception, where: str) -> CandidateError:
    """Name a crash inside candidate code by one of the contract's failure reasons."""
    if isinstance(exc, CandidateError):
        return exc
    text = f"{where} raised {type(exc).__name__}: {exc}"[:400]
    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return CandidateError("oom", text)
    if any(word in str(exc) for word in _SHAPE_WORDS):
        return CandidateError("shape_error", text)
    return CandidateError("crashed", text)


def _init_states(program: Program, params: Params) -> dict[str, dict]:
    try:
        return {name: run_init(program, param) for name, param in params.items()}
    except Exception as exc:
        raise _candidate_failure(exc, "init") from exc


def _apply_update(program: Program, grads: Params, params: Params, states: dict[str, dict], step: int,
                  hp: HParams) -> tuple[Params, dict[str, dict]]:
    new_params, new_states = {}, {}
    for name, param in params.items():
        try:
            delta, state = run_update(program, grads[name], param, states[name], step, hp)
        except Exception as exc:
            raise _candidate_failure(exc, f"update (parameter `{name}`, step {step})") from exc
        # A float64 delta (from float64 scalar maths) must not silently promote the parameter.
        new_params[name] = param + delta.to(param.dtype)
        new_states[name] = state
    return new_params, new_states


def _train_step(task: Task, program: Program, hp: HParams, step: int, params: Params, states: dict[str, dict],
                batch: Batch, lr: torch.Tensor) -> tuple[Params, dict[str, dict]]:
    grads = grad(task.loss)(params, batch)
    return _apply_update(program, grads, params, states, step, hp.replace(lr=lr))


def _train_step_with_loss(task: Task, program: Program, hp: HParams, step: int, params: Params,
                          states: dict[str, dict], batch: Batch, lr: torch.Tensor
                          ) -> tuple[Params, dict[str, dict], torch.Tensor]:
    """As _train_step, also returning the loss at the parameters the gradient was taken at."""
    grads, value = grad_and_value(task.loss)(params, batch)
    new_params, new_states = _apply_update(program, grads, params, states, step, hp.replace(lr=lr))
    return new_params, new_states, value


# --- bookkeeping shared by both paths ---------------------------------------------------------------


class _Monitor:
    """Per-config loss curves and the early-stopping rule."""

    def __init__(self, count: int):
        self.losses: list[list[float]] = [[] for _ in range(count)]
        self.initial: list[float] = [math.nan] * count
        self.status = ["ok"] * count
        self.stopped_at: list[int | None] = [None] * count
        self.val_steps: list[list[int]] = [[] for _ in range(count)]
        self.val: list[list[float]] = [[] for _ in range(count)]

    def record_val(self, index: int, step: int, value: float) -> None:
        """Record config ``index``'s validation value after ``step``, unless the run stopped at or
        before that step (its parameters there are the failed ones)."""
        stopped = self.stopped_at[index]
        if stopped is not None and step >= stopped:
            return
        self.val_steps[index].append(step)
        self.val[index].append(value)

    def record(self, index: int, step: int, value: float) -> None:
        """Record config ``index``'s scoring loss after ``step`` (0 = the starting loss)."""
        if self.stopped_at[index] is not None:
            return  # computed in the same chunk as the failure; not part of the run
        if step == 0:
            if not (math.isfinite(value) and value > 0):
                raise RuntimeError(f"task starting loss is {value}; tasks must start at a finite positive loss")
            self.initial[index] = value
            return
        assert len(self.losses[index]) == step - 1, (index, step, len(self.losses[index]))
        self.losses[index].append(value)
        if not math.isfinite(value):
            self.status[index], self.stopped_at[index] = "nan", step
        elif value > DIVERGENCE_FACTOR * self.initial[index]:
            self.status[index], self.stopped_at[index] = "diverged", step

    def running(self, index: int) -> bool:
        return self.stopped_at[index] is None

    def prune(self, index: int, step: int) -> None:
        """Halt a running config after ``step`` (a rung): its records so far stand, nothing after."""
        self.status[index], self.stopped_at[index] = PRUNED, step


@dataclass
class _Progress:
    """One config's run in progress on the sequential path (kept across a rung)."""

    params: Params | None = None
    states: dict | None = None
    pending: list = field(default_factory=list)  # (step, loss) awaiting the divergence check
    pending_val: list = field(default_factory=list)  # (step, validation value)


class _DeviceCache:
    """Moves task tensors to the device. The evaluation batch's tensors (data sets, fixed bases)
    are moved once and remembered, so a training batch that reuses them costs no copy; every
    other tensor (a fresh minibatch) is moved on each use and not kept."""

    def __init__(self, device: torch.device):
        self.device = device
        self._kept: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, tensor: torch.Tensor, keep: bool = False) -> torch.Tensor:
        if tensor.device == self.device:
            return tensor
        hit = self._kept.get(id(tensor))
        if hit is not None and hit[0] is tensor:
            return hit[1]
        moved = tensor.to(self.device)
        if keep:
            self._kept[id(tensor)] = (tensor, moved)  # holding the source keeps its id from being reused
        return moved

    def batch(self, batch: Batch, keep: bool = False) -> Batch:
        return {key: self(value, keep) for key, value in batch.items()}


class _Run:
    """Everything one ``run_candidate`` call needs, and the two ways of carrying it out."""

    def __init__(self, program: Program, task: Task, configs: Sequence[RunConfig], steps: int | None,
                 device: torch.device, hparam_overrides: Mapping[str, float] | None,
                 halving: Schedule | None = None):
        self.configs = [self._check_config(c) for c in configs]
        if not self.configs:
            raise ValueError("run_candidate needs at least one RunConfig")
        self.steps = task.steps if steps is None else int(steps)
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        overrides = dict(hparam_overrides or {})
        if "lr" in overrides:
            raise ValueError("the learning rate comes from each RunConfig; do not pass it in hparam_overrides")
        unknown = sorted(set(overrides) - set(program.hparams))
        if unknown:
            raise ValueError(f"hparam_overrides {unknown} are not in the program's HPARAMS {sorted(program.hparams)}")
        self.program, self.task, self.device = program, task, device
        self.hp = program.hp(**{k: float(v) for k, v in overrides.items()})
        self.to_device = _DeviceCache(device)
        self.eval_batch = self.to_device.batch(task.eval_batch(), keep=True)
        # lr_table[t - 1, i]: config i's learning rate at step t, rounded to float32 once, here,
        # so that both paths hand the candidate the very same number.
        factors = [task.lr_factor(t, self.steps) for t in range(1, self.steps + 1)]
        self.lr_table = torch.tensor([[c.lr * f for c in self.configs] for f in factors], dtype=torch.float32,
                                     device=device)
        self.monitor = _Monitor(len(self.configs))
        self.check_every = CHECK_EVERY.get(device.type, 1)
        self.val_at = frozenset(val_steps(self.steps))
        self.halving = halving
        rungs = halving.rung_points(sorted(self.val_at), self.steps) if halving is not None else []
        # decide_at[s] = the rung decided at the check after step s: the rung's own step, or the
        # next one for a full-batch task (whose step-t loss is known one step later).
        self.decide_at = {at + (0 if task.stochastic else 1): at for at in rungs}
        self.alive_lrs = sorted({c.lr for c in self.configs})
        # The batched path's two shortcuts past vmap (module docstring), on CPU, where they were
        # shown bit-identical; on CUDA both stay under vmap until measured on a GPU.
        on_cpu = device.type == "cpu"
        self.stack_grads = on_cpu and task.exact_stacked_grad
        self.stack_update = on_cpu and _stackable_update(program.source)

    @staticmethod
    def _check_config(config: RunConfig) -> RunConfig:
        if not isinstance(config, RunConfig):
            raise TypeError(f"configs must be RunConfig(lr, seed), got {config!r}")
        if not (math.isfinite(config.lr) and config.lr > 0):
            raise ValueError(f"learning rate must be a positive number, got {config.lr}")
        return config

    def _init_params(self, seed: int) -> Params:
        return {name: p.to(self.device, torch.float32) for name, p in self.task.init_params(seed).items()}

    def _eval_loss(self, params: Params) -> torch.Tensor:
        return self.task.loss(params, self.eval_batch)

    def _val_loss(self, params: Params) -> torch.Tensor:
        return self.task.val_loss(params)

    # --- the sequential reference path -------------------------------------------------------------

    def sequential(self) -> list[RunResult]:
        runs = [_Progress() for _ in self.configs]
        with torch.no_grad():
            for index, config in enumerate(self.configs):
                self._start_one(config, runs[index])
            done = 0
            # One segment per rung (every config to the rung's decision step, then the cut), then
            # the rest of the budget: without rungs, each config trains start to end in turn.
            for end, at in [*sorted(self.decide_at.items()), (self.steps, None)]:
                for index, config in enumerate(self.configs):
                    if self.monitor.running(index):
                        self._advance_one(index, config, runs[index], done, end)
                if at is not None:
                    self._rung(at)
                done = end
        return self._results([r.params for r in runs], batched=False)

    def _start_one(self, config: RunConfig, run: _Progress) -> None:
        run.params = self._init_params(config.seed)
        run.states = _init_states(self.program, run.params)
        if self.task.stochastic:
            run.pending.append((0, self._eval_loss(run.params)))
        run.pending_val.append((0, self._val_loss(run.params)))

    def _advance_one(self, index: int, config: RunConfig, run: _Progress, start: int, end: int) -> None:
        """Train config ``index`` from after step ``start`` through step ``end``, checking at ``end``."""
        task, monitor, full_batch = self.task, self.monitor, not self.task.stochastic
        params, states, pending, pending_val = run.params, run.states, run.pending, run.pending_val
        for step in range(start + 1, end + 1):
            lr = self.lr_table[step - 1, index]
            if full_batch:
                params, states, value = _train_step_with_loss(task, self.program, self.hp, step, params, states,
                                                              self.eval_batch, lr)
                pending.append((step - 1, value))
            else:
                batch = self.to_device.batch(task.batch(step, config.seed))
                params, states = _train_step(task, self.program, self.hp, step, params, states, batch, lr)
                pending.append((step, self._eval_loss(params)))
            if step in self.val_at:
                pending_val.append((step, self._val_loss(params)))
            if step % self.check_every == 0 or step == end:
                self._flush_one(index, pending, pending_val)
                if not monitor.running(index):
                    break
        run.params, run.states = params, states
        if full_batch and end == self.steps and monitor.running(index):
            pending.append((self.steps, self._eval_loss(params)))
            self._flush_one(index, pending, pending_val)

    def _rung(self, at: int) -> None:
        """Cut the learning rates still in the race to the schedule's survivors at step ``at``
        (every config's records through ``at`` are in the monitor); prune the others' runs."""
        monitor = self.monitor
        runs = {lr: [{"val_steps": monitor.val_steps[i], "val_losses": monitor.val[i],
                      "stopped_at": monitor.stopped_at[i], "status": monitor.status[i]}
                     for i, c in enumerate(self.configs) if c.lr == lr] for lr in self.alive_lrs}
        self.alive_lrs = rung_survivors(runs, at, self.halving)
        for index, config in enumerate(self.configs):
            if config.lr not in self.alive_lrs and monitor.running(index):
                monitor.prune(index, at)

    def _flush_one(self, index: int, pending: list[tuple[int, torch.Tensor]],
                   pending_val: list[tuple[int, torch.Tensor]]) -> None:
        values = torch.stack([v for _, v in pending]).tolist() if pending else []
        for (step, _), value in zip(pending, values):
            self.monitor.record(index, step, value)
        pending.clear()
        self._flush_val(index, pending_val)

    def _flush_val(self, index: int, pending_val: list[tuple[int, torch.Tensor]]) -> None:
        """Record the validation values whose step's scoring loss is known (a full-batch run
        learns step t's loss one step later): whether the run was still going there decides."""
        monitor = self.monitor
        known = len(monitor.losses[index])
        ready = [(step, v) for step, v in pending_val if step <= known or not monitor.running(index)]
        if not ready:
            return
        for (step, _), value in zip(ready, torch.stack([v for _, v in ready]).tolist()):
            monitor.record_val(index, step, value)
        del pending_val[:len(ready)]

    # --- the batched (vmapped) path -----------------------------------------------------------------

    def batched(self) -> list[RunResult]:
        with torch.no_grad():
            finals = self._train_batched()
        return self._results(finals, batched=True)

    def _train_batched(self) -> list[Params]:
        monitor, full_batch = self.monitor, not self.task.stochastic
        seeds = sorted({c.seed for c in self.configs})
        # active[j] is the config index held in row j of every stacked tensor.
        active = list(range(len(self.configs)))
        seed_rows = torch.tensor([seeds.index(c.seed) for c in self.configs], device=self.device)
        per_seed = {seed: self._init_params(seed) for seed in seeds}
        params = {name: torch.stack([per_seed[c.seed][name] for c in self.configs]) for name in per_seed[seeds[0]]}
        states = lean_vmap(partial(_init_states, self.program))(params)
        layout = FlatLayout(params, states)
        finals: list[Params | None] = [None] * len(self.configs)
        eval_loss, val_loss = lean_vmap(self._eval_loss), lean_vmap(self._val_loss)
        pending: list[tuple[int, list[int], torch.Tensor]] = []  # (step, configs, losses)
        pending_val: list[tuple[int, list[int], torch.Tensor]] = []  # (step, configs, validation values)
        if not full_batch:
            pending.append((0, list(active), eval_loss(params)))
        pending_val.append((0, list(active), val_loss(params)))
        rows = torch.arange(len(active), device=self.device)  # == active, as a tensor
        for step in range(1, self.steps + 1):
            lr = self.lr_table[step - 1, rows]
            if full_batch:
                batch, batch_dims = self.eval_batch, None
            else:
                batch, batch_dims = self._stacked_batch(step, seeds, seed_rows[rows])
            if self.stack_grads or self.stack_update:
                params, states, value = self._split_step(layout, step, params, states, batch, batch_dims, lr)
            else:
                fn = partial(self._flat_step, layout, step, None if full_batch else self.eval_batch)
                flat, value = lean_vmap(fn, in_dims=(0, batch_dims, 0))(layout.flatten(params, states), batch, lr)
                params, states = layout.unflatten(flat)
            if full_batch:
                pending.append((step - 1, list(active), value))
            else:
                pending.append((step, list(active), value if value is not None else eval_loss(params)))
            if step in self.val_at:
                pending_val.append((step, list(active), val_loss(params)))
            rung = self.decide_at.get(step)
            if step % self.check_every == 0 or step == self.steps or rung is not None:
                # A full-batch run learns step t's loss one step later: its validation values up
                # to there are decided, the rest wait for the next check.
                self._flush_batched(pending, pending_val, known=step - 1 if full_batch else step)
                if rung is not None:
                    self._rung(rung)  # pruned configs leave the batch below, as stopped ones do
                keep = [j for j, i in enumerate(active) if monitor.running(i)]
                if len(keep) < len(active):
                    for j, i in enumerate(active):
                        if j not in keep:
                            finals[i] = {name: p[j] for name, p in params.items()}
                    if not keep:
                        self._flush_batched([], pending_val, known=self.steps)
                        return finals
                    index = torch.tensor(keep, device=self.device)
                    params = {name: p[index] for name, p in params.items()}
                    states = {name: {key: v[index] for key, v in state.items()} for name, state in states.items()}
                    active = [active[j] for j in keep]
                    rows = rows[index]
        if full_batch:
            pending.append((self.steps, list(active), eval_loss(params)))
        self._flush_batched(pending, pending_val, known=self.steps)
        for j, i in enumerate(active):
            finals[i] = {name: p[j] for name, p in params.items()}
        return finals

    def _flat_step(self, layout: FlatLayout, step: int, eval_batch: Batch | None, flat: tuple[torch.Tensor, ...],
                   batch: Batch, lr: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """One row's training step under vmap, on the flat layout, and its scoring loss: for a
        full-batch task the loss at the parameters the gradient was taken at (``batch`` is the
        evaluation batch), otherwise the loss on ``eval_batch`` after the step, in the same call
        (a second vmapped call per step cost another round of vmap's per-call overhead)."""
        params, states = layout.unflatten(flat)
        if eval_batch is None:
            params, states, value = _train_step_with_loss(self.task, self.program, self.hp, step, params, states,
                                                          batch, lr)
        else:
            params, states = _train_step(self.task, self.program, self.hp, step, params, states, batch, lr)
            value = self.task.loss(params, eval_batch)
        return layout.flatten(params, states), value

    def _split_step(self, layout: FlatLayout, step: int, params: Params, states: dict[str, dict], batch: Batch,
                    batch_dims, lr: torch.Tensor) -> tuple[Params, dict[str, dict], torch.Tensor | None]:
        """One step of every row as gradient, then update, each past vmap where it may be:
        returns the new parameters and states and, for a full-batch task, the loss at the
        parameters the gradient was taken at (None for a stochastic one: the caller measures the
        scoring loss after the step)."""
        task, full_batch = self.task, not self.task.stochastic
        if self.stack_grads:
            grads, value = stacked_grads(task, params, batch, batch_dims)
        elif full_batch:
            grads, value = lean_vmap(grad_and_value(task.loss), in_dims=(0, batch_dims))(params, batch)
        else:
            grads, value = lean_vmap(grad(task.loss), in_dims=(0, batch_dims))(params, batch), None
        if self.stack_update:
            params, states = stacked_update(self.program, grads, params, states, step, self.hp, lr)
        else:
            def update(flat, grad_rows, lr):
                row_params, row_states = layout.unflatten(flat)
                new = _apply_update(self.program, dict(zip(layout.names, grad_rows)), row_params, row_states, step,
                                    self.hp.replace(lr=lr))
                return layout.flatten(*new)
            flat = lean_vmap(update)(layout.flatten(params, states), tuple(grads[name] for name in layout.names), lr)
            params, states = layout.unflatten(flat)
        return params, states, value if full_batch else None

    def _stacked_batch(self, step: int, seeds: list[int], seed_rows: torch.Tensor) -> tuple[Batch, dict]:
        """This step's batch for every active config, and the vmap in_dims saying which entries
        are per config (stacked along dim 0) and which are shared (the same tensor for all seeds,
        like a data set or a fixed basis: passed once, unstacked)."""
        by_seed = [self.task.batch(step, seed) for seed in seeds]
        batch, dims = {}, {}
        for key, first in by_seed[0].items():
            if all(b[key] is first for b in by_seed):
                batch[key], dims[key] = self.to_device(first), None
            else:
                stacked = self.to_device(torch.stack([b[key] for b in by_seed]))
                batch[key], dims[key] = stacked[seed_rows], 0
        return batch, dims

    def _flush_batched(self, pending: list[tuple[int, list[int], torch.Tensor]],
                       pending_val: list[tuple[int, list[int], torch.Tensor]], known: int) -> None:
        """Record the pending losses, then the validation values of steps up to ``known``."""
        for entries, record in ((pending, self.monitor.record), (None, self.monitor.record_val)):
            if entries is None:
                count = sum(1 for step, _, _ in pending_val if step <= known)
                entries = pending_val[:count]
                del pending_val[:count]
            if not entries:
                continue
            values = [v.tolist() for v in torch.cat([v for _, _, v in entries]).split([len(a) for _, a, _ in entries])]
            for (step, active, _), row in zip(entries, values):
                for index, value in zip(active, row):
                    record(index, step, value)
        pending.clear()

    # --- results ------------------------------------------------------------------------------------

    def _results(self, finals: Sequence[Params], batched: bool) -> list[RunResult]:
        monitor, results = self.monitor, []
        for index, (config, params) in enumerate(zip(self.configs, finals)):
            status = monitor.status[index]
            metric = None
            if status == "ok":
                cpu_params = {name: p.detach().cpu() for name, p in params.items()}
                metric = float(self.task.test_metric(cpu_params, config.seed))
            results.append(RunResult(
                lr=config.lr, seed=config.seed, status=status, losses=monitor.losses[index],
                initial_loss=monitor.initial[index], val_steps=monitor.val_steps[index], val_losses=monitor.val[index], test_metric=metric, stopped_at=monitor.stopped_at[index],
                batched=batched))
        return results
