"""Multi-layer perceptrons on sklearn's bundled data sets.

    logits = W_2 relu(W_1 x + b_1) + b_2,     loss = cross-entropy

Weights start at N(0, 1/fan_in) (LeCun normal), biases at zero.
"""

from __future__ import annotations

import torch

from sandbox.tasks import data
from sandbox.tasks.base import Batch, FixedSplitsTask, Params, Task, minibatch_indices


def lecun_normal(fan_in: int, fan_out: int, gen: torch.Generator) -> torch.Tensor:
    """A (fan_in, fan_out) weight with entries N(0, 1/fan_in): unit-variance activations."""
    return torch.randn(fan_in, fan_out, generator=gen) / fan_in**0.5


def init_mlp(sizes: tuple[int, ...], seed: int) -> Params:
    """``w1, b1, w2, b2, ...`` for layers of the given widths (input first)."""
    gen = torch.Generator().manual_seed(seed)
    params: Params = {}
    for k, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        params[f"w{k}"] = lecun_normal(fan_in, fan_out, gen)
        params[f"b{k}"] = torch.zeros(fan_out)
    return params


def mlp_forward(params: Params, x: torch.Tensor, activation=torch.relu) -> torch.Tensor:
    """x -> hidden layers with ``activation`` -> linear output layer."""
    layers = len(params) // 2
    for k in range(1, layers + 1):
        x = x @ params[f"w{k}"] + params[f"b{k}"]
        if k < layers:
            x = activation(x)
    return x


class DigitsMLP(FixedSplitsTask):
    name = "mlp_digits"
    version = 2
    steps = 300
    schedule = "warmup_cosine"
    description = "64-32-10 ReLU MLP on sklearn digits, minibatches of 128; validation on 180 held-out images"
    family = "mlp"
    loss_name = "eval_batch_ce"
    val_metric_name = "val_ce"
    test_metric_name = "test_acc"
    higher_is_better = True
    stochastic = True
    exact_stacked_grad = True
    default_device_ok = True
    hidden = 32
    batch_size = 128
    eval_size = 256
    init_gain = 1.0
    variant_space = {"hidden": (16, 32, 64, 128), "batch_size": (32, 64, 128, 256), "init_gain": (0.5, 1.0, 2.0)}

    def __init__(self, variant: int = 0) -> None:
        super().__init__(variant)
        self.sizes = (64, self.hidden, 10)
        split = data.digits()
        self._x, self._y = split.x_train, data.one_hot(split.y_train, 10)
        self._x_test, self._y_test = split.x_test, split.y_test
        self._eval = {"x": self._x[: self.eval_size], "y": self._y[: self.eval_size]}
        self._val = {"x": split.x_val, "y": data.one_hot(split.y_val, 10)}

    def init_params(self, seed: int) -> Params:
        params = init_mlp(self.sizes, seed)
        return {k: v * self.init_gain if k.startswith("w") else v for k, v in params.items()}

    def loss(self, params: Params, batch: Batch) -> torch.Tensor:
        return data.cross_entropy(mlp_forward(params, batch["x"]), batch["y"])

    def batch(self, step: int, seed: int) -> Batch:
        index = minibatch_indices(len(self._x), self.batch_size, step, seed)
        return {"x": self._x[index], "y": self._y[index]}

    def test_metric(self, params: Params, seed: int) -> float:
        return data.accuracy(mlp_forward(params, self._x_test), self._y_test)


class WineMLP(Task):
    name = "mlp_wine"
    version = 2
    steps = 40  # wine is easy: tuned AdamW's validation loss is ~1e-3 by step 25 of a 100-step run
    schedule = "warmup_cosine"
    description = "13-16-3 tanh MLP on sklearn wine (125 training samples), minibatches of 16; validation on 27 held-out samples"
    loss_name = "train_ce"
    val_metric_name = "val_ce"
    test_metric_name = "test_acc"
    higher_is_better = True
    stochastic = True
    exact_stacked_grad = True
    family = "mlp"
    default_device_ok = False
    hidden = 16
    batch_size = 16
    init_gain = 1.0
    features = 13
    variant_space = {"hidden": (8, 16, 32), "batch_size": (8, 16, 32), "init_gain": (0.5, 1.0, 2.0),
                     "features": (6, 13)}

    def __init__(self, variant: int = 0) -> None:
        super().__init__(variant)
        split = data.wine()
        # A variant may keep only the first few of the 13 features: a harder, overlapping problem.
        k = self.features
        self.sizes = (k, self.hidden, split.num_classes)
        self._train = {"x": split.x_train[:, :k].contiguous(), "y": data.one_hot(split.y_train, split.num_classes)}
        self._val = {"x": split.x_val[:, :k].contiguous(), "y": data.one_hot(split.y_val, split.num_classes)}
        self._x_test, self._y_test = split.x_test[:, :k].contiguous(), split.y_test

    def init_params(self, seed: int) -> Params:
        params = init_mlp(self.sizes, seed)
        return {k: v * self.init_gain if k.startswith("w") else v for k, v in params.items()}

    def loss(self, params: Params, batch: Batch) -> torch.Tensor:
        return data.cross_entropy(mlp_forward(params, batch["x"], torch.tanh), batch["y"])

    def batch(self, step: int, seed: int) -> Batch:
        index = minibatch_indices(len(self._train["y"]), self.batch_size, step, seed)
        return {"x": self._train["x"][index], "y": self._train["y"][index]}

    def eval_batch(self) -> Batch:
        return self._train

    def val_batch(self) -> Batch:
        return self._val

    def test_metric(self, params: Params, seed: int) -> float:
        return data.accuracy(mlp_forward(params, self._x_test, torch.tanh), self._y_test)
