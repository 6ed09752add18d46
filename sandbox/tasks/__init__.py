"""Proxy tasks and the suites they form.

The *search* suite is what candidates are selected on; the *held-out* suite is only ever used
to report how a selected candidate generalises (tasks and variants the search never saw).
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
    )
}
"""Name -> class of every registered task."""

SUITES: dict[str, list[str]] = {
    "search": ["noisy_quadratic", "rosenbrock", "logreg_separable", "mlp_digits", "transformer_modadd", "deep_linear"],
    "heldout": ["cnn_digits", "mlp_wine", "autoencoder_digits", "teacher_student", "quadratic_diagonal",
                "logreg_breast_cancer"],
}


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
    """The tasks of suite ``search``, ``heldout`` or ``all``."""
    if name == "all":
        return [get_task(n) for n in SUITES["search"] + SUITES["heldout"]]
    if name not in SUITES:
        raise KeyError(f"no suite {name!r}; known: search, heldout, all")
    return [get_task(n) for n in SUITES[name]]


__all__ = ["FAMILIES", "SCHEDULES", "parse_task_spec", "SUITES", "TASK_CLASSES", "Task", "get_task", "lr_factor", "suite", "task_names"]
