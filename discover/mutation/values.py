"""Numbers: moving a hyperparameter or a code constant to a nearby value of the same nature."""

from __future__ import annotations

import ast
import math
import random

from discover.mutation.ast_tools import _number, _Site

_SMALL_VALUES = (1e-4, 1e-3, 1e-2, 0.1)


def _nice(x: float, rng: random.Random) -> float:
    """``x`` rounded to one or two significant digits."""
    return float(f"{x:.{rng.choice((1, 2))}g}")


def _jiggle(x: float, rng: random.Random, spread: float = 3.0) -> float:
    """``x`` times a log-uniform factor in [1/spread, spread]."""
    return x * spread ** rng.uniform(-1.0, 1.0)


def perturb_value(value: float, rng: random.Random) -> float:
    """A different value near ``value`` of the same nature.

    Values in (0, 1) stay in (0, 1) (from 0.5 up, ``1 - value`` moves on a log scale, so 0.999
    becomes 0.998 or 0.9995); other values keep their sign (so ``lr`` stays positive) and move
    by a log-uniform factor; zero becomes a small nice value.
    """
    for _ in range(16):
        if value == 0:
            new = rng.choice(_SMALL_VALUES)
        elif 0.5 <= value < 1:
            new = round(1 - _nice(_jiggle(1 - value, rng), rng), 12)
        elif 0 < value < 0.5:
            new = _nice(_jiggle(value, rng), rng)
        else:
            new = math.copysign(_nice(_jiggle(abs(value), rng), rng), value)
        if new != value and (not 0 < value < 1 or 0 < new < 1):
            return new
    return (1 + value) / 2 if 0 < value < 1 else 2 * value or 0.1


def _perturb_code_number(value: int | float, rng: random.Random) -> int | float:
    if isinstance(value, int):
        options = [v for v in (value - 1, value + 1, 2 * value, value // 2) if 1 <= v != value]
        return rng.choice(options)
    return perturb_value(value, rng)


def _fmt(value: float) -> str:
    return f"{value:g}"


def _is_code_number(site: _Site) -> bool:
    """A non-zero number literal of the code that is a quantity, not a dimension (``size(x, 1)``)."""
    node, holder = site.node, site.holder
    if not (isinstance(node, ast.Constant) and _number(node) is not None and node.value != 0):
        return False
    return not (isinstance(holder, ast.Call) and isinstance(holder.func, ast.Name) and holder.func.id == "size")
