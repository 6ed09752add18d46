"""Train several candidate programs on one task in one batched pass (population batching).

:func:`~sandbox.harness.run_candidate` already trains one program's (learning rate, seed) grid
as one vmapped model. Here the grids of several programs share that model: every parameter is
stacked over all their configs (programs x configs rows), and each step does

    grads  = vmap(grad(task.loss))(params, batch)          # one forward/backward for every row
    for each program p:                                     # its own rows, states, HPARAMS, lr table
        params[p], states[p] = vmap(p.update)(grads[p], params[p], states[p], lr[p])
    params = cat(params[p] for p)                           # re-assembled for the next forward
    losses = vmap(task.loss)(params, eval_batch)            # scoring loss (validation: val_steps)

Everything else is a program's own, exactly as in ``run_candidate``'s batched path: the
learning-rate table, the divergence checks and early stopping (a stopped config leaves its
program's rows), the validation steps, the per-seed minibatches. Each program's update sees the
very same tensors as in its own pass, and the shared forward/backward computes each row with the
same kernels, so the results equal ``run_candidate``'s bit for bit (tests/test_population.py)
*where a row's result does not depend on how many rows the batch has*. That fails on tasks
that multiply a data matrix shared by all rows with a *vector* parameter (logreg_separable,
linreg_illcond): vmap runs ``x @ w`` over R rows as one GEMM with R columns, MKL switches
kernels below 16 columns, and the product comes out with the row dimension innermost, so a
reduction over the data (the mean loss) vectorises across rows and rounds the last R mod 32
rows differently (measured on CPU, one thread). On such a task even ``run_candidate`` gives a
config different last bits depending on its batch-mates. So before a shared pass the
population checks, once per task and row layout in this process, that the gradient, scoring
loss and validation value of each program's rows alone, of a few smaller row counts and of a
rotated batch equal the corresponding rows of the whole batch; if any bit differs, every
program runs alone. One exception is kept: on several tasks (teacher_student, rnn_adding,
fourier_signal, siren_image, flow_moons) only a batch of a single row comes out differently (a
batch of one takes another kernel); those share the pass, and a program down to one row (its
other configs stopped) gets a forward/backward of its own, as in its own pass.

Sharing a pass saves the per-call cost of the forward/backward (Python, vmap, kernel launches)
but not its arithmetic, and a bigger batch can be slower per row on a CPU (its working set
leaves the cache: cnn_digits, one thread, 86-122 ms a step for 176 rows in one pass against
54 ms in passes of 22). So the same check also times the shared forward/backward against the
programs' own ones (process CPU time) and, by default (``share="auto"``), shares the pass only
when it is faster. ``share="independent"`` shares whenever the rows are independent, and
``share="always"`` skips the check (results may then differ in the last bits).

A program leaves the population, and is run on its own by ``run_candidate`` afterwards, when
vmap cannot trace its ``init`` or ``update`` or they raise (``run_candidate`` then falls back to
its sequential path, or raises the program's ``CandidateError``), and when it has a single
config (``run_candidate`` runs those unbatched). So each program's entry is exactly what
``run_candidate`` returns for it alone, or the ``CandidateError`` it raises.

With a successive-halving schedule (``halving``, one for the population) each program's learning
rates are cut at the rungs on its own runs, at the check where its own pass decides (the rung's
step; one step later on a full-batch task, whose loss is known a step late), and its pruned rows
leave the pass as stopped ones do: every program gets ``run_candidate(..., halving=schedule)``'s
records, pruned ones included.

Rows of a stochastic task get their own seed's minibatch. A batch entry that is the same tensor
for every seed (a data set, a fixed basis) is passed once, unstacked, and one that differs is
stacked per row; a program with a single seed sees every entry unstacked in its own pass, so
programs are grouped by that: one pass for all multi-seed programs, one per single seed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial

import torch
from torch.func import grad, grad_and_value, vmap
from torch.utils._pytree import tree_map

from sandbox.contract import CandidateError, HParams, Program
from sandbox.halving import Schedule
from sandbox.harness import (
    RunConfig,
    RunResult,
    _apply_update,
    _init_states,
    _Run,
    resolve_device,
    run_candidate,
)
from sandbox.lean_vmap import lean_vmap
from sandbox.tasks.base import Batch, Params, Task

PopulationResult = list[RunResult] | CandidateError

PROBE_COUNTS = (1, 2, 3, 7, 15, 17, 31, 33)
"""Row counts the independence check tries besides each program's own (prefixes of the batch):
both sides of the kernel and vector-width boundaries measured on CPU (16 GEMM columns, 32 rows
of a reduction), where a dropped config moves a program's pass during a run."""

