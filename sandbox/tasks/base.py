"""What a proxy task is: a small, deterministic training problem with a functional interface.

A task is pure data plus pure functions, so the harness can run one candidate over many
(learning rate, seed) configurations in a single ``torch.func.vmap`` pass:

* ``init_params(seed)``   -> ``{name: tensor}``, the starting point of one run;
* ``batch(step, seed)``   -> the data of one training step (a dict of tensors);
* ``loss(params, batch)`` -> a 0-d tensor; pure, so ``torch.func.grad`` and ``vmap`` apply;
* ``eval_batch()``        -> the fixed data on which the *scoring loss* is measured;
* ``val_batch()``         -> held-out *validation* data from the training distribution;
* ``val_loss(params)``    -> the validation value (lower is better) the score is computed on;
* ``test_metric(params, seed)`` -> a float reported beside the score, never mixed into it.

Validation (AlgoPerf's "time to a validation target"): the per-task score is how fast a
candidate's validation curve reaches the value tuned AdamW reaches at its budget. The
training-loss curve (the *scoring loss* below) is still recorded every step: it drives the
divergence check and the reported training-loss speed-up.

Variants (AlgoPerf's randomised workloads): a task class declares ``variant_space``, a few of
its attributes (width, depth, init scale, batch size, data noise, sequence length...) with the
values each may take. ``Task(variant=0)`` is the default workload; ``Task(variant=v)`` for
v >= 1 draws every attribute of ``variant_space`` from its choices with a generator seeded by
(task name, v, attribute), so a variant is the same on every machine and adding an attribute
does not reshuffle the others. The validation and test tiers run variants the search never saw.

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
import random
import re
from abc import ABC, abstractmethod
from typing import Any, ClassVar

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


FAMILIES: dict[str, str] = {
    "convex": "convex problems: logistic and linear regression",
    "classical": "classical ill-conditioned or non-convex problems: noisy quadratics, Rosenbrock, deep linear nets",
    "mlp": "multi-layer perceptrons, including deep and poorly conditioned ones",
    "cnn": "convolutional networks with normalisation layers",
    "rnn": "recurrent sequence models",
    "attention": "attention models and transformers, including a language model on real text",
    "embedding": "embedding models with sparse or rare features",
    "coordinate": "coordinate (implicit) networks mapping positions to values",
    "generative": "generative and density models: autoencoders, VAEs, flows, mixtures",
}
"""The model families a task may belong to (``Task.family``)."""

VAL_POINTS = 50
"""Validation measurements per run (besides the starting point): every ``steps // 50`` steps."""

_SPEC = re.compile(r"^([a-z0-9_]+)(?:@(-?\w+))?$")


