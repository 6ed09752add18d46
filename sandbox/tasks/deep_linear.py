"""Matrix completion with a deep linear network (Arora et al., NeurIPS 2019).

    W = W_L ... W_2 W_1,    loss = mean over observed (i, j) of (W_ij - M_ij)^2

M is a fixed 24x24 rank-4 matrix (singular values spread over a factor of 10, entries of unit
mean square) with 40% of its entries observed. Factors start small, so training sits near the
saddle at zero and then learns the singular directions one at a time, largest first
("incremental learning"): plateaus followed by drops, which reward optimizers that escape
saddles quickly (momentum SGD stalls at the start for most of the budget). Depth biases the
product towards low rank, which is what recovers the unobserved entries.

The unobserved entries are split at random into two halves: the validation value is the mean
squared error on the first, the test metric on the second. Variants draw the depth, the
initial scale and the target's rank.
"""

from __future__ import annotations

import torch

from sandbox.tasks.base import Batch, Params, Task

DATA_SEED = 5


class DeepLinearCompletion(Task):
    name = "deep_linear"
    version = 2
    steps = 1000
    schedule = "constant"
    description = ("depth-4 linear network completing a 24x24 rank-4 matrix from 40% of its entries, from a small "
                   "init; validation on half the unobserved entries")
    loss_name = "observed_mse"
    val_metric_name = "val_unobserved_mse"
    test_metric_name = "test_unobserved_mse"
    higher_is_better = False
    stochastic = False
    exact_stacked_grad = True
    family = "classical"
    default_device_ok = False

    size = 24
    rank = 4
    depth = 4
    observed_fraction = 0.4
    init_scale = 0.1  # per-entry std of each factor, times 1/sqrt(size): near the saddle at zero
    spectrum = 10.0  # ratio of the target's largest to smallest non-zero singular value
    variant_space = {"depth": (3, 4, 5), "init_scale": (0.05, 0.1, 0.2), "rank": (3, 4, 6)}

    def __init__(self, variant: int = 0) -> None:
        super().__init__(variant)
        gen = torch.Generator().manual_seed(DATA_SEED)
        n, r = self.size, self.rank
        u = torch.linalg.qr(torch.randn(n, r, generator=gen)).Q
        v = torch.linalg.qr(torch.randn(n, r, generator=gen)).Q
        singular = torch.logspace(0, -torch.log10(torch.tensor(float(self.spectrum))).item(), r)
        singular *= n / singular.square().sum().sqrt()  # entries of unit mean square
        target = (u * singular) @ v.T
        draw = torch.rand(n, n, generator=gen)
        observed = draw < self.observed_fraction
        # The unobserved entries' draws are uniform on [fraction, 1): their lower half is validation.
        val = ~observed & (draw < (1 + self.observed_fraction) / 2)
        test = ~observed & ~val
        self._train = {"target": target, "mask": observed.float()}
        self._val = {"target": target, "mask": val.float()}
        self._test = {"target": target, "mask": test.float()}

    def init_params(self, seed: int) -> Params:
        gen = torch.Generator().manual_seed(seed)
        scale = self.init_scale / self.size**0.5
        return {f"w{k}": scale * torch.randn(self.size, self.size, generator=gen) for k in range(1, self.depth + 1)}

    def _product(self, params: Params) -> torch.Tensor:
        product = params["w1"]
        for k in range(2, self.depth + 1):
            product = params[f"w{k}"] @ product
        return product

    def loss(self, params: Params, batch: Batch) -> torch.Tensor:
        error = (self._product(params) - batch["target"]) * batch["mask"]
        return (error * error).sum() / batch["mask"].sum()

    def batch(self, step: int, seed: int) -> Batch:
        return self._train

    def eval_batch(self) -> Batch:
        return self._train

    def val_batch(self) -> Batch:
        return self._val

    def test_metric(self, params: Params, seed: int) -> float:
        return float(self.loss(params, self._test))
