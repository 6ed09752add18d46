"""A tiny convolutional network on sklearn's 8x8 digits.

    x (1x8x8) -> conv 3x3, stride 2, padding 1, C channels (-> 4x4) -> ReLU -> linear 16C -> 10

Weights start at N(0, gain^2/fan_in), like the MLP's. The convolution is computed as a matmul
over precomputed 3x3 patches (im2col): the same numbers as ``conv2d``, but a plain matmul batches
well under ``vmap``, where a batched-weight ``conv2d`` runs as a slow grouped convolution.
Validation is the cross-entropy on the 180 held-out validation images; the test metric is the
accuracy on the 179 test images. Variants draw the channel count, the batch size and the
initialisation gain.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sandbox.tasks import data
from sandbox.tasks.base import Batch, FixedSplitsTask, Params, minibatch_indices

POSITIONS = 16  # 4x4 outputs of the stride-2 convolution


def _patches(images: torch.Tensor) -> torch.Tensor:
    """(n, 64) flat 8x8 images -> (n, 16, 9): the zero-padded 3x3 neighbourhood of every
    second pixel in each direction (the receptive fields of a stride-2 convolution)."""
    cols = F.unfold(images.reshape(-1, 1, 8, 8), kernel_size=3, padding=1, stride=2)  # (n, 9, 16)
    return cols.transpose(1, 2).contiguous()


class DigitsCNN(FixedSplitsTask):
    name = "cnn_digits"
    version = 2
    steps = 300
    schedule = "warmup_cosine"
    description = "conv3x3/2(16)-ReLU-linear CNN on sklearn digits, minibatches of 128; validation on 180 held-out images"
    loss_name = "eval_batch_ce"
    val_metric_name = "val_ce"
    test_metric_name = "test_acc"
    higher_is_better = True
    stochastic = True
    exact_stacked_grad = True
    family = "cnn"
    default_device_ok = True
    channels = 16
    batch_size = 128
    init_gain = 1.0
    eval_size = 256
    variant_space = {"channels": (8, 16, 32), "batch_size": (32, 64, 128, 256), "init_gain": (0.5, 1.0, 2.0)}

    def __init__(self, variant: int = 0) -> None:
        super().__init__(variant)
        split = data.digits()
        self._x, self._y = _patches(split.x_train), data.one_hot(split.y_train, 10)
        self._x_test, self._y_test = _patches(split.x_test), split.y_test
        self._eval = {"x": self._x[: self.eval_size], "y": self._y[: self.eval_size]}
        self._val = {"x": _patches(split.x_val), "y": data.one_hot(split.y_val, 10)}

    def init_params(self, seed: int) -> Params:
        gen = torch.Generator().manual_seed(seed)
        features = self.channels * POSITIONS
        return {
            "conv_w": torch.randn(9, self.channels, generator=gen) * (self.init_gain / 3.0),
            "conv_b": torch.zeros(self.channels),
            "fc_w": torch.randn(features, 10, generator=gen) * (self.init_gain / features**0.5),
            "fc_b": torch.zeros(10),
        }

    @staticmethod
    def _logits(params: Params, patches: torch.Tensor) -> torch.Tensor:
        n = patches.shape[0]
        h = torch.relu(patches @ params["conv_w"] + params["conv_b"])  # (n, positions, channels)
        return h.reshape(n, -1) @ params["fc_w"] + params["fc_b"]

    def loss(self, params: Params, batch: Batch) -> torch.Tensor:
        return data.cross_entropy(self._logits(params, batch["x"]), batch["y"])

    def batch(self, step: int, seed: int) -> Batch:
        index = minibatch_indices(len(self._x), self.batch_size, step, seed)
        return {"x": self._x[index], "y": self._y[index]}

    def test_metric(self, params: Params, seed: int) -> float:
        return data.accuracy(self._logits(params, self._x_test), self._y_test)
