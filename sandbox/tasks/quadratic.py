"""Ill-conditioned noisy quadratics: the noisy quadratic model of Zhang et al. (NeurIPS 2019).

    f(x) = 1/2 (x - c)^T H (x - c),    H = Q diag(h) Q^T,    h log-spaced in [1/kappa, 1],
    x_0 ~ N(0, s^2 I),    x* ~ N(0, s^2 I) (fixed per workload)

At every step the centre ``c`` is drawn afresh around the optimum x* with covariance
``(s sigma)^2 H^-1``, so the gradient ``H (x - c)`` carries noise of covariance ``(s sigma)^2 H``:
large along sharp directions, as in neural-network training. The scoring loss is the noise-free
``1/2 (x - x*)^T H (x - x*)`` (c = x*), whose minimum is 0; the test metric is ``|x - x*|``.

The optimum is off the origin (version 3): with x* = 0, a rule that just shrinks its parameters
(a decay with no gradient in it) solved the task outright and scored 12.8x tuned AdamW.

Variants draw the dimension, the condition number and the noise level.

The axis-aligned version (Q = I) rewards per-coordinate preconditioning, which is exactly what
Adam does; the rotated version hides the same spectrum behind a random orthogonal basis, where a
diagonal preconditioner has nothing to latch onto and momentum SGD is hard to beat.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from sandbox.tasks.base import Batch, Params, Task, step_generator


class NoisyQuadratic(Task):
    """Shared maths; subclasses choose dimension, conditioning, noise and basis."""

    dim: ClassVar[int]
    condition: ClassVar[float]
    noise: ClassVar[float]
    basis_seed: ClassVar[int | None]
    """Seed of the random orthogonal basis Q; None for the axis-aligned quadratic."""
    OPTIMUM_SEED: ClassVar[int] = 20261205
    scale: ClassVar[float] = 0.1
    """Standard deviation of the start x_0 (and unit of the noise): sets the learning rates a
    sign-like optimizer needs (its steps are in parameter units) to the usual 1e-3 .. 1e-1."""

    loss_name = "noise_free_loss"
    test_metric_name = "dist_to_opt"
    higher_is_better = False
    stochastic = True
    exact_stacked_grad = True
    family = "classical"
    default_device_ok = False

    def __init__(self, variant: int = 0) -> None:
        super().__init__(variant)
        self._h = torch.logspace(0.0, -torch.log10(torch.tensor(self.condition)).item(), self.dim)
        if self.basis_seed is None:
            self._q = None
        else:
            gaussian = torch.randn(self.dim, self.dim, generator=torch.Generator().manual_seed(self.basis_seed))
            self._q = torch.linalg.qr(gaussian).Q.contiguous()
        self._opt = self.scale * torch.randn(self.dim, generator=torch.Generator().manual_seed(self.OPTIMUM_SEED))
        self._eval = {"c": self._opt, "h": self._h, **({} if self._q is None else {"q": self._q})}

    def init_params(self, seed: int) -> Params:
        return {"x": self.scale * torch.randn(self.dim, generator=torch.Generator().manual_seed(seed))}

    def loss(self, params: Params, batch: Batch) -> torch.Tensor:
        offset = params["x"] - batch["c"]
        # Coordinates in H's eigenbasis, offset @ Q, written as a product and a sum: a matmul runs
        # as a different kernel under vmap, and its rounding, amplified by noisy large-step runs,
        # would make batched and sequential results differ; this way they agree bit for bit.
        z = (offset.unsqueeze(-1) * batch["q"]).sum(0) if "q" in batch else offset
        return 0.5 * (batch["h"] * z * z).sum()

    def batch(self, step: int, seed: int) -> Batch:
        # c = s sigma Q diag(h^-1/2) xi, so that the gradient noise H c has covariance (s sigma)^2 H.
        xi = torch.randn(self.dim, generator=step_generator(seed, step))
        c = self.scale * self.noise * xi * self._h.rsqrt()
        if self._q is not None:
            c = self._q @ c
        return {**self._eval, "c": self._opt + c}

    def eval_batch(self) -> Batch:
        return self._eval

    def val_batch(self) -> Batch:
        return self._eval

    def test_metric(self, params: Params, seed: int) -> float:
        return float((params["x"] - self._opt).norm())


class RotatedQuadratic(NoisyQuadratic):
    name = "noisy_quadratic"
    version = 3
    steps = 1000
    schedule = "warmup_cosine"
    description = ("32-D noisy quadratic, condition number 1e3, eigenbasis a random rotation: "
                   "per-coordinate scaling cannot help, momentum SGD is strong")
    dim = 32
    condition = 1e3
    noise = 0.01
    basis_seed = 7
    variant_space = {"dim": (16, 32, 64), "condition": (1e2, 1e3, 1e4), "noise": (0.003, 0.01, 0.03)}


class AxisAlignedQuadratic(NoisyQuadratic):
    """Held out: the search quadratic re-parameterised to the coordinate axes, with a wider
    spectrum and more noise. An optimizer that only learned momentum loses Adam's edge here."""

    name = "quadratic_diagonal"
    version = 3
    steps = 1000
    schedule = "warmup_cosine"
    description = "48-D noisy quadratic, condition number 1e4, ill-conditioned along the coordinate axes"
    dim = 48
    condition = 1e4
    noise = 0.03
    basis_seed = None
    variant_space = {"dim": (24, 48, 96), "condition": (1e3, 1e4, 1e5), "noise": (0.01, 0.03, 0.1)}
