"""A mixture density network (Bishop, 1994) on the inverse of a noisy sine: a multi-modal regression.

Data (Bishop's classic): ``t ~ U(0, 1)``, ``x = t + 0.3 sin(2 pi t) + N(0, noise^2)``; the task is to
predict the density of ``t`` given ``x``. For x near 0.5 three values of t are possible, so a
least-squares fit predicts their useless average; the network must output a mixture instead:

    h = tanh(W_2 tanh(W_1 x' + b_1) + b_2)              (x' = standardised x; width H)
    q(t | x) = sum_k pi_k N(t; mu_k, sigma_k^2),   (logits pi, mu, softplus^-1 sigma) = h W_3 + b_3

Loss: ``-log q(t | x) + log p(t | x)``, the log-likelihood ratio against the true conditional
density ``p(t | x) = N(x; g(t), noise^2) 1[0 <= t <= 1] / p(x)`` (``p(x)`` by midpoint quadrature
over t, once, for the fixed data sets). Its mean is a Monte-Carlo estimate of the conditional KL
divergence, >= 0 with infimum 0 for a perfect model, so the loss starts positive; it differs from
the negative log-likelihood by a constant of the data, so its gradients are maximum likelihood's.
Mixture NLL is a hard optimisation target: responsibilities, collapsing variances and dead
components make the curvature change by orders of magnitude over a run. Train, validation and test
are disjoint draws from fixed seeds; the run seed changes the initialisation and the minibatches.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from sandbox.tasks.base import Batch, FixedSplitsTask, Params, minibatch_indices

DATA_SEED = 61
TRAIN_SIZE = 4096
VAL_SIZE = 1024
TEST_SIZE = 1024
EVAL_SIZE = 256
QUADRATURE = 4096  # spacing 1/4096 in t moves g(t) by <= 7e-4, far below the noise


def _g(t: torch.Tensor) -> torch.Tensor:
    return t + 0.3 * torch.sin(2 * math.pi * t)


def conditional_log_density(t: torch.Tensor, x: torch.Tensor, noise: float) -> torch.Tensor:
    """log p(t | x) of the data's generating process, float64."""
    grid = (torch.arange(QUADRATURE, dtype=torch.float64) + 0.5) / QUADRATURE

    def log_normal(value: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        return -0.5 * ((value - mean) / noise) ** 2 - math.log(noise * math.sqrt(2 * math.pi))

    log_px = torch.logsumexp(log_normal(x[:, None], _g(grid)[None, :]), dim=1) - math.log(QUADRATURE)
    return log_normal(x, _g(t)) - log_px


class SineMixtureDensity(FixedSplitsTask):
    name = "mdn_inverse_sine"
    version = 1
    steps = 1000
    schedule = "warmup_cosine"
    description = ("mixture density network (1-32-32 tanh, 5 Gaussians) on Bishop's inverse noisy sine, minibatches "
                   "of 64 from 4096; validation: conditional KL estimate on 1024 other points")
    family = "generative"
    loss_name = "eval_batch_kl"
    val_metric_name = "val_kl"
    test_metric_name = "test_kl"
    higher_is_better = False
    stochastic = True
    exact_stacked_grad = True
    default_device_ok = False
    hidden = 32
    components = 5
    batch_size = 64
    noise = 0.05
    variant_space = {"hidden": (16, 32, 64), "components": (3, 5, 8), "batch_size": (32, 64, 128),
                     "noise": (0.03, 0.05, 0.08)}

    def __init__(self, variant: int = 0) -> None:
        super().__init__(variant)
        gen = torch.Generator().manual_seed(DATA_SEED)
        total = TRAIN_SIZE + VAL_SIZE + TEST_SIZE
        t = torch.rand(total, generator=gen, dtype=torch.float64)
        x = _g(t) + self.noise * torch.randn(total, generator=gen, dtype=torch.float64)
        log_p = conditional_log_density(t, x, self.noise)
        rows = {"x": ((x - 0.5) / 0.35).float(), "t": t.float(), "log_p": log_p.float()}
        cuts = (TRAIN_SIZE, TRAIN_SIZE + VAL_SIZE)
        self._train = {k: v[: cuts[0]].contiguous() for k, v in rows.items()}
        self._val = {k: v[cuts[0]: cuts[1]].contiguous() for k, v in rows.items()}
        self._test = {k: v[cuts[1]:].contiguous() for k, v in rows.items()}
        self._eval = {k: v[:EVAL_SIZE] for k, v in self._train.items()}

    def init_params(self, seed: int) -> Params:
        gen = torch.Generator().manual_seed(seed)
        h, k = self.hidden, self.components
        # Means start spread over [0, 1] and scales at ~0.2, so every component has data nearby.
        out_bias = torch.cat([torch.zeros(k), torch.linspace(0.1, 0.9, k), torch.full((k,), math.log(math.expm1(0.2)))])
        return {
            "w1": torch.randn(1, h, generator=gen), "b1": torch.zeros(h),
            "w2": torch.randn(h, h, generator=gen) / h**0.5, "b2": torch.zeros(h),
            "w3": 0.1 * torch.randn(h, 3 * k, generator=gen) / h**0.5, "b3": out_bias,
        }

    def log_q(self, params: Params, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """log q(t | x) of the model, per row."""
        k = self.components
        h = torch.tanh(x[:, None] @ params["w1"] + params["b1"])
        h = torch.tanh(h @ params["w2"] + params["b2"])
        out = h @ params["w3"] + params["b3"]
        log_pi = torch.log_softmax(out[:, :k], dim=-1)
        mu, sigma = out[:, k: 2 * k], F.softplus(out[:, 2 * k:]) + 1e-3
        z = (t[:, None] - mu) / sigma
        log_normal = -0.5 * z * z - torch.log(sigma) - 0.5 * math.log(2 * math.pi)
        return torch.logsumexp(log_pi + log_normal, dim=-1)

    def loss(self, params: Params, batch: Batch) -> torch.Tensor:
        return (batch["log_p"] - self.log_q(params, batch["x"], batch["t"])).mean()

    def batch(self, step: int, seed: int) -> Batch:
        index = minibatch_indices(TRAIN_SIZE, self.batch_size, step, seed)
        return {k: v[index] for k, v in self._train.items()}