SHARE_MODES = ("auto", "independent", "always")
"""When programs share a pass: when their rows are independent and sharing measured faster (auto),
whenever their rows are independent, or always (see the module docstring)."""

_NOT_INDEPENDENT: set[tuple] = set()  # (task, layout) whose rows were found to depend on the count
_CHECKED: dict[tuple, tuple[float, float, frozenset[int]]] = {}
"""(task, layout, row counts) -> CPU seconds of the shared and the programs' own forward/backward,
and the row counts computed in a block of their own."""


@dataclass
class PopulationOutcome:
    """What :func:`train_population` did: each program's result and how it was computed."""

    results: list[PopulationResult]
    shared: list[bool]
    """``shared[i]``: program i was trained in a shared pass (else by ``run_candidate`` alone)."""
    independent: bool | None
    """The row-independence check's verdict over all passes (None: no check ran, because nothing
    could be shared or ``share`` was "always")."""
    faster: bool | None
    """Whether every checked pass measured faster shared than alone (None: nothing measured)."""


def run_population(
    programs: Sequence[Program],
    task: Task,
    configs: Sequence[RunConfig] | Sequence[Sequence[RunConfig]],
    *,
    steps: int | None = None,
    device: str | torch.device = "cpu",
    hparam_overrides: Sequence[Mapping[str, float] | None] | None = None,
    share: str = "auto",
    max_rows: int | None = None,
    halving: Schedule | None = None,
) -> list[PopulationResult]:
    """Train every program on ``task``; entry i is what ``run_candidate(programs[i], task,
    configs_i, steps=steps, device=device, hparam_overrides=overrides_i, halving=halving)``
    returns, or the ``CandidateError`` it raises.

    ``configs`` is one list of RunConfig for all programs, or one list per program.
    ``hparam_overrides`` is None or one mapping (or None) per program. Bad arguments raise
    ``ValueError`` as ``run_candidate`` does; any error that is not a candidate's propagates.
    ``share`` (:data:`SHARE_MODES`) says when programs share a pass; ``max_rows`` caps the rows of
    one shared pass (the programs are then split into consecutive passes under it). ``halving``
    (one schedule for every program) cuts each program's learning rates at the rungs on its own
    runs, at the step ``run_candidate`` does, and drops its pruned rows from the pass.
    """
    return train_population(programs, task, configs, steps=steps, device=device,
                            hparam_overrides=hparam_overrides, share=share, max_rows=max_rows,
                            halving=halving).results