def val_steps(steps: int) -> list[int]:
    """The steps after which the validation value is measured in a ``steps``-step run: 0 (the
    start), every ``max(1, steps // VAL_POINTS)`` steps, and always the last step."""
    every = max(1, steps // VAL_POINTS)
    points = list(range(0, steps + 1, every))
    if points[-1] != steps:
        points.append(steps)
    return points


def parse_task_spec(spec: str) -> tuple[str, int]:
    """``"mlp_digits"`` -> ``("mlp_digits", 0)``; ``"mlp_digits@3"`` -> ``("mlp_digits", 3)``.

    Raises ``ValueError`` with a one-line message for anything else (a variant must be an int >= 0).
    """
    match = _SPEC.match(spec.strip()) if isinstance(spec, str) else None
    if not match:
        raise ValueError(f"bad task {spec!r}: expected NAME or NAME@VARIANT (e.g. mlp_digits@3)")
    name, variant = match.group(1), match.group(2)
    if variant is None:
        return name, 0
    if not re.fullmatch(r"\d+", variant):
        raise ValueError(f"bad task {spec!r}: the variant after '@' must be a non-negative integer, got {variant!r}")
    return name, int(variant)


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
    exact_stacked_grad: ClassVar[bool] = False
    """True when the batched harness may take every row's gradient by plain autograd through the
    vmapped loss (:func:`sandbox.stacked.stacked_grads`, faster on CPU) because it equals
    ``vmap(grad(loss))`` bit for bit on this task and its variants; the task tests check every task
    that says so. False (the safe default, and the rule for a task of yours) keeps vmap(grad): a
    matmul whose backward runs as another kernel there rounds differently."""
    default_device_ok: ClassVar[bool]
    """False for tasks so small that a GPU's kernel-launch latency makes them slower there than
    on the CPU; an executor keeps those on the CPU even when the campaign's device is a GPU."""
    family: ClassVar[str]
    """One of :data:`FAMILIES`."""
    val_metric_name: ClassVar[str] = "val_loss"
    """What ``val_loss`` measures, e.g. ``val_ce`` or ``noise_free_loss``."""
    variant_space: ClassVar[dict[str, tuple]] = {}
    """Attribute -> the values a variant may give it (variant 0 keeps the class's own values)."""

    def __init__(self, variant: int = 0) -> None:
        if not isinstance(variant, int) or isinstance(variant, bool) or variant < 0:
            raise ValueError(f"task variant must be an int >= 0, got {variant!r}")
        self.variant = variant
        self.settings: dict[str, Any] = self.variant_settings(variant)
        for key, value in self.settings.items():
            setattr(self, key, value)

    @classmethod
    def variant_settings(cls, variant: int) -> dict[str, Any]:
        """The attribute values of ``variant``: the class defaults for 0, else a seeded draw."""
        if variant == 0:
            return {key: getattr(cls, key) for key in cls.variant_space}
        return {key: random.Random(f"{cls.name}/{variant}/{key}").choice(list(choices))
                for key, choices in cls.variant_space.items()}

    @property
    def key(self) -> str:
        """The task's identity in cache keys, archives and reports: ``name`` or ``name@variant``."""
        return self.name if self.variant == 0 else f"{self.name}@{self.variant}"

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
    def val_batch(self) -> Batch:
        """Fixed validation data, drawn from the training distribution but never trained on
        (for a problem with no data, such as a noisy quadratic, the noise-free objective's batch)."""

    def val_loss(self, params: Params) -> torch.Tensor:
        """The validation value (0-d, lower is better, finite and positive at the start) whose
        speed-to-target is the task's score. Pure tensor code, vmapped like ``loss``."""
        return self.loss(params, self.val_batch())

    @abstractmethod
    def test_metric(self, params: Params, seed: int) -> float:
        """The held-out metric of trained ``params`` (CPU tensors); see ``test_metric_name``."""

    def summary(self) -> dict[str, object]:
        """The task's plain-data description, for reports and cache keys."""
        return {
            "name": self.name,
            "key": self.key,
            "variant": self.variant,
            "settings": dict(self.settings),
            "family": self.family,
            "val_metric_name": self.val_metric_name,
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
        return f"<Task {self.key} v{self.version}: {self.steps} steps, {self.schedule}>"


def minibatch_indices(n: int, size: int, step: int, seed: int) -> torch.Tensor:
    """``size`` distinct indices into ``range(n)`` for this (step, seed): sampling without
    replacement within a step, independently across steps."""
    return torch.randperm(n, generator=step_generator(seed, step))[:size]


class FixedSplitsTask(Task):
    """A task whose fixed data is built once in ``__init__``: ``self._eval`` (what the scoring
    loss is measured on), ``self._val`` (the validation split) and ``self._test`` (the test split;
    the test metric is the loss there unless the task overrides :meth:`test_metric`)."""

    _eval: Batch
    _val: Batch
    _test: Batch

    def eval_batch(self) -> Batch:
        return self._eval

    def val_batch(self) -> Batch:
        return self._val

    def test_metric(self, params: Params, seed: int) -> float:
        return float(self.loss(params, self._test))
