"""A two-layer bidirectional transformer that learns to sort a sequence of small integers.

    h      = E[x] + P                                  (length L, d_model d)
    repeat 2 times (pre-norm, no mask: every position sees the whole sequence):
        h  = h + W_o Attn(rms(h) W_qkv)                 (2 heads)
        h  = h + W_2 relu(W_1 rms(h))                   (MLP d -> 2d -> d, no biases)
    logits = rms(h) U,   loss = cross-entropy of position i against the i-th smallest input

An algorithmic sequence-to-sequence task (the "sort" task of the transformer-circuits and
length-generalisation literature): the net must compare every pair of tokens (a token's rank is
how many tokens are smaller) and route the token of rank i to position i, a two-step circuit that
a single layer cannot hold. Until it forms, the best the net can do is each position's order-
statistic marginal, so the loss has a plateau and then a drop. Every training sequence is new
(drawn from the step's generator: no overfitting, gradient noise only); validation and test are
fixed sequences from fixed seeds. ``rms`` is a parameter-free RMS normalisation. Minibatches are
small (8 sequences, 64 tokens) to keep the cost of two layers within the budget.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sandbox.tasks import data
from sandbox.tasks.base import Batch, FixedSplitsTask, Params, step_generator
from sandbox.tasks.layers import prenorm_transformer, prenorm_transformer_params

HEADS = 2
DATA_SEED = 71
EVAL_SIZE = 32
VAL_SIZE = 128
TEST_SIZE = 1024


class SortingTransformer(FixedSplitsTask):
    name = "sort_transformer"
    version = 1
    steps = 500
    schedule = "warmup_cosine"
    description = ("2-layer bidirectional transformer (d 32, 2 heads) sorting sequences of 8 integers in [0, 16), "
                   "fresh minibatches of 8; validation CE on 128 fixed sequences")
    family = "attention"
    loss_name = "eval_batch_ce"
    val_metric_name = "val_ce"
    test_metric_name = "test_acc"
    higher_is_better = True
    stochastic = True
    exact_stacked_grad = True
    default_device_ok = True
    vocab = 16
    length = 8
    d_model = 32
    batch_size = 8
    variant_space = {"vocab": (12, 16, 24), "length": (6, 8, 10), "d_model": (24, 32), "batch_size": (8, 12)}

    def __init__(self, variant: int = 0) -> None:
        super().__init__(variant)
        gen = torch.Generator().manual_seed(DATA_SEED)
        self._eval = self._make(EVAL_SIZE, gen)
        self._val = self._make(VAL_SIZE, gen)
        self._test = self._make(TEST_SIZE, gen)

    def _make(self, count: int, gen: torch.Generator) -> Batch:
        x = torch.randint(self.vocab, (count, self.length), generator=gen)
        return {"x": x, "y": data.one_hot(x.sort(dim=1).values, self.vocab)}

    def init_params(self, seed: int) -> Params:
        return prenorm_transformer_params(torch.Generator().manual_seed(seed), self.vocab, self.length, self.d_model,
                                          2)

    def _logits(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        h = F.embedding(x, params["embed"]) + params["pos"]
        return prenorm_transformer(params, h, 2, HEADS)

    def loss(self, params: Params, batch: Batch) -> torch.Tensor:
        return data.cross_entropy(self._logits(params, batch["x"]), batch["y"])

    def batch(self, step: int, seed: int) -> Batch:
        return self._make(self.batch_size, step_generator(seed, step))

    def test_metric(self, params: Params, seed: int) -> float:
        """Fraction of sequences sorted exactly right (every position)."""
        predicted = self._logits(params, self._test["x"]).argmax(-1)
        return float((predicted == self._test["y"].argmax(-1)).all(dim=1).float().mean())
