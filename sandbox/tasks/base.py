"""What a proxy task is: a small, deterministic training problem with a functional interface.

A task is pure data plus pure functions, so the harness can run one candidate over many
(learning rate, seed) configurations in a single ``torch.func.vmap`` pass:

* ``init_params(seed)``   -> ``{name: tensor}``, the starting point of one run;
* ``batch(step, seed)``   -> the data of one training step (a dict of tensors);
* ``loss(params, batch)`` -> a 0-d tensor; pure, so ``torch.func.grad`` and ``vmap`` apply;
* ``eval_batch()``        -> the fixed data on which the *scoring loss* is measured;
* ``test_metric(params, seed)`` -> a float reported beside the score, never mixed into it.

The scoring loss after step t is ``loss(params_t, eval_batch())``. For a deterministic
(full-batch) task ``batch(step, seed)`` *is* ``eval_batch()`` for every step and seed, so the
scoring loss is the full training loss. For a stochastic task (minibatches, gradient noise) the
training loss of a step's own batch is too noisy to compare optimizers by, so the scoring loss
is measured on a fixed evaluation batch instead (the same for every seed and optimizer).

Every loss is non-negative with its infimum near zero, and every starting loss is positive:
the harness detects divergence as a rise over the starting loss.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import ClassVar

import torch

Batch = dict[str, torch.Tensor]
Params = dict[str, torch.Tensor]

SCHEDULES = ("constant", "warmup_cosine")
WARMUP_FRACTION = 0.05  # of the budget, at least one step
MIN_LR_FRACTION = 0.1  # cosine decays to this fraction of the peak (nanoGPT's min_lr = lr / 10)


def lr_factor(schedule: str, step: int, steps: int) -> float:
    """The multiplier on the base learning rate at ``step`` (1-based) of a ``steps``-step run.

    * ``constant``: 1.
    * ``warmup_cosine``: linear warm-up ``step / W`` over the first ``W = max(1, round(0.05 T))``
      steps, then a cosine from 1 down to 0.1 at step ``T``:
      ``0.1 + 0.9 * 0.5 * (1 + cos(pi * (step - W) / (T - W)))``.
    """
    if schedule == "constant":
        return 1.0
    if schedule != "warmup_cosine":
        raise ValueError(f"unknown schedule {schedule!r}; known: {', '.join(SCHEDULES)}")
    if not 1 <= step <= steps:
        raise ValueError(f"step {step} is outside 1..{steps}")
    warmup = max(1, round(WARMUP_FRACTION * steps))
    if step <= warmup:
        return step / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return MIN_LR_FRACTION + (1 - MIN_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * progress))


def step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    """A CPU generator determined by (seed, step, stream) alone, so that a step's data does not
    depend on which steps ran before it (runs can be cut short or replayed from any step)."""
    # Distinct odd multipliers keep (seed, step, stream) triples from colliding in practice.
    key = (seed * 1_000_003 + step * 7_919 + stream * 104_729) % (2**63 - 1)
    return torch.Generator().manual_seed(key)


class Task(ABC):
    """A proxy training task. Subclasses set the class attributes and the four functions.

    Instances are cheap to construct; data sets load lazily on first use and are cached.
    """

    name: ClassVar[str]
    version: ClassVar[int]
    """Bumped whenever the task's numbers change; part of every cached result's key."""
    steps: ClassVar[int]
    """The step budget every optimizer gets."""
    schedule: ClassVar[str]
    """One of :data:`SCHEDULES`; see :func:`lr_factor`."""
    description: ClassVar[str]
    loss_name: ClassVar[str]
    """What the scoring loss measures, e.g. ``train_ce`` or ``eval_batch_mse``."""
    test_metric_name: ClassVar[str]
    """e.g. ``test_acc``, ``test_loss``, ``dist_to_opt``."""
    higher_is_better: ClassVar[bool]
    """Direction of the test metric (accuracy up, losses and distances down)."""
    stochastic: ClassVar[bool]
    """True when ``batch`` depends on (step, seed): minibatches or gradient noise. False for a
    full-batch task, whose ``batch`` is ``eval_batch()`` for every step and seed."""
    default_device_ok: ClassVar[bool]
    """False for tasks so small that a GPU's kernel-launch latency makes them slower there than
    on the CPU; an executor keeps those on the CPU even when the campaign's device is a GPU."""

    def lr_factor(self, step: int, steps: int | None = None) -> float:
        """The schedule's multiplier at ``step`` of a ``steps``-step run (default: the budget)."""
        return lr_factor(self.schedule, step, self.steps if steps is None else steps)

    @abstractmethod
    def init_params(self, seed: int) -> Params:
        """The starting parameters of a run with this seed (float32, CPU)."""

    @abstractmethod
    def loss(self, params: Params, batch: Batch) -> torch.Tensor:
        """The training loss (0-d) of ``params`` on ``batch``; pure tensor code."""

    @abstractmethod
    def batch(self, step: int, seed: int) -> Batch:
        """The data of training step ``step`` (1-based) of the run with this seed (CPU)."""

    @abstractmethod
    def eval_batch(self) -> Batch:
        """The fixed data the scoring loss is measured on (CPU)."""

    @abstractmethod
    def test_metric(self, params: Params, seed: int) -> float:
        """The held-out metric of trained ``params`` (CPU tensors); see ``test_metric_name``."""

    def summary(self) -> dict[str, object]:
        """The task's plain-data description, for reports and cache keys."""
        return {
            "name": self.name,
            "version": self.version,
            "steps": self.steps,
            "schedule": self.schedule,
            "description": self.description,
            "loss_name": self.loss_name,
            "test_metric_name": self.test_metric_name,
            "higher_is_better": self.higher_is_better,
            "stochastic": self.stochastic,
        }

    def __repr__(self) -> str:
        return f"<Task {self.name} v{self.version}: {self.steps} steps, {self.schedule}>"


def minibatch_indices(n: int, size: int, step: int, seed: int) -> torch.Tensor:
    """``size`` distinct indices into ``range(n)`` for this (step, seed): sampling without
    replacement within a step, independently across steps."""
    return torch.randperm(n, generator=step_generator(seed, step))[:size]
