"""A small autoencoder on sklearn's digits.

    x (64 pixels in [0, 1]) -> tanh(W_1 x + b_1) (16 units) -> sigmoid(W_2 h + b_2) -> x'
    loss = mean squared reconstruction error per pixel
"""

from __future__ import annotations

import torch

from sandbox.tasks import data
from sandbox.tasks.base import Batch, Params, Task, minibatch_indices
from sandbox.tasks.mlp import init_mlp

CODE_SIZE = 16


class DigitsAutoencoder(Task):
    name = "autoencoder_digits"
    version = 1
    steps = 300
    schedule = "warmup_cosine"
    description = f"64-{CODE_SIZE}-64 tanh/sigmoid autoencoder on sklearn digits, minibatches of 128; scoring loss on a fixed 256-image train subset"
    loss_name = "eval_batch_mse"
    test_metric_name = "test_mse"
    higher_is_better = False
    stochastic = True
    family = "generative"
    default_device_ok = True
    batch_size = 128
    eval_size = 256

    def __init__(self, variant: int = 0) -> None:
        super().__init__(variant)
        split = data.digits()
        self._x, self._x_test = split.x_train, split.x_test
        self._eval = {"x": self._x[: self.eval_size]}

    def init_params(self, seed: int) -> Params:
        return init_mlp((64, CODE_SIZE, 64), seed)

    @staticmethod
    def _reconstruct(params: Params, x: torch.Tensor) -> torch.Tensor:
        code = torch.tanh(x @ params["w1"] + params["b1"])
        return torch.sigmoid(code @ params["w2"] + params["b2"])

    def loss(self, params: Params, batch: Batch) -> torch.Tensor:
        error = self._reconstruct(params, batch["x"]) - batch["x"]
        return (error * error).mean()

    def batch(self, step: int, seed: int) -> Batch:
        return {"x": self._x[minibatch_indices(len(self._x), self.batch_size, step, seed)]}

    def eval_batch(self) -> Batch:
        return self._eval

    def val_batch(self) -> Batch:
        return {"x": data.digits().x_val}

    def test_metric(self, params: Params, seed: int) -> float:
        return float(self.loss(params, {"x": self._x_test}))
