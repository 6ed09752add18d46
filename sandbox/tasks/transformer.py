"""A one-layer transformer learning two-digit modular addition, (a + b) mod 100, digit by digit.

The input is the four digit tokens ``a_0 b_0 a_1 b_1`` (units first); the model predicts the
sum's units digit at ``b_0`` and its tens digit (which needs the carry from the units) at
``b_1``::

    h      = E[tokens] + P                                 (4 positions, d_model = 24)
    h      = h + W_o CausalAttn(rms(h))                    (2 heads)
    h      = h + W_2 relu(W_1 rms(h) + b_1) + b_2          (MLP 24 -> 48 -> 24)
    logits = U rms(h) at b_0 and b_1                       (10 classes each)

``rms`` is a parameter-free RMS normalisation; attention is written with element-wise products
and sums, which batch under ``vmap`` better than tiny matmuls. Loss: the mean cross-entropy of
the two digits.

v1 was (a + b) mod 23 on one-hot pairs, trained full-batch on 40% of the table: it memorises,
and the unseen pairs stay at chance (grokking takes far longer than any budget here), so their
cross-entropy only rises during training and cannot serve as a validation target. In base 10
every digit-level fact appears in training, so the model can generalise to unseen pairs within
the budget, and the optimizers differ in how fast it does: train on minibatches from 30% of the
10,000 pairs; the unseen pairs are split into validation and test halves (500 of each are
used). Variants draw the width, the training fraction and the batch size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sandbox.tasks import data
from sandbox.tasks.base import Batch, FixedSplitsTask, Params, minibatch_indices
from sandbox.tasks.layers import rms as _rms

BASE = 10
HEADS = 2
DATA_SEED = 17
HELD_OUT = 500  # validation and test pairs each


class ModularAdditionTransformer(FixedSplitsTask):
    name = "transformer_modadd"
    version = 2
    steps = 400
    schedule = "warmup_cosine"
    description = ("1-layer, 2-head, d_model=24 causal transformer on two-digit (a + b) mod 100, minibatches of 64 "
                   "from 30% of the pairs; validation on 500 unseen pairs")
    loss_name = "eval_batch_ce"
    val_metric_name = "val_ce"
    test_metric_name = "test_acc"
    higher_is_better = True
    stochastic = True
    exact_stacked_grad = True
    family = "attention"
    default_device_ok = True
    d_model = 24
    train_fraction = 0.3
    batch_size = 64
    eval_size = 128
    variant_space = {"d_model": (16, 24, 32), "train_fraction": (0.2, 0.3, 0.5), "batch_size": (32, 64, 128)}

    def __init__(self, variant: int = 0) -> None:
        super().__init__(variant)
        a, b = torch.meshgrid(torch.arange(BASE * BASE), torch.arange(BASE * BASE), indexing="ij")
        a, b = a.flatten(), b.flatten()
        tokens = torch.stack([a % BASE, b % BASE, a // BASE, b // BASE], dim=1)
        total = (a + b) % (BASE * BASE)
        # One-hot inputs: the embedding becomes a matmul, which vmap batches over the weights.
        x = F.one_hot(tokens, BASE).float()
        y = torch.stack([total % BASE, total // BASE], dim=1)
        order = torch.randperm(len(a), generator=torch.Generator().manual_seed(DATA_SEED))
        n_train = round(self.train_fraction * len(a))
        # Validation and test come from the end of the permutation, so they do not depend on the
        # training fraction and never overlap the training pairs.
        train, val, test = order[:n_train], order[-2 * HELD_OUT:-HELD_OUT], order[-HELD_OUT:]
        self._train = {"x": x[train].contiguous(), "y": F.one_hot(y[train], BASE).float()}
        self._eval = {k: v[: self.eval_size] for k, v in self._train.items()}
        self._val = {"x": x[val].contiguous(), "y": F.one_hot(y[val], BASE).float()}
        self._test = {"x": x[test].contiguous(), "y": y[test]}

    def init_params(self, seed: int) -> Params:
        gen = torch.Generator().manual_seed(seed)
        d, d_mlp = self.d_model, 2 * self.d_model

        def dense(fan_in: int, fan_out: int) -> torch.Tensor:
            return torch.randn(fan_in, fan_out, generator=gen) / fan_in**0.5

        return {
            "embed": torch.randn(BASE, d, generator=gen),
            "pos": torch.randn(4, d, generator=gen),
            "wq": dense(d, d), "wk": dense(d, d), "wv": dense(d, d), "wo": dense(d, d),
            "w1": dense(d, d_mlp), "b1": torch.zeros(d_mlp),
            "w2": dense(d_mlp, d), "b2": torch.zeros(d),
            "unembed": dense(d, BASE),
        }

    def _logits(self, params: Params, onehot: torch.Tensor) -> torch.Tensor:
        """(n, 4, BASE) one-hot digits -> (n, 2, BASE) logits of the sum's units and tens digits."""
        n, d = onehot.shape[0], self.d_model
        head_dim = d // HEADS
        h = onehot @ params["embed"] + params["pos"]  # (n, 4, d)
        a = _rms(h)
        q = (a @ params["wq"]).reshape(n, 4, 1, HEADS, head_dim)
        k = (a @ params["wk"]).reshape(n, 1, 4, HEADS, head_dim)
        v = (a @ params["wv"]).reshape(n, 1, 4, HEADS, head_dim)
        scores = (q * k).sum(-1) / head_dim**0.5  # (n, query, key, heads)
        causal = torch.tril(torch.ones(4, 4)).reshape(1, 4, 4, 1)
        scores = scores - 1e4 * (1 - causal)
        weights = torch.softmax(scores, dim=2)
        attended = (weights.unsqueeze(-1) * v).sum(2).reshape(n, 4, d)
        h = h + attended @ params["wo"]
        h = h + torch.relu(_rms(h) @ params["w1"] + params["b1"]) @ params["w2"] + params["b2"]
        return _rms(h[:, 1::2]) @ params["unembed"]  # read out at b_0 and b_1

    def loss(self, params: Params, batch: Batch) -> torch.Tensor:
        return data.cross_entropy(self._logits(params, batch["x"]), batch["y"])

    def batch(self, step: int, seed: int) -> Batch:
        index = minibatch_indices(len(self._train["x"]), self.batch_size, step, seed)
        return {"x": self._train["x"][index], "y": self._train["y"][index]}

    def test_metric(self, params: Params, seed: int) -> float:
        """Fraction of test pairs with both digits of the sum right."""
        correct = self._logits(params, self._test["x"]).argmax(-1) == self._test["y"]
        return float(correct.all(-1).float().mean())
