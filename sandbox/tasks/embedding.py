"""A matrix-factorisation recommender on Zipf-distributed users and items.

    rating(u, i) ~ mu + b_u + c_i + P_u . Q_i,    loss = mean squared error over a minibatch

Ratings come from a fixed random low-rank "true" model (rank 8, plus biases and Gaussian noise,
scaled to unit variance) observed at (user, item) pairs whose ids follow Zipf laws: a few
users and items appear in hundreds of interactions, most in a handful. So most rows of the
embedding tables get a gradient only every few hundred steps, while the head rows get one every
step: per-coordinate scaling (Adam's second moment) matters, and so does what an optimizer does
to a row whose gradient is zero at this step (decoupled weight decay and momentum keep moving
it). The data never depends on the run seed; the observed pairs are split into train,
validation and test sets with no pair in two of them. The validation value is the MSE on the
validation pairs; the test metric the MSE on the test pairs. Variants draw the embedding width,
the Zipf exponent and the batch size.
"""

from __future__ import annotations

import torch

from sandbox.tasks.base import Batch, FixedSplitsTask, Params, minibatch_indices

DATA_SEED = 31
TRUE_RANK = 8


def zipf_ids(count: int, size: int, exponent: float, gen: torch.Generator) -> torch.Tensor:
    """``count`` ids in ``range(size)`` with P(the k-th most popular) proportional to 1 / k^exponent;
    popularity ranks are a random permutation of the ids, so a row's index says nothing."""
    weights = 1.0 / torch.arange(1, size + 1, dtype=torch.float64) ** exponent
    ranks = torch.multinomial(weights, count, replacement=True, generator=gen)
    return torch.randperm(size, generator=gen)[ranks]


class ZipfMatrixFactorisation(FixedSplitsTask):
    name = "mf_zipf"
    version = 1
    steps = 600
    schedule = "warmup_cosine"
    description = ("matrix-factorisation recommender (dim 16, biases) on 600 users x 300 items with Zipf(1.1) "
                   "popularity, minibatches of 256 rated pairs; validation on 2000 unseen pairs")
    family = "embedding"
    loss_name = "eval_batch_mse"
    val_metric_name = "val_mse"
    test_metric_name = "test_mse"
    higher_is_better = False
    stochastic = True
    exact_stacked_grad = True
    default_device_ok = True
    users = 600
    items = 300
    dim = 16
    zipf = 1.1
    noise = 0.2  # rating noise std, relative to the noise-free ratings' spread
    batch_size = 256
    num_draws = 100000
    num_val = 2000
    num_test = 2000
    eval_size = 512
    variant_space = {"dim": (8, 16, 24), "zipf": (0.9, 1.1, 1.3), "batch_size": (128, 256, 512)}

    def __init__(self, variant: int = 0) -> None:
        super().__init__(variant)
        gen = torch.Generator().manual_seed(DATA_SEED)
        user_factors = torch.randn(self.users, TRUE_RANK, generator=gen)
        item_factors = torch.randn(self.items, TRUE_RANK, generator=gen)
        user_bias = 0.5 * torch.randn(self.users, generator=gen)
        item_bias = 0.5 * torch.randn(self.items, generator=gen)
        u = zipf_ids(self.num_draws, self.users, self.zipf, gen)
        i = zipf_ids(self.num_draws, self.items, self.zipf, gen)
        # Keep each (user, item) pair once, in a random order, so no pair is in two splits.
        pair = torch.unique(u * self.items + i)
        pair = pair[torch.randperm(len(pair), generator=gen)]
        u, i = pair // self.items, pair % self.items
        clean = (user_factors[u] * item_factors[i]).sum(1) / TRUE_RANK**0.5 + user_bias[u] + item_bias[i]
        rating = clean + self.noise * clean.std() * torch.randn(len(pair), generator=gen)
        rating = (rating - rating.mean()) / rating.std()  # unit variance: the loss starts near 1
        held = self.num_val + self.num_test
        if len(pair) < held + 5000:
            raise RuntimeError(f"{self.name}: only {len(pair)} distinct pairs")
        self._val = {"u": u[: self.num_val], "i": i[: self.num_val], "r": rating[: self.num_val]}
        self._test = {"u": u[self.num_val: held], "i": i[self.num_val: held], "r": rating[self.num_val: held]}
        self._train = {"u": u[held:], "i": i[held:], "r": rating[held:]}
        self._eval = {k: v[: self.eval_size] for k, v in self._train.items()}

    def init_params(self, seed: int) -> Params:
        gen = torch.Generator().manual_seed(seed)
        scale = 0.1 / self.dim**0.25  # predictions start near 0 (std ~0.01)
        return {
            "user": scale * torch.randn(self.users, self.dim, generator=gen),
            "item": scale * torch.randn(self.items, self.dim, generator=gen),
            "user_bias": torch.zeros(self.users),
            "item_bias": torch.zeros(self.items),
            "mu": torch.zeros(()),
        }

    @staticmethod
    def _predict(params: Params, batch: Batch) -> torch.Tensor:
        u, i = batch["u"], batch["i"]
        return (params["user"][u] * params["item"][i]).sum(-1) + params["user_bias"][u] + params["item_bias"][i] + params["mu"]

    def loss(self, params: Params, batch: Batch) -> torch.Tensor:
        error = self._predict(params, batch) - batch["r"]
        return (error * error).mean()

    def batch(self, step: int, seed: int) -> Batch:
        index = minibatch_indices(len(self._train["r"]), self.batch_size, step, seed)
        return {k: v[index] for k, v in self._train.items()}

