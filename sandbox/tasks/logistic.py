"""Logistic regression: a separable, badly conditioned problem and a generic one, both with L2.

    loss(w, b) = mean_i softplus(-y_i (x_i . w + b)) + lambda/2 |w|^2,   y_i in {-1, +1}

Both are strongly convex with a finite optimum an optimizer must actually settle into. On
separable data the unregularised loss has no minimiser (it falls towards 0 only as |w| grows,
which rewards any rule that just scales its step: v1 of ``logreg_separable`` was full-batch and
had every optimizer's best learning rate at the top of the grid); the L2 term puts the optimum
at a finite |w| (~5.5) along the max-margin direction, and minibatches give large steps a noise
floor, so the best learning rate is a trade-off again. Its validation value is the same
regularised objective on a fresh sample (the unregularised loss on separable data would again
reward growing |w| for ever).

``logreg_breast_cancer`` is full-batch on real data; its validation value is the unregularised
logistic loss on the held-out patients. Test metrics are accuracies on a third sample.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sandbox.tasks import data
from sandbox.tasks.base import Batch, Params, Task, minibatch_indices

DATA_SEED = 11  # fixes the separable data sets and their hidden separating direction


def _logistic_loss(params: Params, batch: Batch) -> torch.Tensor:
    margins = batch["y"] * (batch["x"] @ params["w"] + params["b"])
    return F.softplus(-margins).mean()


def _regularised_loss(params: Params, batch: Batch) -> torch.Tensor:
    return _logistic_loss(params, batch) + 0.5 * batch["l2"] * (params["w"] * params["w"]).sum()


def _accuracy(params: Params, batch: Batch) -> float:
    margins = batch["y"] * (batch["x"] @ params["w"] + params["b"])
    return float((margins > 0).float().mean())


class SeparableLogReg(Task):
    name = "logreg_separable"
    version = 2
    steps = 500
    schedule = "warmup_cosine"
    description = ("L2-regularised logistic regression on 400 linearly separable 20-D points (margin >= 0.1, "
                   "feature scales 0.1..10), minibatches of 32; validation: the same objective on 400 fresh points")
    loss_name = "train_logistic_l2"
    val_metric_name = "val_logistic_l2"
    test_metric_name = "test_acc"
    higher_is_better = True
    stochastic = True
    exact_stacked_grad = True
    family = "convex"
    default_device_ok = False
    dim = 20
    margin = 0.1
    l2 = 1e-3
    batch_size = 32
    num_train = 400
    num_val = 400
    num_test = 1000
    variant_space = {"dim": (10, 20, 40), "margin": (0.05, 0.1, 0.2), "l2": (3e-4, 1e-3, 3e-3),
                     "batch_size": (16, 32, 64)}

    def __init__(self, variant: int = 0) -> None:
        super().__init__(variant)
        gen = torch.Generator().manual_seed(DATA_SEED)
        direction = torch.randn(self.dim, generator=gen)
        direction /= direction.norm()
        x, y = self._sample(self.num_train + self.num_val + self.num_test, direction, gen)
        cuts = (self.num_train, self.num_train + self.num_val)
        l2 = torch.tensor(float(self.l2))
        self._train = {"x": x[: cuts[0]], "y": y[: cuts[0]], "l2": l2}
        self._val = {"x": x[cuts[0]: cuts[1]].contiguous(), "y": y[cuts[0]: cuts[1]].contiguous(), "l2": l2}
        self._test = {"x": x[cuts[1]:].contiguous(), "y": y[cuts[1]:].contiguous()}

    def _sample(self, count: int, direction: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        # Anisotropic features (scales 0.1 .. 10) so the problem is also badly conditioned.
        scales = torch.logspace(-1.0, 1.0, self.dim)
        x = torch.randn(4 * count, self.dim, generator=gen) * scales
        score = x @ direction
        keep = score.abs() >= self.margin  # rejection sampling leaves a margin around the plane
        x, score = x[keep][:count], score[keep][:count]
        if len(x) < count:
            raise RuntimeError(f"{self.name}: only {len(x)} of {count} samples clear the margin")
        return x.contiguous(), torch.sign(score)

    def init_params(self, seed: int) -> Params:
        gen = torch.Generator().manual_seed(seed)
        return {"w": 0.01 * torch.randn(self.dim, generator=gen), "b": torch.zeros(())}

    def loss(self, params: Params, batch: Batch) -> torch.Tensor:
        return _regularised_loss(params, batch)

    def batch(self, step: int, seed: int) -> Batch:
        index = minibatch_indices(self.num_train, self.batch_size, step, seed)
        return {"x": self._train["x"][index], "y": self._train["y"][index], "l2": self._train["l2"]}

    def eval_batch(self) -> Batch:
        return self._train

    def val_batch(self) -> Batch:
        return self._val

    def test_metric(self, params: Params, seed: int) -> float:
        return _accuracy(params, self._test)


class BreastCancerLogReg(Task):
    name = "logreg_breast_cancer"
    version = 2
    steps = 100  # tuned AdamW reaches the optimum's neighbourhood by step ~100
    schedule = "constant"
    description = "L2-regularised logistic regression on sklearn breast_cancer (30 standardised features); validation on 57 held-out patients"
    loss_name = "train_logistic_l2"
    val_metric_name = "val_logistic"
    test_metric_name = "test_acc"
    higher_is_better = True
    stochastic = False
    family = "convex"
    default_device_ok = False
    l2 = 1e-4
    init_scale = 0.1
    train_fraction = 1.0
    variant_space = {"l2": (1e-4, 3e-4, 1e-3), "init_scale": (0.1, 0.3, 1.0), "train_fraction": (0.5, 0.75, 1.0)}

    def __init__(self, variant: int = 0) -> None:
        super().__init__(variant)
        split = data.breast_cancer()
        n = round(self.train_fraction * len(split.x_train))
        self._train = {"x": split.x_train[:n], "y": split.y_train[:n].float() * 2 - 1, "l2": torch.tensor(float(self.l2))}
        self._val = {"x": split.x_val, "y": split.y_val.float() * 2 - 1}
        self._test = {"x": split.x_test, "y": split.y_test.float() * 2 - 1}

    def init_params(self, seed: int) -> Params:
        gen = torch.Generator().manual_seed(seed)
        return {"w": self.init_scale * torch.randn(self._train["x"].shape[1], generator=gen), "b": torch.zeros(())}

    def loss(self, params: Params, batch: Batch) -> torch.Tensor:
        return _regularised_loss(params, batch)

    def batch(self, step: int, seed: int) -> Batch:
        return self._train

    def eval_batch(self) -> Batch:
        return self._train

    def val_batch(self) -> Batch:
        return self._val

    def val_loss(self, params: Params) -> torch.Tensor:
        return _logistic_loss(params, self._val)

    def test_metric(self, params: Params, seed: int) -> float:
        return _accuracy(params, self._test)
