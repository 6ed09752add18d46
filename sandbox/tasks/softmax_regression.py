"""L2-regularised multinomial logistic regression on sklearn's digits, by minibatches.

    logits = x W + b,    loss = cross-entropy + (l2 / 2) |W|^2

Strongly convex with a unique minimum. The pixels are left in [0, 1] rather than standardised
(as a practitioner feeding raw pixels would), so pixels that are almost always blank give the
Hessian tiny eigenvalues along their weights: the regulariser sets the floor of the spectrum.
A setting where tuned SGD with momentum is classically competitive with Adam; the validation
cross-entropy (unregularised) is what is scored.
"""

from __future__ import annotations

import torch

from sandbox.tasks import data
from sandbox.tasks.base import Batch, FixedSplitsTask, Params, minibatch_indices

EVAL_SIZE = 256  # the scoring loss is measured every step: keep it cheap


class DigitsSoftmaxRegression(FixedSplitsTask):
    name = "softmax_l2_digits"
    version = 2
    steps = 1000
    schedule = "warmup_cosine"
    description = "L2-regularised multinomial logistic regression on raw sklearn digits pixels, minibatches of 32"
    family = "convex"
    loss_name = "eval_batch_objective"
    val_metric_name = "val_ce"
    test_metric_name = "test_acc"
    higher_is_better = True
    stochastic = True
    exact_stacked_grad = True
    default_device_ok = False
    l2 = 1e-4
    batch_size = 32
    variant_space = {"l2": (1e-5, 1e-4, 1e-3), "batch_size": (16, 32, 64)}

    def __init__(self, variant: int = 0) -> None:
        super().__init__(variant)
        split = data.digits()
        self._x, self._y = split.x_train, data.one_hot(split.y_train, 10)
        self._eval = {"x": self._x[:EVAL_SIZE], "y": self._y[:EVAL_SIZE]}
        self._val = {"x": split.x_val, "y": data.one_hot(split.y_val, 10)}
        self._x_test, self._y_test = split.x_test, split.y_test

    def init_params(self, seed: int) -> Params:
        gen = torch.Generator().manual_seed(seed)
        return {"w": torch.randn(64, 10, generator=gen) / 8.0, "b": torch.zeros(10)}

    def loss(self, params: Params, batch: Batch) -> torch.Tensor:
        w = params["w"]
        return data.cross_entropy(batch["x"] @ w + params["b"], batch["y"]) + 0.5 * self.l2 * (w * w).sum()

    def val_loss(self, params: Params) -> torch.Tensor:
        return data.cross_entropy(self._val["x"] @ params["w"] + params["b"], self._val["y"])

    def batch(self, step: int, seed: int) -> Batch:
        index = minibatch_indices(len(self._x), self.batch_size, step, seed)
        return {"x": self._x[index], "y": self._y[index]}

    def test_metric(self, params: Params, seed: int) -> float:
        return data.accuracy(self._x_test @ params["w"] + params["b"], self._y_test)
