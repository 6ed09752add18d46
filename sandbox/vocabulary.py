"""The vocabulary a candidate program may use, and nothing else.

Every op is a pure function of tensors and Python numbers built only from ``torch`` calls, so
that (a) it runs under ``torch.func.vmap`` (no data-dependent Python control flow), and (b) the
exporter can copy its source into a standalone module that imports only torch and reproduces
the sandbox bit for bit. Each op's docstring is its one-line meaning; the same text is shown to
the LLM (see :func:`describe`).

Ops accept tensors or Python numbers; on numbers they return numbers where that is natural
(``sqrt(1 - beta2 ** step)`` is a float), so bias corrections stay cheap scalars.
"""

from __future__ import annotations

import torch

def _f64(x) -> torch.Tensor:
    # Scalar maths in float64 so a bias correction computed on Python numbers loses nothing.
    return torch.tensor(float(x), dtype=torch.float64)


# --- elementwise -------------------------------------------------------------------------


def abs(x):
    """|x|, elementwise."""
    return x.abs() if isinstance(x, torch.Tensor) else (x if x >= 0 else -x)


def sign(x):
    """-1, 0 or +1 by the sign of x, elementwise."""
    return torch.sign(x) if isinstance(x, torch.Tensor) else float((x > 0) - (x < 0))


def sqrt(x):
    """Square root, elementwise (x >= 0)."""
    # On numbers, match torch: NaN for a negative input (Python would return a complex number).
    return torch.sqrt(x) if isinstance(x, torch.Tensor) else float(torch.sqrt(_f64(x)))


def rsqrt(x):
    """1 / sqrt(x), elementwise."""
    return torch.rsqrt(x) if isinstance(x, torch.Tensor) else float(torch.rsqrt(_f64(x)))


def exp(x):
    """e ** x, elementwise."""
    return torch.exp(x) if isinstance(x, torch.Tensor) else float(torch.exp(_f64(x)))


def log(x):
    """Natural logarithm, elementwise (x > 0)."""
    return torch.log(x) if isinstance(x, torch.Tensor) else float(torch.log(_f64(x)))


def square(x):
    """x * x, elementwise."""
    return x * x


def tanh(x):
    """Hyperbolic tangent, elementwise; a smooth sign with values in (-1, 1)."""
    return torch.tanh(x) if isinstance(x, torch.Tensor) else float(torch.tanh(_f64(x)))


def sigmoid(x):
    """1 / (1 + exp(-x)), elementwise."""
    return torch.sigmoid(x) if isinstance(x, torch.Tensor) else float(torch.sigmoid(_f64(x)))


def relu(x):
    """max(x, 0), elementwise."""
    return torch.relu(x) if isinstance(x, torch.Tensor) else (x if x > 0 else 0.0)


def power(x, p):
    """x ** p for a number p (x >= 0 for fractional p), elementwise."""
    return x**p


def clamp(x, lo, hi):
    """x limited to the interval [lo, hi], elementwise (lo, hi numbers)."""
    if isinstance(x, torch.Tensor):
        return torch.clamp(x, lo, hi)
    return min(max(x, lo), hi)


def maximum(a, b):
    """The larger of a and b, elementwise (tensors or numbers)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not isinstance(a, torch.Tensor):
            a, b = b, a
        return torch.maximum(a, b) if isinstance(b, torch.Tensor) else torch.clamp(a, min=b)
    return a if a >= b else b


def minimum(a, b):
    """The smaller of a and b, elementwise (tensors or numbers)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not isinstance(a, torch.Tensor):
            a, b = b, a
        return torch.minimum(a, b) if isinstance(b, torch.Tensor) else torch.clamp(a, max=b)
    return a if a <= b else b


def where(cond, a, b):
    """a where cond is true, else b, elementwise (cond is a comparison of tensors)."""
    return torch.where(cond, a, b)


def interp(x, y, w):
    """w * y + (1 - w) * x: an exponential moving average when y is the old average."""
    return torch.lerp(x, y, w) if isinstance(x, torch.Tensor) else x + w * (y - x)


# --- constructors ------------------------------------------------------------------------


def zeros_like(x):
    """A tensor of zeros with the shape, dtype and device of x."""
    return torch.zeros_like(x)


def ones_like(x):
    """A tensor of ones with the shape, dtype and device of x."""
    return torch.ones_like(x)


def full_like(x, value):
    """A tensor filled with the number value, shaped like x."""
    return torch.full_like(x, value)


# --- reductions (return 0-d tensors that broadcast against x) ----------------------------


def mean(x):
    """The mean of all entries of x (a 0-d tensor)."""
    return x.mean()


def sum(x):
    """The sum of all entries of x (a 0-d tensor)."""
    return x.sum()


def rms(x):
    """Root mean square of all entries of x: sqrt(mean(x * x)) (a 0-d tensor)."""
    return (x * x).mean().sqrt()


def norm(x):
    """Euclidean (Frobenius) norm of all entries of x (a 0-d tensor)."""
    return (x * x).sum().sqrt()


def dot(a, b):
    """Sum of a * b over all entries: the inner product of two same-shaped tensors."""
    return (a * b).sum()


def amax(x):
    """The largest entry of x (a 0-d tensor)."""
    return x.amax()


# --- shape facts (numbers, so they may steer `if`) ----------------------------------------


def ndim(x):
    """Number of dimensions of x (an int): 1 for a bias, 2 for a weight matrix."""
    return x.dim()


def numel(x):
    """Number of entries of x (an int)."""
    return x.numel()


def size(x, dim):
    """Length of dimension dim of x (an int; dim -1 is the last): size(w, 0) is a matrix's rows."""
    return x.shape[dim]


# --- matrix ops (for 2-D parameters) ------------------------------------------------------


def matmul(a, b):
    """Matrix product a @ b of two 2-D tensors."""
    return a @ b


def transpose(x):
    """The transpose of a 2-D tensor (a no-op for fewer dimensions)."""
    return x.transpose(-2, -1) if x.dim() >= 2 else x


def newton_schulz(x, steps):
    """An approximately orthogonal matrix with x's row/column space (Muon's quintic
    Newton-Schulz iteration, `steps` <= 16 iterations); tensors of other ranks pass through."""
    if x.dim() != 2:
        return x
    a, b, c = 3.4445, -4.7750, 2.0315
    tall = x.shape[0] > x.shape[1]
    y = x.transpose(0, 1) if tall else x
    y = y / (torch.linalg.vector_norm(y) + 1e-7)
    for _ in range(min(int(steps), 16)):
        s = y @ y.transpose(0, 1)
        y = a * y + (b * s + c * (s @ s)) @ y
    return y.transpose(0, 1) if tall else y


OPS = {
    fn.__name__: fn
    for fn in (
        abs, sign, sqrt, rsqrt, exp, log, square, tanh, sigmoid, relu, power, clamp,
        maximum, minimum, where, interp,
        zeros_like, ones_like, full_like,
        mean, sum, rms, norm, dot, amax,
        ndim, numel, size,
        matmul, transpose, newton_schulz,
    )
}
"""Name -> function: the complete set of callables a candidate may use."""

HELPERS = {"_f64": _f64}
"""Private helpers the ops rely on; the exporter copies them along with the ops."""


def describe() -> str:
    """One line per op, ``name(args): meaning``; the text the LLM sees."""
    import inspect

    lines = []
    for name, fn in OPS.items():
        args = ", ".join(inspect.signature(fn).parameters)
        meaning = " ".join(inspect.getdoc(fn).split())
        lines.append(f"{name}({args}): {meaning}")
    return "\n".join(lines)