def train_population(
    programs: Sequence[Program],
    task: Task,
    configs: Sequence[RunConfig] | Sequence[Sequence[RunConfig]],
    *,
    steps: int | None = None,
    device: str | torch.device = "cpu",
    hparam_overrides: Sequence[Mapping[str, float] | None] | None = None,
    share: str = "auto",
    max_rows: int | None = None,
    halving: Schedule | None = None,
) -> PopulationOutcome:
    """:func:`run_population`, also saying which programs shared a pass."""
    programs = list(programs)
    if not programs:
        raise ValueError("run_population needs at least one program")
    if share not in SHARE_MODES:
        raise ValueError(f"share must be one of {', '.join(SHARE_MODES)}; got {share!r}")
    if max_rows is not None and max_rows < 2:
        raise ValueError(f"max_rows must be at least 2, got {max_rows}")
    per_program = _per_program_configs(configs, len(programs))
    overrides = list(hparam_overrides) if hparam_overrides is not None else [None] * len(programs)
    if len(overrides) != len(programs):
        raise ValueError(f"hparam_overrides has {len(overrides)} entries for {len(programs)} programs")
    resolved = resolve_device(device)
    # Building every run first checks every argument before anything trains.
    runs = [_Run(p, task, c, steps, resolved, o, halving) for p, c, o in zip(programs, per_program, overrides)]

    results: list[PopulationResult | None] = [None] * len(programs)
    shared = [False] * len(programs)
    alone: list[int] = []  # programs run_candidate runs by itself
    groups: dict[object, list[int]] = {}
    for index, run in enumerate(runs):
        if len(run.configs) < 2:  # run_candidate runs a single config unbatched
            alone.append(index)
            continue
        seeds = {c.seed for c in run.configs}
        # A single-seed program's own pass gets every batch entry unstacked; keep it with its kind.
        key = ("seed", seeds.pop()) if task.stochastic and len(seeds) == 1 else "shared"
        groups.setdefault(key, []).append(index)
    verdicts = []
    for members in (part for group in groups.values() for part in _split(group, runs, max_rows)):
        if len(members) == 1:  # nothing to share: the per-program path is the same pass
            alone.extend(members)
            continue
        population = _Population([runs[i] for i in members], share)
        done, failed = population.train()
        verdicts.append((population.independent, population.faster))
        for local, result in done.items():
            results[members[local]] = result
            shared[members[local]] = True
        alone.extend(members[local] for local in failed)
    for index in sorted(alone):
        try:
            results[index] = run_candidate(programs[index], task, per_program[index], steps=steps, device=resolved,
                                           hparam_overrides=overrides[index], halving=halving)
        except CandidateError as exc:
            results[index] = exc
    independent = [v for v, _ in verdicts if v is not None]
    faster = [v for _, v in verdicts if v is not None]
    return PopulationOutcome(results, shared, all(independent) if independent else None,  # type: ignore[arg-type]
                             all(faster) if faster else None)


def _split(members: list[int], runs: list[_Run], limit: int | None) -> list[list[int]]:
    """Consecutive parts of ``members`` with at most ``limit`` rows each (a program larger than
    that is a part by itself)."""
    if limit is None:
        return [members]
    parts: list[list[int]] = []
    rows = 0
    for index in members:
        size = len(runs[index].configs)
        if parts and rows + size <= limit:
            parts[-1].append(index)
            rows += size
        else:
            parts.append([index])
            rows = size
    return parts


def _per_program_configs(configs, count: int) -> list[list[RunConfig]]:
    configs = list(configs)
    if configs and all(isinstance(c, RunConfig) for c in configs):
        return [configs] * count
    if len(configs) != count or any(isinstance(c, RunConfig) for c in configs):
        raise ValueError("configs must be one list of RunConfig for every program, or one list per program "
                         f"({count} lists)")
    return [list(c) for c in configs]


def _cpu_seconds(device: torch.device) -> float:
    """CPU time of this process (one torch thread in a worker: the work done, whatever else runs
    on the machine); on a GPU, wall time after the queued work finished."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return time.perf_counter()
    return time.process_time()


def _update_rows(program: Program, hp: HParams, step: int, grads: Params, params: Params, states: dict[str, dict],
                 lr: torch.Tensor) -> tuple[Params, dict[str, dict]]:
    """One program's update of one row (vmapped over its rows): _train_step without the gradient."""
    return _apply_update(program, grads, params, states, step, hp.replace(lr=lr))


