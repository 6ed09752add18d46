"""A regression MLP on scikit-learn's diabetes data (442 patients, 10 standardised features).

    y_hat = W_3 relu(W_2 relu(W_1 x + b_1) + b_2) + b_3,     loss = mean squared error

The target (disease progression after one year) is standardised with the training split's mean
and spread, so predicting the mean scores ~1 and a linear model ~0.5. With 354 training rows and
a 64-wide net the model can memorise its training set: the validation MSE (on 44 other patients)
bottoms out and rises again, so what an optimizer reaches by the end of its budget, under a
cosine schedule and minibatch noise, is the workload (a small-data tabular regression, the kind
of problem people fit an MLP to every day). Variants draw the width, the batch size and the
initial weight gain.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from sandbox.tasks import data
from sandbox.tasks.base import Batch, FixedSplitsTask, Params, minibatch_indices
from sandbox.tasks.mlp import init_mlp, mlp_forward

EVAL_SIZE = 128  # the scoring loss is measured every step: keep it cheap


@lru_cache(maxsize=None)
def diabetes() -> data.Split:
    """sklearn diabetes as a regression split: standardised features, float targets standardised
    with the training rows' statistics; 354 train / 44 validation / 44 test."""
    x, _ = data._load("diabetes")
    from sklearn import datasets

    y = torch.tensor(datasets.load_diabetes().target, dtype=torch.float32)
    # data._split standardises x; it passes y through, so standardise y here on the train rows.
    split = data._split(x, y, data.TEST_FRACTION, standardise=True)
    mean, std = split.y_train.mean(), split.y_train.std()
    return data.Split(split.x_train, (split.y_train - mean) / std, split.x_val, (split.y_val - mean) / std,
                      split.x_test, (split.y_test - mean) / std)


class DiabetesMLP(FixedSplitsTask):
    name = "mlp_diabetes"
    version = 1
    steps = 500
    schedule = "warmup_cosine"
    description = ("10-64-64-1 ReLU regression MLP on sklearn diabetes (354 training patients), minibatches of 32; "
                   "validation MSE on 44 held-out patients")
    family = "mlp"
    loss_name = "eval_batch_mse"
    val_metric_name = "val_mse"
    test_metric_name = "test_mse"
    higher_is_better = False
    stochastic = True
    exact_stacked_grad = True
    default_device_ok = False
    hidden = 64
    batch_size = 32
    init_gain = 1.0
    variant_space = {"hidden": (32, 64, 128), "batch_size": (16, 32, 64), "init_gain": (0.5, 1.0, 2.0)}

    def __init__(self, variant: int = 0) -> None:
        super().__init__(variant)
        split = diabetes()
        self._train = {"x": split.x_train, "y": split.y_train}
        self._eval = {k: v[:EVAL_SIZE] for k, v in self._train.items()}
        self._val = {"x": split.x_val, "y": split.y_val}
        self._test = {"x": split.x_test, "y": split.y_test}

    def init_params(self, seed: int) -> Params:
        params = init_mlp((10, self.hidden, self.hidden, 1), seed)
        return {k: v * self.init_gain if k.startswith("w") else v for k, v in params.items()}

    def loss(self, params: Params, batch: Batch) -> torch.Tensor:
        error = mlp_forward(params, batch["x"]).squeeze(-1) - batch["y"]
        return (error * error).mean()

    def batch(self, step: int, seed: int) -> Batch:
        index = minibatch_indices(len(self._train["y"]), self.batch_size, step, seed)
        return {"x": self._train["x"][index], "y": self._train["y"][index]}
