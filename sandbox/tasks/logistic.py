"""Logistic regression: a linearly separable problem and a generic (regularised) one.

    loss(w, b) = mean_i softplus(-y_i (x_i . w + b))  [+ lambda/2 |w|^2],   y_i in {-1, +1}

On separable data the loss has no minimiser: it falls towards 0 only as |w| grows along the
max-margin direction, at a rate set by how fast an optimizer can grow the weights (gradient
descent slows to O(1/t); normalised and sign-based steps keep going). Larger steps are always
better for plain gradient methods here, so their tuned learning rate sits at the top of any
grid; AdamW instead levels off where weight decay balances its bounded steps. The generic case
is strongly convex, with a finite optimum an optimizer must actually settle into.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sandbox.tasks import data
from sandbox.tasks.base import Batch, Params, Task

DATA_SEED = 11  # fixes the separable data set and its hidden separating direction


def _logistic_loss(params: Params, batch: Batch) -> torch.Tensor:
    margins = batch["y"] * (batch["x"] @ params["w"] + params["b"])
    return F.softplus(-margins).mean()


class SeparableLogReg(Task):
    name = "logreg_separable"
    version = 1
    steps = 300
    schedule = "constant"
    description = "logistic regression on 400 linearly separable 20-D points (margin >= 0.1); the loss only vanishes as |w| grows"
    loss_name = "train_logistic"
    test_metric_name = "test_acc"
    higher_is_better = True
    stochastic = False
    family = "convex"
    default_device_ok = False
    dim = 20
    num_train = 400
    num_test = 1000
    margin = 0.1

    def __init__(self, variant: int = 0) -> None:
        super().__init__(variant)
        gen = torch.Generator().manual_seed(DATA_SEED)
        direction = torch.randn(self.dim, generator=gen)
        direction /= direction.norm()
        x, y = self._sample(self.num_train * 4, direction, gen)
        self._train = {"x": x[: self.num_train], "y": y[: self.num_train]}
        x, y = self._sample(self.num_test * 4, direction, gen)
        self._test = {"x": x[: self.num_test], "y": y[: self.num_test]}

    def _sample(self, count: int, direction: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        # Anisotropic features (scales 0.3 .. 3) so the problem is also badly conditioned.
        scales = torch.logspace(-0.5, 0.5, self.dim)
        x = torch.randn(count, self.dim, generator=gen) * scales
        score = x @ direction
        keep = score.abs() >= self.margin  # rejection sampling leaves a margin around the plane
        x, score = x[keep], score[keep]
        if len(x) < count // 4:
            raise RuntimeError(f"{self.name}: only {len(x)} of {count} samples clear the margin")
        return x.contiguous(), torch.sign(score)

    def init_params(self, seed: int) -> Params:
        gen = torch.Generator().manual_seed(seed)
        return {"w": 0.01 * torch.randn(self.dim, generator=gen), "b": torch.zeros(())}

    def loss(self, params: Params, batch: Batch) -> torch.Tensor:
        return _logistic_loss(params, batch)

    def batch(self, step: int, seed: int) -> Batch:
        return self._train

    def eval_batch(self) -> Batch:
        return self._train

    def val_batch(self) -> Batch:
        return self._test

    def test_metric(self, params: Params, seed: int) -> float:
        margins = self._test["y"] * (self._test["x"] @ params["w"] + params["b"])
        return float((margins > 0).float().mean())


class BreastCancerLogReg(Task):
    name = "logreg_breast_cancer"
    version = 1
    steps = 100  # tuned AdamW reaches the optimum's neighbourhood by step ~100
    schedule = "constant"
    description = "L2-regularised logistic regression on sklearn breast_cancer (30 standardised features)"
    loss_name = "train_logistic_l2"
    test_metric_name = "test_acc"
    higher_is_better = True
    stochastic = False
    family = "convex"
    default_device_ok = False
    l2 = 1e-4

    def __init__(self, variant: int = 0) -> None:
        super().__init__(variant)
        split = data.breast_cancer()
        self._train = {"x": split.x_train, "y": split.y_train.float() * 2 - 1, "l2": torch.tensor(self.l2)}
        self._test = {"x": split.x_test, "y": split.y_test.float() * 2 - 1}

    def init_params(self, seed: int) -> Params:
        gen = torch.Generator().manual_seed(seed)
        return {"w": 0.1 * torch.randn(self._train["x"].shape[1], generator=gen), "b": torch.zeros(())}

    def loss(self, params: Params, batch: Batch) -> torch.Tensor:
        return _logistic_loss(params, batch) + 0.5 * batch["l2"] * (params["w"] * params["w"]).sum()

    def batch(self, step: int, seed: int) -> Batch:
        return self._train

    def eval_batch(self) -> Batch:
        return self._train

    def val_batch(self) -> Batch:
        return {"x": data.breast_cancer().x_val, "y": data.breast_cancer().y_val.float() * 2 - 1, "l2": self._train["l2"]}

    def test_metric(self, params: Params, seed: int) -> float:
        margins = self._test["y"] * (self._test["x"] @ params["w"] + params["b"])
        return float((margins > 0).float().mean())
