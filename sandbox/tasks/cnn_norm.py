"""A two-convolution network with group normalisation on sklearn's 8x8 digits.

    x (1x8x8) -> conv3x3/2 (C)    -> GroupNorm -> ReLU        (4x4)
              -> conv3x3 (2C)     -> GroupNorm -> ReLU        (4x4)
              -> linear 16*2C -> 10

GroupNorm (Wu & He, 2018) normalises each image's activations over its positions and the
channels of a group, then applies a learned per-channel gain and bias; ``groups = 1`` is
LayerNorm over the whole feature map. It is per-example, so training and validation compute
the same function (unlike batch norm's running statistics). Both convolutions are matmuls over
patches (im2col, as in :mod:`sandbox.tasks.cnn`): the first over patches of the image, computed
in ``batch``; the second over patches of the first layer's activations, cut as nine slices of
the zero-padded map (their backward is a cheap copy; an index gather's scatter-add or a 0/1
selection matmul costs several times more under ``vmap``).

``noise`` adds Gaussian pixel noise (std 0.2 by default; 0 in some variants) to every training
image, drawn from the step's generator: data augmentation that makes the gradient noisier.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from sandbox.tasks import data
from sandbox.tasks.base import Batch, FixedSplitsTask, Params, minibatch_indices, step_generator

EVAL_SIZE = 64  # the scoring loss is measured every step: keep it cheap


def _image_patches(images: torch.Tensor) -> torch.Tensor:
    """(n, 64) images -> (n, 16, 9): the zero-padded 3x3 neighbourhood of every second pixel in
    each direction (the receptive fields of a stride-2 convolution)."""
    cols = F.unfold(images.reshape(-1, 1, 8, 8), kernel_size=3, padding=1, stride=2)  # (n, 9, 16)
    return cols.transpose(1, 2).contiguous()


def _map_patches(h: torch.Tensor) -> torch.Tensor:
    """(n, 16, c) activations of a 4x4 map -> (n, 16, 9 * c): the zero-padded 3x3 neighbourhood
    of every position (the receptive fields of a stride-1 convolution), ordered (k, c)."""
    n, _, c = h.shape
    padded = F.pad(h.reshape(n, 4, 4, c), (0, 0, 1, 1, 1, 1))  # (n, 6, 6, c)
    cols = [padded[:, di:di + 4, dj:dj + 4] for di in range(3) for dj in range(3)]  # 9 x (n, 4, 4, c)
    return torch.stack(cols, dim=3).reshape(n, 16, 9 * c)


def group_norm(h: torch.Tensor, gain: torch.Tensor, bias: torch.Tensor, groups: int) -> torch.Tensor:
    """(n, positions, channels) -> normalised over (positions, channels of a group) per example."""
    n, positions, channels = h.shape
    # A variant may draw a group count that does not divide its channels (10 channels, 4 groups):
    # it gets the largest count that does (2), where a reshape error would fail every run.
    groups = math.gcd(groups, channels)
    g = h.reshape(n, positions, groups, channels // groups)
    var, mean = torch.var_mean(g, dim=(1, 3), correction=0, keepdim=True)
    return ((g - mean) * torch.rsqrt(var + 1e-5)).reshape(n, positions, channels) * gain + bias


class DigitsGroupNormCNN(FixedSplitsTask):
    name = "cnn_groupnorm_digits"
    version = 2
    steps = 400
    schedule = "warmup_cosine"
    description = "conv3x3/2(C)-GN-ReLU-conv3x3(2C)-GN-ReLU-linear CNN on sklearn digits, minibatches of 32 with pixel-noise augmentation; validation CE on 180 held-out images"
    family = "cnn"
    loss_name = "eval_batch_ce"
    val_metric_name = "val_ce"
    test_metric_name = "test_acc"
    higher_is_better = True
    stochastic = True
    exact_stacked_grad = True
    default_device_ok = True
    channels = 8
    groups = 2
    batch_size = 32
    noise = 0.2  # without augmentation the net memorises the 1438 images and validation stalls by 3/4 of the budget
    variant_space = {"channels": (6, 8, 10), "groups": (1, 2, 4), "batch_size": (16, 32, 64), "noise": (0.0, 0.1, 0.2)}

    def __init__(self, variant: int = 0) -> None:
        super().__init__(variant)
        split = data.digits()
        self._images, self._y = split.x_train, data.one_hot(split.y_train, 10)
        self._eval = {"x": _image_patches(self._images[:EVAL_SIZE]), "y": self._y[:EVAL_SIZE]}
        self._val = {"x": _image_patches(split.x_val), "y": data.one_hot(split.y_val, 10)}
        self._x_test, self._y_test = _image_patches(split.x_test), split.y_test

    def init_params(self, seed: int) -> Params:
        gen = torch.Generator().manual_seed(seed)
        c1, c2 = self.channels, 2 * self.channels
        return {
            "conv1": torch.randn(9, c1, generator=gen) / 3.0,
            "gain1": torch.ones(c1), "bias1": torch.zeros(c1),
            "conv2": torch.randn(9 * c1, c2, generator=gen) / (9 * c1) ** 0.5,
            "gain2": torch.ones(c2), "bias2": torch.zeros(c2),
            "fc_w": torch.randn(16 * c2, 10, generator=gen) / (16 * c2) ** 0.5,
            "fc_b": torch.zeros(10),
        }

    def _logits(self, params: Params, patches: torch.Tensor) -> torch.Tensor:
        n = patches.shape[0]
        h = torch.relu(group_norm(patches @ params["conv1"], params["gain1"], params["bias1"], self.groups))
        cols = _map_patches(h)
        h = torch.relu(group_norm(cols @ params["conv2"], params["gain2"], params["bias2"], self.groups))
        return h.reshape(n, -1) @ params["fc_w"] + params["fc_b"]

    def loss(self, params: Params, batch: Batch) -> torch.Tensor:
        return data.cross_entropy(self._logits(params, batch["x"]), batch["y"])

    def batch(self, step: int, seed: int) -> Batch:
        index = minibatch_indices(len(self._images), self.batch_size, step, seed)
        images = self._images[index]
        if self.noise:
            images = images + self.noise * torch.randn(images.shape, generator=step_generator(seed, step, stream=1))
        return {"x": _image_patches(images), "y": self._y[index]}

    def test_metric(self, params: Params, seed: int) -> float:
        return data.accuracy(self._logits(params, self._x_test), self._y_test)
