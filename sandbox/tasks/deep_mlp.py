"""A deep, poorly conditioned MLP: many tanh layers, no normalisation, badly scaled inputs.

    x (64 digit pixels, pixel j multiplied by a fixed scale s_j) -> depth x [tanh(W h)] (width w)
      -> linear w -> 10,    loss = cross-entropy

Two sources of bad conditioning that real unnormalised networks have:

* inputs on very different scales: the scales ``s_j`` are log-uniform over ``input_spread``
  decades (fixed, drawn once from ``DATA_SEED``), as when raw features in different units are
  fed in unstandardised. The first layer's curvature then spans ~``10^(2 spread)``.
* depth without normalisation or residual connections: the gradient of the early layers is a
  product of ``depth`` Jacobians, so per-layer gradient scales differ by orders of magnitude
  and a single learning rate suits no layer well.

No biases: the step cost of a model this small is mostly per-tensor update calls, and the
conditioning problem does not need them. Weights start at N(0, gain^2/fan_in) with the input layer's fan-in measured on the scaled data
(so the first pre-activations start at unit scale, as after a careful init, and only the
curvature is bad).
"""

from __future__ import annotations

import math

import torch

from sandbox.tasks import data
from sandbox.tasks.base import Batch, FixedSplitsTask, Params, minibatch_indices

DATA_SEED = 4242
EVAL_SIZE = 256


class DeepIllConditionedMLP(FixedSplitsTask):
    name = "mlp_deep_illcond"
    version = 1
    steps = 600
    schedule = "warmup_cosine"
    description = "8-hidden-layer tanh MLP (width 32, no normalisation, no biases) on sklearn digits with pixels rescaled over 3 decades, minibatches of 64"
    family = "mlp"
    loss_name = "eval_batch_ce"
    val_metric_name = "val_ce"
    test_metric_name = "test_acc"
    higher_is_better = True
    stochastic = True
    exact_stacked_grad = True
    default_device_ok = True
    depth = 8
    width = 32
    input_spread = 3.0  # decades spanned by the input scales
    batch_size = 64
    init_gain = 1.0
    variant_space = {"depth": (6, 8, 10), "width": (24, 32, 40), "input_spread": (2.0, 3.0, 4.0, 5.0),
                     "batch_size": (32, 64, 128), "init_gain": (0.8, 1.0, 1.25)}

    def __init__(self, variant: int = 0) -> None:
        super().__init__(variant)
        split = data.digits()
        gen = torch.Generator().manual_seed(DATA_SEED)
        exponents = (torch.rand(64, generator=gen) - 0.5) * self.input_spread
        self._scale = 10.0**exponents
        self._x, self._y = split.x_train * self._scale, data.one_hot(split.y_train, 10)
        # Per-weight fan-in of the first layer, on the data it sees: sum_j E[x_j^2].
        self._input_power = float((self._x**2).mean(0).sum())
        self._eval = {"x": self._x[:EVAL_SIZE], "y": self._y[:EVAL_SIZE]}
        self._val = {"x": split.x_val * self._scale, "y": data.one_hot(split.y_val, 10)}
        self._x_test, self._y_test = split.x_test * self._scale, split.y_test

    def init_params(self, seed: int) -> Params:
        gen = torch.Generator().manual_seed(seed)
        sizes = [64] + [self.width] * self.depth + [10]
        params: Params = {}
        for k, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
            power = self._input_power if k == 1 else fan_in
            gain = self.init_gain if k <= self.depth else 1.0
            params[f"w{k}"] = torch.randn(fan_in, fan_out, generator=gen) * gain / math.sqrt(power)
        return params

    def _logits(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        for k in range(1, self.depth + 1):
            x = torch.tanh(x @ params[f"w{k}"])
        return x @ params[f"w{self.depth + 1}"]

    def loss(self, params: Params, batch: Batch) -> torch.Tensor:
        return data.cross_entropy(self._logits(params, batch["x"]), batch["y"])

    def batch(self, step: int, seed: int) -> Batch:
        index = minibatch_indices(len(self._x), self.batch_size, step, seed)
        return {"x": self._x[index], "y": self._y[index]}

    def test_metric(self, params: Params, seed: int) -> float:
        return data.accuracy(self._logits(params, self._x_test), self._y_test)