class _Member:
    """One program's share of a population pass: the state ``_Run._train_batched`` keeps in locals."""

    def __init__(self, run: _Run, seeds: list[int]):
        self.run = run
        self.active = list(range(len(run.configs)))  # active[j]: the config index held in its row j
        self.rows = torch.arange(len(self.active), device=run.device)  # == active, as a tensor
        self.seed_rows = torch.tensor([seeds.index(c.seed) for c in run.configs], device=run.device)
        per_seed = {seed: run._init_params(seed) for seed in sorted({c.seed for c in run.configs})}
        first = next(iter(per_seed.values()))
        self.params: Params = {name: torch.stack([per_seed[c.seed][name] for c in run.configs]) for name in first}
        self.states = vmap(partial(_init_states, run.program))(self.params)
        self.finals: list[Params | None] = [None] * len(run.configs)
        self.pending: list[tuple[int, list[int], torch.Tensor]] = []  # (step, configs, losses)
        self.pending_val: list[tuple[int, list[int], torch.Tensor]] = []  # (step, configs, validation values)

    def check(self, known: int, rung: int | None = None) -> bool:
        """Record what is pending (validation values up to step ``known``), cut the learning
        rates at ``rung`` if given (a successive-halving rung this check decides), drop stopped
        and pruned rows; False when none is left. As the check in ``_Run._train_batched``."""
        run = self.run
        run._flush_batched(self.pending, self.pending_val, known=known)
        if rung is not None:
            run._rung(rung)  # this program's own configs only, as in its own pass
        keep = [j for j, i in enumerate(self.active) if run.monitor.running(i)]
        if len(keep) == len(self.active):
            return True
        for j, i in enumerate(self.active):
            if j not in keep:
                self.finals[i] = {name: p[j] for name, p in self.params.items()}
        if not keep:
            run._flush_batched([], self.pending_val, known=run.steps)
            return False
        index = torch.tensor(keep, device=run.device)
        self.params, self.states = tree_map(lambda x: x[index], (self.params, self.states))
        self.active = [self.active[j] for j in keep]
        self.rows = self.rows[index]
        return True

    def results(self) -> list[RunResult]:
        for j, i in enumerate(self.active):
            self.finals[i] = {name: p[j] for name, p in self.params.items()}
        return self.run._results(self.finals, batched=True)


