"""A small residual CNN with batch normalisation on sklearn's 8x8 digits, with random-shift augmentation.

    x (1x8x8) -> conv3x3/2 (C) -> BN -> ReLU                             (stem, 4x4)
              -> h + BN(conv1x1(ReLU(BN(conv3x3(h)))))  -> ReLU          (one residual block, 4x4)
              -> global average pool -> linear C -> 10

Batch normalisation (Ioffe & Szegedy, 2015) normalises each channel over the minibatch and the
positions, then applies a learned gain and bias; the residual block's last gain starts at zero
("zero-init residual", Goyal et al., 2017), so the block starts as the identity. Unlike group
norm, the statistics are the *batch's*: a training example's gradient depends on the other
examples in its minibatch. The validation value and the test metric use the statistics of the
whole (fixed) validation or test set instead of running averages, so the task stays a pure
function of the parameters (the functional harness keeps no state besides them).

Convolutions are matmuls over patches (im2col, the helpers of :mod:`sandbox.tasks.cnn_norm`): the
stem's over image patches computed in ``batch``, the block's over nine slices of the zero-padded
map. The stem has stride 2: at stride 1 (8x8 maps) a batched LR x seed pass cost ~90 s on 2 busy
cores, far over the budget, and with two 3x3 convolutions in the block 15.7 s on quiet ones; the
block's second convolution is 1x1 (a matmul per position).
Augmentation: every training image is shifted by a random offset in {-1, 0, 1}^2 (zero fill),
drawn from the step's generator.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sandbox.tasks import data
from sandbox.tasks.base import Batch, FixedSplitsTask, Params, minibatch_indices, step_generator
from sandbox.tasks.cnn_norm import _image_patches as image_patches, _map_patches as map_patches

EVAL_SIZE = 64  # the scoring loss is measured every step: keep it cheap
SIDE = 8


def batch_norm(h: torch.Tensor, gain: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """(n, positions, channels) normalised per channel over the batch and the positions."""
    var, mean = torch.var_mean(h, dim=(0, 1), correction=0, keepdim=True)
    return (h - mean) * torch.rsqrt(var + 1e-5) * gain + bias


def shift_images(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Each (64,) image moved by its own random offset in {-1, 0, 1}^2, zeros shifted in."""
    n = len(images)
    padded = F.pad(images.reshape(n, SIDE, SIDE), (1, 1, 1, 1))
    shifted = torch.stack([padded[:, di:di + SIDE, dj:dj + SIDE] for di in range(3) for dj in range(3)])  # (9, n, 8, 8)
    pick = torch.randint(9, (n,), generator=gen)
    return shifted[pick, torch.arange(n)].reshape(n, SIDE * SIDE)


class DigitsResNetBN(FixedSplitsTask):
    name = "resnet_bn_digits"
    version = 1
    steps = 300
    schedule = "warmup_cosine"
    description = ("conv-BN-ReLU stem + one zero-init residual block (3x3, 1x1) with batch norm, global average pool, on sklearn "
                   "digits, minibatches of 32 with random-shift augmentation; validation CE on 180 held-out images")
    family = "cnn"
    loss_name = "eval_batch_ce"
    val_metric_name = "val_ce"
    test_metric_name = "test_acc"
    higher_is_better = True
    stochastic = True
    exact_stacked_grad = True
    default_device_ok = True
    channels = 8
    batch_size = 32
    shift = True
    variant_space = {"channels": (6, 8), "batch_size": (16, 32, 64), "shift": (True, False)}

    def __init__(self, variant: int = 0) -> None:
        super().__init__(variant)
        split = data.digits()
        self._images, self._y = split.x_train, data.one_hot(split.y_train, 10)
        self._eval = {"x": image_patches(self._images[:EVAL_SIZE]), "y": self._y[:EVAL_SIZE]}
        self._val = {"x": image_patches(split.x_val), "y": data.one_hot(split.y_val, 10)}
        self._x_test, self._y_test = image_patches(split.x_test), split.y_test

    def init_params(self, seed: int) -> Params:
        gen = torch.Generator().manual_seed(seed)
        c = self.channels
        return {
            "stem": torch.randn(9, c, generator=gen) / 3.0,
            "gain0": torch.ones(c), "bias0": torch.zeros(c),
            "conv1": torch.randn(9 * c, c, generator=gen) / (9 * c) ** 0.5,
            "gain1": torch.ones(c), "bias1": torch.zeros(c),
            "conv2": torch.randn(c, c, generator=gen) / c**0.5,
            "gain2": torch.zeros(c), "bias2": torch.zeros(c),
            "fc_w": torch.randn(c, 10, generator=gen) / c**0.5,
            "fc_b": torch.zeros(10),
        }

    def _logits(self, params: Params, patches: torch.Tensor) -> torch.Tensor:
        h = torch.relu(batch_norm(patches @ params["stem"], params["gain0"], params["bias0"]))
        r = torch.relu(batch_norm(map_patches(h) @ params["conv1"], params["gain1"], params["bias1"]))
        r = batch_norm(r @ params["conv2"], params["gain2"], params["bias2"])
        h = torch.relu(h + r)
        return h.mean(1) @ params["fc_w"] + params["fc_b"]

    def loss(self, params: Params, batch: Batch) -> torch.Tensor:
        return data.cross_entropy(self._logits(params, batch["x"]), batch["y"])

    def batch(self, step: int, seed: int) -> Batch:
        index = minibatch_indices(len(self._images), self.batch_size, step, seed)
        images = self._images[index]
        if self.shift:
            images = shift_images(images, step_generator(seed, step, stream=1))
        return {"x": image_patches(images), "y": self._y[index]}

    def test_metric(self, params: Params, seed: int) -> float:
        return data.accuracy(self._logits(params, self._x_test), self._y_test)
