"""Ill-conditioned least-squares linear regression with correlated features, by minibatches.

Data (generated once from ``DATA_SEED``, never from the run seed): features x ~ N(0, Sigma)
with ``Sigma = Q diag(lambda) Q^T``, ``Q`` a fixed random rotation and ``lambda`` log-spaced
from ``condition`` down to 1, so every feature is correlated with every other and the
ill-conditioning is not axis-aligned; targets ``y = x . w* + noise * e``. ``w*`` has, along
eigenvector ``i``, a component ~ N(0, 1 / (d lambda_i)) (so |w*| < 1: weight decay, AdamW's
included, barely biases the solution), and every direction contributes the same ~1/(2d) to the
starting loss: the error sits in the slow (small-eigenvalue) directions as much
as in the fast ones, as with real data's power-law spectra, and a run has to fit all of them.

    loss = mean over the batch of (x . w + b - y)^2 / 2

The infimum is about ``noise^2 / 2``, the start about 1/2. This is the textbook case where a diagonal preconditioner
(Adam's) cannot undo the conditioning (the bad directions are rotated away from the axes), while
momentum on SGD with a well-tuned step does what it can (the heavy-ball rate ~ 1 - 1/sqrt(kappa)).
The small-eigenvalue directions are learned last, so the validation error keeps falling for the
whole budget.
"""

from __future__ import annotations

import math

import torch

from sandbox.tasks.base import Batch, FixedSplitsTask, Params, minibatch_indices

DATA_SEED = 8128
TRAIN_SIZE = 4096
VAL_SIZE = 1024
TEST_SIZE = 1024
EVAL_SIZE = 512


class IllConditionedLeastSquares(FixedSplitsTask):
    name = "linreg_illcond"
    version = 2
    steps = 1000
    schedule = "warmup_cosine"
    description = "least-squares linear regression, 32 correlated features (rotated spectrum, condition 1e3), minibatches of 32"
    family = "convex"
    loss_name = "eval_batch_mse"
    val_metric_name = "val_mse"
    test_metric_name = "test_mse"
    higher_is_better = False
    stochastic = True
    exact_stacked_grad = True
    default_device_ok = False
    features = 32
    condition = 1e3
    noise = 0.03
    batch_size = 32
    variant_space = {"features": (16, 32, 64), "condition": (1e2, 1e3, 1e4), "noise": (0.03, 0.1, 0.3),
                     "batch_size": (16, 32, 64)}

    def __init__(self, variant: int = 0) -> None:
        super().__init__(variant)
        d = self.features
        gen = torch.Generator().manual_seed(DATA_SEED)
        rotation = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64)).Q
        spectrum = torch.logspace(math.log10(self.condition), 0, d, dtype=torch.float64)
        root = rotation * spectrum.sqrt()  # Sigma^(1/2) = Q diag(sqrt(lambda))
        self.w_star = rotation @ (torch.randn(d, generator=gen, dtype=torch.float64) / (d * spectrum).sqrt())

        def draw(n: int) -> Batch:
            x = torch.randn(n, d, generator=gen, dtype=torch.float64) @ root.T
            y = x @ self.w_star + self.noise * torch.randn(n, generator=gen, dtype=torch.float64)
            return {"x": x.float(), "y": y.float()}

        self._train, self._val, self._test = draw(TRAIN_SIZE), draw(VAL_SIZE), draw(TEST_SIZE)
        self._eval = {key: value[:EVAL_SIZE] for key, value in self._train.items()}

    def init_params(self, seed: int) -> Params:
        gen = torch.Generator().manual_seed(seed)
        # Small enough that the steep directions do not dominate the starting loss (~1/2).
        return {"w": torch.randn(self.features, generator=gen) / (self.features * self.condition) ** 0.5,
                "b": torch.zeros(())}

    def loss(self, params: Params, batch: Batch) -> torch.Tensor:
        error = batch["x"] @ params["w"] + params["b"] - batch["y"]
        return 0.5 * (error * error).mean()

    def batch(self, step: int, seed: int) -> Batch:
        index = minibatch_indices(TRAIN_SIZE, self.batch_size, step, seed)
        return {key: value[index] for key, value in self._train.items()}

