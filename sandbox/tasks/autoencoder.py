"""A small autoencoder on sklearn's digits.

    x (64 pixels in [0, 1]) -> tanh(W_1 x + b_1) (16 units) -> sigmoid(W_2 h + b_2) -> x'
    loss = mean squared reconstruction error per pixel

Validation is the reconstruction error on the 180 held-out validation images, the test metric
on the 179 test images. Variants draw the code size, the batch size and the initialisation gain.
"""

from __future__ import annotations

import torch

from sandbox.tasks import data
from sandbox.tasks.base import Batch, FixedSplitsTask, Params, minibatch_indices
from sandbox.tasks.mlp import init_mlp


class DigitsAutoencoder(FixedSplitsTask):
    name = "autoencoder_digits"
    version = 2
    steps = 1000
    schedule = "warmup_cosine"
    description = ("64-16-64 tanh/sigmoid autoencoder on sklearn digits, minibatches of 128; validation on 180 "
                   "held-out images")
    loss_name = "eval_batch_mse"
    val_metric_name = "val_mse"
    test_metric_name = "test_mse"
    higher_is_better = False
    stochastic = True
    exact_stacked_grad = True
    family = "generative"
    default_device_ok = True
    code_size = 16
    batch_size = 128
    init_gain = 1.0
    eval_size = 128
    variant_space = {"code_size": (8, 16, 32), "batch_size": (64, 128, 256), "init_gain": (0.5, 1.0, 2.0)}

    def __init__(self, variant: int = 0) -> None:
        super().__init__(variant)
        split = data.digits()
        self._x, self._x_test = split.x_train, split.x_test
        self._eval = {"x": self._x[: self.eval_size]}
        self._val = {"x": split.x_val}

    def init_params(self, seed: int) -> Params:
        params = init_mlp((64, self.code_size, 64), seed)
        return {k: v * self.init_gain if k.startswith("w") else v for k, v in params.items()}

    @staticmethod
    def _reconstruct(params: Params, x: torch.Tensor) -> torch.Tensor:
        code = torch.tanh(x @ params["w1"] + params["b1"])
        return torch.sigmoid(code @ params["w2"] + params["b2"])

    def loss(self, params: Params, batch: Batch) -> torch.Tensor:
        error = self._reconstruct(params, batch["x"]) - batch["x"]
        return (error * error).mean()

    def batch(self, step: int, seed: int) -> Batch:
        return {"x": self._x[minibatch_indices(len(self._x), self.batch_size, step, seed)]}

    def test_metric(self, params: Params, seed: int) -> float:
        return float(self.loss(params, {"x": self._x_test}))
