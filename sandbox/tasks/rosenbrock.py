"""Rosenbrock's banana valley, as several independent 2-D copies side by side.

    f(z) = mean over pairs i of  (1 - x_i)^2 + b (y_i - x_i^2)^2,   z = (x_1, y_1, x_2, y_2, ...)

Minimum 0 at x_i = y_i = 1. Each pair starts near the classic (-1.2, 1), jittered by the seed.
The valley floor is curved and, for b = 100, its curvature ratio is ~2500: gradient steps
zig-zag across it, and a per-coordinate preconditioner helps only partly because the valley is
not axis-aligned. There is no data, so the validation value is the objective itself; the test
metric is the distance to the minimiser. Variants draw the number of pairs, the start jitter
and the valley's steepness ``b``.
"""

from __future__ import annotations

import torch

from sandbox.tasks.base import Batch, Params, Task

START = (-1.2, 1.0)


class Rosenbrock(Task):
    name = "rosenbrock"
    version = 2
    steps = 1000
    schedule = "constant"
    description = "8 independent 2-D Rosenbrock valleys (b = 100) from (-1.2, 1) +- 0.2; full-batch, noise-free"
    loss_name = "mean_rosenbrock"
    val_metric_name = "mean_rosenbrock"
    test_metric_name = "dist_to_opt"
    higher_is_better = False
    stochastic = False
    exact_stacked_grad = True
    family = "classical"
    default_device_ok = False
    pairs = 8
    jitter = 0.2
    steepness = 100.0
    variant_space = {"pairs": (4, 8, 16), "jitter": (0.1, 0.2, 0.4), "steepness": (30.0, 100.0, 300.0)}

    def __init__(self, variant: int = 0) -> None:
        super().__init__(variant)
        self._batch: Batch = {"a": torch.tensor(1.0), "b": torch.tensor(float(self.steepness))}

    def init_params(self, seed: int) -> Params:
        start = torch.tensor(START).repeat(self.pairs)
        jitter = self.jitter * torch.randn(2 * self.pairs, generator=torch.Generator().manual_seed(seed))
        return {"z": start + jitter}

    def loss(self, params: Params, batch: Batch) -> torch.Tensor:
        x, y = params["z"][0::2], params["z"][1::2]
        return ((batch["a"] - x) ** 2 + batch["b"] * (y - x * x) ** 2).mean()

    def batch(self, step: int, seed: int) -> Batch:
        return self._batch

    def eval_batch(self) -> Batch:
        return self._batch

    def val_batch(self) -> Batch:
        return self._batch

    def test_metric(self, params: Params, seed: int) -> float:
        return float((params["z"] - 1.0).norm())
