"""A RealNVP normalising flow (Dinh et al., 2017) fitted by maximum likelihood to two moons.

Data: the two-moons density, generated from a fixed seed (never the run seed): a point on one
of two interleaved half circles, ``(cos t, sin t)`` or ``(1 - cos t, 1/2 - sin t)`` with
``t ~ U(0, pi)``, shifted by ``(-1/2, -1/4)`` to centre it, plus N(0, ``noise``^2 I).
Train, validation and test sets are disjoint draws.

Model: ``couplings`` affine coupling layers alternating which coordinate they transform::

    y_a = x_a,    y_b = x_b * exp(s) + t,    (s, t) = MLP(x_a)   (1 -> H -> H -> 2, tanh),
    s = 2 tanh(s_raw / 2)                                          (bounded log-scale)

into a standard normal base; ``log q(x) = log N(f(x); 0, I) + sum of s``.

Loss: ``-log q(x) + log p(x)``, the log-likelihood ratio against the true data density ``p``
(computed by quadrature over ``t``, once, for the fixed data sets). Its mean over the data is a
Monte-Carlo estimate of KL(p || q) >= 0, whose infimum 0 is reached by a perfect model, so the
loss starts positive and its scale does not depend on the noise level. It equals the negative
log-likelihood up to a constant of the data, so its gradients are exactly maximum likelihood's.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from sandbox.tasks.base import Batch, FixedSplitsTask, Params, minibatch_indices

DATA_SEED = 5150
TRAIN_SIZE = 4096
VAL_SIZE = 1024
TEST_SIZE = 1024
EVAL_SIZE = 256
QUADRATURE = 512  # points per moon: spacing pi/512 << noise, so the midpoint rule is exact to ~1e-6
SHIFT = (-0.5, -0.25)


def _moon_centres(t: torch.Tensor) -> torch.Tensor:
    """(2 * len(t), 2) points on both moons (before noise) at parameters t, shifted."""
    upper = torch.stack([torch.cos(t), torch.sin(t)], -1)
    lower = torch.stack([1 - torch.cos(t), 0.5 - torch.sin(t)], -1)
    return torch.cat([upper, lower]) + torch.tensor(SHIFT, dtype=t.dtype)


def sample_moons(count: int, noise: float, gen: torch.Generator) -> torch.Tensor:
    """``count`` points from the two-moons density (float64)."""
    t = torch.rand(count, generator=gen, dtype=torch.float64) * math.pi
    which = torch.rand(count, generator=gen) < 0.5
    centres = _moon_centres(t)
    points = torch.where(which[:, None], centres[:count], centres[count:])
    return points + noise * torch.randn(count, 2, generator=gen, dtype=torch.float64)


def moons_log_density(x: torch.Tensor, noise: float) -> torch.Tensor:
    """log p(x) of the two-moons density: a Gaussian blur of the uniform density on the two
    half circles, by midpoint quadrature over t (float64)."""
    t = (torch.arange(QUADRATURE, dtype=torch.float64) + 0.5) * math.pi / QUADRATURE
    centres = _moon_centres(t)  # (2Q, 2): each point has weight 1/(2Q)
    sq = ((x.double()[:, None, :] - centres[None]) ** 2).sum(-1)
    log_kernel = -sq / (2 * noise**2) - math.log(2 * math.pi * noise**2)
    return torch.logsumexp(log_kernel, dim=1) - math.log(len(centres))


@lru_cache(maxsize=None)
def _data_sets(noise: float) -> tuple[Batch, Batch, Batch]:
    """Train, validation and test sets ``{"x", "log_p"}`` (disjoint draws from one generator)."""
    gen = torch.Generator().manual_seed(DATA_SEED)
    sets = [sample_moons(n, noise, gen) for n in (TRAIN_SIZE, VAL_SIZE, TEST_SIZE)]
    return tuple({"x": x.float(), "log_p": moons_log_density(x, noise).float()} for x in sets)


class MoonsRealNVP(FixedSplitsTask):
    name = "flow_moons"
    version = 1
    steps = 1000
    schedule = "warmup_cosine"
    description = "RealNVP flow (affine couplings, tanh MLPs) fitted by maximum likelihood to two moons; loss = KL estimate -log q + log p"
    family = "generative"
    loss_name = "eval_batch_kl"
    val_metric_name = "val_kl"
    test_metric_name = "test_kl"
    higher_is_better = False
    stochastic = True
    exact_stacked_grad = True
    default_device_ok = False
    couplings = 4
    hidden = 16
    batch_size = 128
    noise = 0.1
    variant_space = {"couplings": (4, 5), "hidden": (12, 16, 24), "batch_size": (64, 128, 256), "noise": (0.08, 0.1, 0.15)}

    def __init__(self, variant: int = 0) -> None:
        super().__init__(variant)
        self._train, self._val, self._test = _data_sets(self.noise)
        self._eval = {key: value[:EVAL_SIZE] for key, value in self._train.items()}

    def init_params(self, seed: int) -> Params:
        gen = torch.Generator().manual_seed(seed)
        h = self.hidden
        c = self.couplings
        # One tensor per role with a leading coupling dimension (as a scan over layers stores
        # them): 6 tensors instead of 6 per coupling, and per-tensor update calls are most of
        # the step cost of a model this small.
        return {"w1": torch.randn(c, 1, h, generator=gen), "b1": torch.zeros(c, h),
                "w2": torch.randn(c, h, h, generator=gen) / h**0.5, "b2": torch.zeros(c, h),
                # The output layer starts small: every coupling starts near the identity.
                "w3": torch.randn(c, h, 2, generator=gen) * 0.01 / h**0.5, "b3": torch.zeros(c, 2)}

    def log_q(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        """log q(x) of the flow for each row of x."""
        log_det = torch.zeros_like(x[:, 0])
        for c in range(self.couplings):
            keep, move = (0, 1) if c % 2 == 0 else (1, 0)
            a, b = x[:, keep:keep + 1], x[:, move:move + 1]
            h = torch.tanh(a @ params["w1"][c] + params["b1"][c])
            h = torch.tanh(h @ params["w2"][c] + params["b2"][c])
            out = h @ params["w3"][c] + params["b3"][c]
            s, t = 2 * torch.tanh(out[:, :1] / 2), out[:, 1:]
            b = b * torch.exp(s) + t
            x = torch.cat([a, b], -1) if keep == 0 else torch.cat([b, a], -1)
            log_det = log_det + s[:, 0]
        return -0.5 * (x * x).sum(-1) - math.log(2 * math.pi) + log_det

    def loss(self, params: Params, batch: Batch) -> torch.Tensor:
        return (batch["log_p"] - self.log_q(params, batch["x"])).mean()

    def batch(self, step: int, seed: int) -> Batch:
        index = minibatch_indices(TRAIN_SIZE, self.batch_size, step, seed)
        return {key: value[index] for key, value in self._train.items()}

