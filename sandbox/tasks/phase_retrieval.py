"""Real phase retrieval: recover a signal from the squared magnitudes of random projections.

    y_i = (a_i . x*)^2,   a_i ~ N(0, I_d),   |x*| = 1
    loss(w) = mean_i ((a_i . w)^2 - y_i)^2 / 3

A non-convex problem with a known landscape (Sun, Qu & Wright, 2018): with enough measurements
(m >~ 6 d) every local minimum is global (w = +-x*), and gradient descent from a small random start
first escapes the saddle at 0, then converges linearly (Chen, Chi, Fan & Ma, 2019). So the run has
two phases, an escape whose speed depends on how an optimizer amplifies a tiny growing direction,
and a fourth-order (steeply curved) descent. Dividing by 3 = E[(a . x*)^4] makes the loss at w = 0
about 1. Training uses minibatches of measurements from a fixed set of ``ratio * d``; validation
and test are other measurements of the same signal, and the test metric is the relative distance
to the signal up to the global sign, ``min |w -+ x*| / |x*|``. The data never depends on the run
seed; the run seed draws the start (N(0, init_scale^2 / d) per coordinate).
"""

from __future__ import annotations

import torch

from sandbox.tasks.base import Batch, FixedSplitsTask, Params, minibatch_indices

DATA_SEED = 47
NUM_VAL = 1024
NUM_TEST = 1024
EVAL_SIZE = 512


class PhaseRetrieval(FixedSplitsTask):
    name = "phase_retrieval"
    version = 1
    steps = 1000
    schedule = "warmup_cosine"
    description = ("real phase retrieval in d=64 from 8d squared Gaussian measurements, minibatches of 64, "
                   "small random start; validation on 1024 other measurements")
    family = "classical"
    loss_name = "eval_batch_quartic"
    val_metric_name = "val_loss"
    test_metric_name = "dist_to_signal"
    higher_is_better = False
    stochastic = True
    exact_stacked_grad = True
    default_device_ok = False
    dim = 64
    ratio = 8
    batch_size = 64
    init_scale = 0.1
    variant_space = {"dim": (32, 64, 96), "ratio": (6, 8, 12), "batch_size": (32, 64, 128),
                     "init_scale": (0.01, 0.1, 0.5)}

    def __init__(self, variant: int = 0) -> None:
        super().__init__(variant)
        gen = torch.Generator().manual_seed(DATA_SEED)
        signal = torch.randn(self.dim, generator=gen)
        self._signal = signal / signal.norm()
        num_train = self.ratio * self.dim
        a = torch.randn(num_train + NUM_VAL + NUM_TEST, self.dim, generator=gen)
        y = (a @ self._signal) ** 2
        self._train = {"a": a[:num_train], "y": y[:num_train]}
        self._eval = {k: v[:EVAL_SIZE] for k, v in self._train.items()}
        self._val = {"a": a[num_train: num_train + NUM_VAL], "y": y[num_train: num_train + NUM_VAL]}
        self._test = {"a": a[num_train + NUM_VAL:], "y": y[num_train + NUM_VAL:]}

    def init_params(self, seed: int) -> Params:
        gen = torch.Generator().manual_seed(seed)
        return {"w": self.init_scale * torch.randn(self.dim, generator=gen) / self.dim**0.5}

    def loss(self, params: Params, batch: Batch) -> torch.Tensor:
        residual = (batch["a"] @ params["w"]) ** 2 - batch["y"]
        return (residual * residual).mean() / 3.0

    def batch(self, step: int, seed: int) -> Batch:
        index = minibatch_indices(len(self._train["y"]), self.batch_size, step, seed)
        return {"a": self._train["a"][index], "y": self._train["y"][index]}

    def test_metric(self, params: Params, seed: int) -> float:
        w = params["w"]
        return float(torch.minimum((w - self._signal).norm(), (w + self._signal).norm()))
