"""Proxy tasks and the three tiers they form (shared/DESIGN.md section 3).

* ``search``: what parents are selected on; cheap; the default workload of each task.
* ``validation``: decides what is confirmed and announced as a winner; never picks parents.
  Workload variants (``name@variant``) the search never saw, plus tasks it never ran.
* ``test``: reported only; no decision reads it. Other variants, and tasks and families that
  neither the search nor the validation tier contains.

``legacy_search`` and ``legacy_heldout`` are the suites before tiers existed (default workloads,
scored on the training loss by ``benchmarks/transfer.py`` for comparison); nothing else uses them.
"""

from __future__ import annotations

from functools import lru_cache

from sandbox.tasks.base import FAMILIES, SCHEDULES, Task, lr_factor, parse_task_spec
from sandbox.tasks.autoencoder import DigitsAutoencoder
from sandbox.tasks.cnn import DigitsCNN
from sandbox.tasks.deep_linear import DeepLinearCompletion
from sandbox.tasks.logistic import BreastCancerLogReg, SeparableLogReg
from sandbox.tasks.mlp import DigitsMLP, WineMLP
from sandbox.tasks.quadratic import AxisAlignedQuadratic, RotatedQuadratic
from sandbox.tasks.rosenbrock import Rosenbrock
from sandbox.tasks.teacher_student import TeacherStudent
from sandbox.tasks.transformer import ModularAdditionTransformer
from sandbox.tasks.rnn import AddingRNN, SentimentMinGRU
from sandbox.tasks.embedding import ZipfMatrixFactorisation
from sandbox.tasks.coordinate import FourierFeatureSignal, SirenImage
from sandbox.tasks.char_lm import CharTransformerLM
from sandbox.tasks.cnn_norm import DigitsGroupNormCNN
from sandbox.tasks.deep_mlp import DeepIllConditionedMLP
from sandbox.tasks.flow import MoonsRealNVP
from sandbox.tasks.least_squares import IllConditionedLeastSquares
from sandbox.tasks.softmax_regression import DigitsSoftmaxRegression
from sandbox.tasks.vae import DigitsVAE

TASK_CLASSES: dict[str, type[Task]] = {
    cls.name: cls
    for cls in (
        # search suite
        RotatedQuadratic,
        Rosenbrock,
        SeparableLogReg,
        DigitsMLP,
        ModularAdditionTransformer,
        DeepLinearCompletion,
        # held-out suite
        DigitsCNN,
        WineMLP,
        DigitsAutoencoder,
        TeacherStudent,
        AxisAlignedQuadratic,
        BreastCancerLogReg,
        # task library A (tasks-A): recurrent, embedding and coordinate families
        AddingRNN,
        SentimentMinGRU,
        ZipfMatrixFactorisation,
        SirenImage,
        FourierFeatureSignal,
        # task library B (tasks-B)
        CharTransformerLM,
        DigitsGroupNormCNN,
        DeepIllConditionedMLP,
        DigitsVAE,
        MoonsRealNVP,
        IllConditionedLeastSquares,
        DigitsSoftmaxRegression,
    )
}
"""Name -> class of every registered task."""

VALIDATION_VARIANT = 1
TEST_VARIANT = 2

SEARCH_TASKS = ("noisy_quadratic", "rosenbrock", "logreg_separable", "mlp_digits", "deep_linear", "linreg_illcond",
                "cnn_digits", "autoencoder_digits", "mf_zipf")
"""Cheap default workloads, one or two per family: what parents are selected on."""

TIERS: dict[str, list[str]] = {
    "search": list(SEARCH_TASKS),
    "validation": [f"{name}@{VALIDATION_VARIANT}" for name in (
        *SEARCH_TASKS, "teacher_student", "mlp_deep_illcond", "vae_digits", "rnn_adding")],
    "test": [f"{name}@{TEST_VARIANT}" for name in (
        "mlp_wine", "teacher_student", "quadratic_diagonal", "logreg_breast_cancer", "softmax_l2_digits",
        "vae_digits", "mlp_deep_illcond", "flow_moons", "cnn_groupnorm_digits", "charlm_transformer",
        "rnn_adding", "fourier_signal", "siren_image")],
}
"""Tier -> task specs (``name`` or ``name@variant``)."""

UNTIERED: dict[str, str] = {
    "transformer_modadd": "a batched LR x seed pass costs ~30 s on 2 cores since it became minibatched (budget ~10 s)",
    "mingru_sentiment": "a batched LR x seed pass costs over 60 s on 2 cores (budget ~10 s)",
}
"""Registered tasks no tier runs yet, and why (``discover eval --task`` still runs them)."""

LEGACY_SUITES: dict[str, list[str]] = {
    "legacy_search": ["noisy_quadratic", "rosenbrock", "logreg_separable", "mlp_digits", "transformer_modadd",
                      "deep_linear"],
    "legacy_heldout": ["cnn_digits", "mlp_wine", "autoencoder_digits", "teacher_student", "quadratic_diagonal",
                       "logreg_breast_cancer"],
}

SUITES: dict[str, list[str]] = {**TIERS, **LEGACY_SUITES}
"""Every name :func:`suite` accepts besides ``all`` (the union of the three tiers)."""


def tiers_of(name: str) -> list[str]:
    """The tiers a task (by name, any variant) appears in."""
    return [tier for tier, specs in TIERS.items() if any(parse_task_spec(s)[0] == name for s in specs)]


def task_names() -> list[str]:
    """Every registered task name, search suite first."""
    return list(TASK_CLASSES)


def get_task(spec: str, variant: int | None = None) -> Task:
    """The task ``spec`` (``name`` or ``name@variant``; ``variant`` overrides the spec's), one
    shared instance per process and variant, so data loads once. Raises ``KeyError`` for an
    unknown name and ``ValueError`` for a malformed spec or variant."""
    name, spec_variant = parse_task_spec(spec)
    return _task(name, spec_variant if variant is None else variant)


@lru_cache(maxsize=None)
def _task(name: str, variant: int) -> Task:
    try:
        cls = TASK_CLASSES[name]
    except KeyError:
        raise KeyError(f"no task {name!r}; known: {', '.join(TASK_CLASSES)}") from None
    return cls(variant)


def suite(name: str) -> list[Task]:
    """The tasks of tier ``search``, ``validation`` or ``test``, of ``all`` three, or of a legacy
    suite. Raises ``KeyError`` naming the known tiers for anything else."""
    if name == "all":
        specs = list(dict.fromkeys(spec for specs in TIERS.values() for spec in specs))
        return [get_task(spec) for spec in specs]
    if name not in SUITES:
        hint = " (the held-out suite became the test tier)" if name == "heldout" else ""
        raise KeyError(f"no tier {name!r}{hint}; known: {', '.join(TIERS)}, all")
    return [get_task(spec) for spec in SUITES[name]]


__all__ = ["FAMILIES", "LEGACY_SUITES", "SCHEDULES", "TIERS", "UNTIERED", "parse_task_spec", "tiers_of", "SUITES", "TASK_CLASSES", "Task", "get_task", "lr_factor", "suite", "task_names"]