class _Population:
    """Several programs' batched runs on one task, stepped together (see the module docstring)."""

    def __init__(self, runs: list[_Run], share: str):
        self.runs, self.share = runs, share
        first = runs[0]
        self.task, self.device, self.steps = first.task, first.device, first.steps
        self.eval_batch = first.eval_batch
        self.val_at, self.check_every = first.val_at, first.check_every
        self.seeds = sorted({c.seed for run in runs for c in run.configs})
        self.independent: bool | None = None
        self.faster: bool | None = None
        self.solo_counts: frozenset[int] = frozenset()  # row counts computed in a block of their own

    def train(self) -> tuple[dict[int, list[RunResult]], list[int]]:
        """``(results by member index, members that must run alone)``."""
        with torch.no_grad():
            return self._train()

    def _train(self) -> tuple[dict[int, list[RunResult]], list[int]]:
        task, full_batch = self.task, not self.task.stochastic
        members: dict[int, _Member] = {}
        failed: list[int] = []
        for index, run in enumerate(self.runs):
            try:
                members[index] = _Member(run, self.seeds)
            except Exception:  # noqa: BLE001 (init could not be vmapped or raised: run_candidate decides)
                failed.append(index)
        done: dict[int, list[RunResult]] = {}
        if len(members) < 2:  # nothing left to share
            return done, sorted(failed + list(members))
        eval_loss = lean_vmap(lambda params: task.loss(params, self.eval_batch))
        val_loss = lean_vmap(task.val_loss)
        try:
            if self.share != "always":
                self.independent, self.faster = self._check(members, self._assemble(members))
                if not self.independent or (self.share == "auto" and not self.faster):
                    return done, sorted(failed + list(members))
            blocks = self._blocks(members)
            params = [self._assemble(block) for block in blocks]
            for block, block_params in zip(blocks, params):
                if not full_batch:
                    self._spread(block, 0, eval_loss(block_params), "pending")
                self._spread(block, 0, val_loss(block_params), "pending_val")
            for step in range(1, self.steps + 1):
                grads: dict[int, Params] = {}
                for block, block_params in zip(blocks, params):
                    if full_batch:
                        block_grads, value = lean_vmap(grad_and_value(task.loss), in_dims=(0, None))(block_params,
                                                                                                     self.eval_batch)
                        self._spread(block, step - 1, value, "pending")
                    else:
                        batch, dims = self._stacked_batch(step, block)
                        block_grads = lean_vmap(grad(task.loss), in_dims=(0, dims))(block_params, batch)
                    offset = 0
                    for index, member in block.items():
                        count = len(member.active)
                        grads[index] = {name: g[offset:offset + count] for name, g in block_grads.items()}
                        offset += count
                for index, member in list(members.items()):
                    run = member.run
                    fn = partial(_update_rows, run.program, run.hp, step)
                    try:
                        member.params, member.states = lean_vmap(fn)(grads[index], member.params, member.states,
                                                                     run.lr_table[step - 1, member.rows])
                    except Exception:  # noqa: BLE001 (not vmappable, or the program's own failure: it runs alone)
                        del members[index]
                        failed.append(index)
                if not members:
                    break
                blocks = self._blocks(members)
                params = [self._assemble(block) for block in blocks]
                for block, block_params in zip(blocks, params):
                    if not full_batch:
                        self._spread(block, step, eval_loss(block_params), "pending")
                    if step in self.val_at:
                        self._spread(block, step, val_loss(block_params), "pending_val")
                # A program's rung is decided at a check of its own (at decide_at: the rung's step,
                # or the next one on a full-batch task), as in _train_batched.
                rungs = {i: m.run.decide_at[step] for i, m in members.items() if step in m.run.decide_at}
                if step % self.check_every == 0 or step == self.steps or rungs:
                    # A full-batch run learns step t's loss one step later (as in _train_batched).
                    known = step - 1 if full_batch else step
                    counts = [len(m.active) for m in members.values()]
                    for index, member in list(members.items()):
                        if not member.check(known, rungs.get(index)):
                            done[index] = member.run._results(member.finals, batched=True)
                            del members[index]
                    if not members:
                        break
                    if counts != [len(m.active) for m in members.values()]:
                        blocks = self._blocks(members)
                        params = [self._assemble(block) for block in blocks]
            if members and full_batch:
                for block, block_params in zip(blocks, params):
                    self._spread(block, self.steps, eval_loss(block_params), "pending")
            for index, member in members.items():
                member.run._flush_batched(member.pending, member.pending_val, known=self.steps)
                done[index] = member.results()
        except Exception:  # noqa: BLE001
            # The shared forward/backward raised: no single program is to blame, so every program
            # still in the pass runs alone (where its own error, if any, surfaces).
            failed.extend(members)
            for index in members:
                done.pop(index, None)
        return done, sorted(failed)

    def _blocks(self, members: dict[int, _Member]) -> list[dict[int, _Member]]:
        """The members grouped for the forward/backward: one shared block, and a block of its own
        for each member whose row count the check found computed differently in a batch."""
        solo = {i for i, m in members.items() if len(m.active) in self.solo_counts}
        shared = {i: m for i, m in members.items() if i not in solo}
        return ([shared] if shared else []) + [{i: members[i]} for i in sorted(solo)]

    def _assemble(self, members: dict[int, _Member]) -> Params:
        """Every member's rows stacked into one model, in member order."""
        parts = list(members.values())
        if len(parts) == 1:
            return parts[0].params
        return {name: torch.cat([m.params[name] for m in parts]) for name in parts[0].params}

    @staticmethod
    def _spread(members: dict[int, _Member], step: int, values: torch.Tensor, into: str) -> None:
        """Hand each member its rows of a population-wide vector of losses."""
        offset = 0
        for member in members.values():
            count = len(member.active)
            getattr(member, into).append((step, list(member.active), values[offset:offset + count]))
            offset += count

    def _stacked_batch(self, step: int, members: dict[int, _Member]) -> tuple[Batch, dict]:
        """As ``_Run._stacked_batch``, for every member's active rows in member order."""
        by_seed = [self.task.batch(step, seed) for seed in self.seeds]
        to_device = self.runs[0].to_device
        seed_rows = torch.cat([m.seed_rows[m.rows] for m in members.values()])
        batch, dims = {}, {}
        for key, first in by_seed[0].items():
            if all(b[key] is first for b in by_seed):
                batch[key], dims[key] = to_device(first), None
            else:
                stacked = to_device(torch.stack([b[key] for b in by_seed]))
                batch[key], dims[key] = stacked[seed_rows], 0
        return batch, dims

    # --- the row-independence check ------------------------------------------------------------

    def _check(self, members: dict[int, _Member], params: Params) -> tuple[bool, bool | None]:
        """``(independent, faster)``: whether each row's gradient, scoring loss and validation
        value come out the same whatever rows share the batch (see the module docstring), and
        whether one shared forward/backward took less CPU time than the programs' own ones.
        A task whose rows differ only when a row is alone (count 1: a batch of one takes another
        kernel on several tasks) still counts as independent: a program down to one row then
        gets a forward/backward of its own, as in its own pass (``solo_counts``). Both verdicts
        are remembered per process (the timing per set of row counts)."""
        task = self.task
        layout = "full" if not task.stochastic else ("one_seed" if len(self.seeds) == 1 else "per_seed")
        key = (type(task), task.key, str(self.device), layout)
        sizes = tuple(len(m.active) for m in members.values())
        if key in _NOT_INDEPENDENT:
            return False, None
        if (key, sizes) in _CHECKED:
            shared, alone, self.solo_counts = _CHECKED[key, sizes]
            return True, shared < alone
        total = sum(sizes)
        batch, dims = (self.eval_batch, None) if not task.stochastic else self._stacked_batch(1, members)
        reference = self._row_outputs(params, batch, dims)  # also warms up what is timed below

        def rows_alone(rows: torch.Tensor) -> list[torch.Tensor]:
            part = {name: p[rows] for name, p in params.items()}
            part_batch = batch if dims is None else {k: v if dims[k] is None else v[rows] for k, v in batch.items()}
            return self._row_outputs(part, part_batch, dims)

        def same(rows: torch.Tensor, outputs: list[torch.Tensor]) -> bool:
            return all(torch.equal(a, b[rows]) for a, b in zip(outputs, reference))

        def dependent() -> tuple[bool, None]:
            _NOT_INDEPENDENT.add(key)
            return False, None

        # Small row counts first: where rows are not independent they fail there, and cheaply.
        solo = set()
        for count in (c for c in PROBE_COUNTS if c < total):
            rows = torch.arange(count, device=self.device)
            if not same(rows, rows_alone(rows)):
                if count != 1:
                    return dependent()
                solo.add(count)
        if not same(rows := torch.arange(total, device=self.device).roll(1), rows_alone(rows)):
            return dependent()  # every row at another position
        alone, offset = 0.0, 0
        for size in sizes:  # each program's rows alone, as its own pass has them at the start
            rows = torch.arange(offset, offset + size, device=self.device)
            offset += size
            started = _cpu_seconds(self.device)
            outputs = rows_alone(rows)
            alone += _cpu_seconds(self.device) - started
            if not same(rows, outputs):
                return dependent()
        started = _cpu_seconds(self.device)
        self._row_outputs(params, batch, dims)
        shared = _cpu_seconds(self.device) - started
        self.solo_counts = frozenset(solo)
        _CHECKED[key, sizes] = (shared, alone, self.solo_counts)
        return True, shared < alone

    def _row_outputs(self, params: Params, batch: Batch, dims) -> list[torch.Tensor]:
        """Everything the shared pass computes per row: gradients, training-batch loss (full
        batch) or scoring loss (stochastic), validation value."""
        task = self.task
        grads, value = vmap(grad_and_value(task.loss), in_dims=(0, dims))(params, batch)
        outputs = [grads[name] for name in sorted(grads)] + [value, vmap(task.val_loss)(params)]
        if task.stochastic:
            outputs.append(vmap(lambda p: task.loss(p, self.eval_batch))(params))
        return outputs
