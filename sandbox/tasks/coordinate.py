"""Coordinate (implicit) networks: MLPs that map a position to a value, fitted to one signal.

* ``siren_image``: a SIREN (Sitzmann et al., NeurIPS 2020: sine activations, ``sin(w0 (W x + b))``
  with their initialisation) fitting a generated 32x32 grey image (Gaussian blobs, an oblique
  grating and a sharp-edged disc) from 60% of its pixels.
* ``fourier_signal``: a ReLU MLP on random Fourier features (Tancik et al., NeurIPS 2020:
  ``[sin(2 pi B x), cos(2 pi B x)]``, B ~ N(0, sigma^2), fixed) fitting a generated 1-D signal
  (a 1/f mixture of sinusoids with a step) from half of 2048 sample points.

Both train on minibatches of coordinates; the remaining coordinates are split into validation
and test halves, so the validation value measures how well the fitted function interpolates
between the training coordinates, not just how well it memorises them. Signals and splits come
from fixed seeds; the run seed changes the initialisation and the minibatch order only.
Losses are mean squared errors on signals scaled to unit mean square.
"""

from __future__ import annotations

from abc import abstractmethod

import math

import torch

from sandbox.tasks.base import Batch, FixedSplitsTask, Params, minibatch_indices


def _split_rows(count: int, fractions: tuple[float, float], gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    """A random permutation of ``range(count)`` cut into train, validation and test index sets."""
    order = torch.randperm(count, generator=gen)
    n_train, n_val = round(fractions[0] * count), round(fractions[1] * count)
    return order[:n_train], order[n_train:n_train + n_val], order[n_train + n_val:]


class _CoordinateTask(FixedSplitsTask):
    """Shared data handling: coordinates ``x`` (n, d) and values ``y`` (n,) split three ways."""

    stochastic = True
    exact_stacked_grad = True
    default_device_ok = True
    family = "coordinate"
    loss_name = "eval_batch_mse"
    val_metric_name = "val_mse"
    test_metric_name = "test_mse"
    higher_is_better = False
    eval_size = 256

    def _set_data(self, x: torch.Tensor, y: torch.Tensor, fractions: tuple[float, float], seed: int) -> None:
        y = y / y.square().mean().sqrt()
        train, val, test = _split_rows(len(x), fractions, torch.Generator().manual_seed(seed))
        self._train = {"x": x[train].contiguous(), "y": y[train].contiguous()}
        self._val = {"x": x[val].contiguous(), "y": y[val].contiguous()}
        self._test = {"x": x[test].contiguous(), "y": y[test].contiguous()}
        self._eval = {k: v[: self.eval_size] for k, v in self._train.items()}

    @abstractmethod
    def _predict(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        """The network's output at coordinates ``x``."""

    def loss(self, params: Params, batch: Batch) -> torch.Tensor:
        error = self._predict(params, batch["x"]) - batch["y"]
        return (error * error).mean()

    def batch(self, step: int, seed: int) -> Batch:
        index = minibatch_indices(len(self._train["y"]), self.batch_size, step, seed)
        return {"x": self._train["x"][index], "y": self._train["y"][index]}


def generated_image(size: int, seed: int) -> torch.Tensor:
    """A (size, size) grey image on [-1, 1]^2: smooth blobs, an oblique grating, a sharp disc."""
    gen = torch.Generator().manual_seed(seed)
    axis = torch.linspace(-1, 1, size)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    image = torch.zeros(size, size)
    for _ in range(5):
        centre = 1.6 * torch.rand(2, generator=gen) - 0.8
        width = 0.15 + 0.3 * float(torch.rand((), generator=gen))
        weight = float(torch.randn((), generator=gen))
        image += weight * torch.exp(-((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / (2 * width**2))
    angle = math.pi * float(torch.rand((), generator=gen))
    image += 0.5 * torch.sin(2 * math.pi * 3.0 * (math.cos(angle) * xx + math.sin(angle) * yy))
    image += 0.8 * ((xx - 0.3) ** 2 + (yy + 0.2) ** 2 < 0.35**2).float()  # a disc with a sharp edge
    return image - image.mean()


class SirenImage(_CoordinateTask):
    name = "siren_image"
    version = 1
    steps = 600
    schedule = "warmup_cosine"
    description = ("SIREN 2-48-48-1 (w0 = 20) fitting a generated 32x32 image from 60% of its pixels, "
                   "minibatches of 128; validation on 20% held-out pixels")
    width = 48
    w0 = 20.0
    batch_size = 128
    image_size = 32
    variant_space = {"width": (32, 48, 64), "w0": (10.0, 20.0, 30.0), "batch_size": (64, 128, 256)}
    DATA_SEED = 41

    def __init__(self, variant: int = 0) -> None:
        super().__init__(variant)
        size = self.image_size
        axis = torch.linspace(-1, 1, size)
        yy, xx = torch.meshgrid(axis, axis, indexing="ij")
        coords = torch.stack([xx.flatten(), yy.flatten()], dim=1)
        self._set_data(coords, generated_image(size, self.DATA_SEED).flatten(), (0.6, 0.2), self.DATA_SEED + 1)

    def init_params(self, seed: int) -> Params:
        # Sitzmann et al.'s initialisation: the first layer U(-1/fan_in, 1/fan_in), later ones
        # U(-sqrt(6/fan_in)/w0, sqrt(6/fan_in)/w0), so that sin(w0 .) keeps unit-scale activations.
        gen = torch.Generator().manual_seed(seed)
        w = self.width

        def uniform(shape: tuple[int, ...], bound: float) -> torch.Tensor:
            return bound * (2 * torch.rand(shape, generator=gen) - 1)

        hidden_bound = math.sqrt(6 / w) / self.w0
        return {
            "w1": uniform((2, w), 1 / 2), "b1": uniform((w,), 1 / 2),
            "w2": uniform((w, w), hidden_bound), "b2": uniform((w,), hidden_bound),
            "w3": uniform((w, 1), hidden_bound).squeeze(1), "b3": torch.zeros(()),  # a linear read-out
        }

    def _predict(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        h = torch.sin(self.w0 * (x @ params["w1"] + params["b1"]))
        h = torch.sin(self.w0 * (h @ params["w2"] + params["b2"]))
        return h @ params["w3"] + params["b3"]


def generated_signal(points: int, seed: int) -> torch.Tensor:
    """``points`` samples on [0, 1) of a 1/f mixture of 16 sinusoids (1 to 40 cycles) plus a step."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(points) / points
    freq = 1 + 39 * torch.rand(16, generator=gen)
    phase = 2 * math.pi * torch.rand(16, generator=gen)
    amplitude = torch.randn(16, generator=gen) / freq.sqrt()
    signal = (amplitude * torch.sin(2 * math.pi * freq * t[:, None] + phase)).sum(1)
    return signal + 0.5 * (t > 0.6).float()


class FourierFeatureSignal(_CoordinateTask):
    name = "fourier_signal"
    version = 1
    steps = 1000
    schedule = "warmup_cosine"
    description = ("ReLU MLP on 16 random Fourier features (sigma = 10) -> 64 -> 64 -> 1 fitting a generated 1-D "
                   "signal from 1024 of 2048 points, minibatches of 128; validation on 512 held-out points")
    width = 64
    sigma = 10.0
    batch_size = 128
    points = 2048
    features = 16
    variant_space = {"width": (32, 64, 128), "sigma": (5.0, 10.0, 20.0), "batch_size": (64, 128, 256)}
    DATA_SEED = 43

    def __init__(self, variant: int = 0) -> None:
        super().__init__(variant)
        x = (torch.arange(self.points) / self.points).unsqueeze(1)
        self._set_data(x, generated_signal(self.points, self.DATA_SEED), (0.5, 0.25), self.DATA_SEED + 1)
        # The feature frequencies are part of the architecture: fixed, not drawn per run.
        self._freq = self.sigma * torch.randn(1, self.features, generator=torch.Generator().manual_seed(self.DATA_SEED + 2))
        for split in (self._train, self._val, self._test, self._eval):
            split["x"] = self._embed(split["x"])

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        angle = 2 * math.pi * x @ self._freq
        return torch.cat([torch.sin(angle), torch.cos(angle)], dim=1).contiguous()

    def init_params(self, seed: int) -> Params:
        gen = torch.Generator().manual_seed(seed)
        sizes = (2 * self.features, self.width, self.width, 1)
        params: Params = {}
        for k, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
            gain = 2.0 if k < len(sizes) - 1 else 1.0  # He init for the ReLU layers
            params[f"w{k}"] = torch.randn(fan_in, fan_out, generator=gen) * (gain / fan_in) ** 0.5
            params[f"b{k}"] = torch.zeros(fan_out)
        return params

    def _predict(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(x @ params["w1"] + params["b1"])
        h = torch.relu(h @ params["w2"] + params["b2"])
        return (h @ params["w3"] + params["b3"]).squeeze(-1)
