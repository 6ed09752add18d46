"""The terms of the candidate contract: the failure reasons, the size and loop limits, the
signatures of ``init``/``update``, :class:`CandidateError` and the ``hp`` view :class:`HParams`."""

from __future__ import annotations

import ast
from typing import Any

FAILURE_REASONS = (
    "invalid_code",
    "forbidden_construct",
    "timeout",
    "oom",
    "nan",
    "diverged",
    "shape_error",
    "crashed",
)
"""Every way a candidate can fail; each failure record carries exactly one of these."""

MAX_SOURCE_CHARS = 8000
MAX_LINES = 200
MAX_AST_NODES = 3000
MAX_AST_DEPTH = 100  # the checker and compiler recurse per level; deeper input would overflow them
MAX_LOOP_ITERATIONS = 16
MAX_LOOP_DEPTH = 2  # nested loops multiply: 16 ** depth iterations at most
MAX_STATE_FACTOR = 8  # state tensors may hold at most this many entries per parameter entry
INIT_ARGS = ("param",)
UPDATE_ARGS = ("grad", "param", "state", "step", "hp")


class CandidateError(Exception):
    """A candidate broke the contract. ``reason`` is one of :data:`FAILURE_REASONS`."""

    def __init__(self, reason: str, message: str, line: int | None = None):
        assert reason in FAILURE_REASONS, reason
        self.reason = reason
        self.message = message
        self.line = line
        super().__init__(f"line {line}: {message}" if line else message)


class HParams:
    """Read-only attribute view of a candidate's hyperparameters (``hp.lr``, ``hp.beta1``).

    Values are numbers, or 0-d tensors when a grid of them is evaluated in one batched pass.
    """

    __slots__ = ("_values",)

    def __init__(self, values: dict[str, Any]):
        object.__setattr__(self, "_values", dict(values))

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"no hyperparameter `{name}` (HPARAMS has {sorted(self._values)})") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("hyperparameters are read-only inside a candidate")

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def replace(self, **changes: Any) -> HParams:
        return HParams({**self._values, **changes})

    def __repr__(self) -> str:
        return f"HParams({self._values})"


def _forbid(node: ast.AST, what: str) -> CandidateError:
    return CandidateError("forbidden_construct", f"{what} is not allowed", getattr(node, "lineno", None))


def _invalid(node: ast.AST | None, what: str) -> CandidateError:
    return CandidateError("invalid_code", what, getattr(node, "lineno", None))
