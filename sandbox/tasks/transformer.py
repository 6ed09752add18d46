"""A one-layer transformer learning modular addition, (a + b) mod p (Power et al., 2022).

The input is the two tokens ``a b``; the model reads the answer out at ``b``::

    h      = E[a, b] + P                                  (2 positions, d_model = 24)
    out    = h_b + W_o Attn(rms(h))_b                     (2 heads; only b's query is needed)
    out    = out + W_2 relu(W_1 rms(out) + b_1) + b_2     (MLP 24 -> 48 -> 24)
    logits = U rms(out)                                    (p classes)

``rms`` is a parameter-free RMS normalisation. With two keys, attention is written as
element-wise products and sums, which batch under ``vmap`` far better than tiny matmuls.
The model trains full-batch on a fixed 40% of all p^2 pairs; the test metric is the accuracy on
the rest, which (grokking) lags far behind the training loss and stays near chance (1/p) within
this budget: the budget is about memorising, the metric shows whether an optimizer generalises
unusually early.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sandbox.tasks import data
from sandbox.tasks.base import Batch, Params, Task

P = 23
D_MODEL = 24
HEADS = 2
D_MLP = 48
TRAIN_FRACTION = 0.4
DATA_SEED = 17


def _rms(x: torch.Tensor) -> torch.Tensor:
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + 1e-6)


class ModularAdditionTransformer(Task):
    name = "transformer_modadd"
    version = 1
    steps = 300
    schedule = "warmup_cosine"
    description = f"1-layer, {HEADS}-head, d_model={D_MODEL} transformer on (a + b) mod {P}, full batch on {TRAIN_FRACTION:.0%} of the pairs"
    loss_name = "train_ce"
    test_metric_name = "test_acc"
    higher_is_better = True
    stochastic = False
    family = "attention"
    default_device_ok = True

    def __init__(self, variant: int = 0) -> None:
        super().__init__(variant)
        a, b = torch.meshgrid(torch.arange(P), torch.arange(P), indexing="ij")
        a, b = a.flatten(), b.flatten()
        tokens = torch.stack([a, b], dim=1)
        # One-hot inputs: the embedding becomes a matmul, which vmap batches over the weights.
        onehot = F.one_hot(tokens, P).float()
        labels = (a + b) % P
        order = torch.randperm(P * P, generator=torch.Generator().manual_seed(DATA_SEED))
        n_train = round(TRAIN_FRACTION * P * P)
        train, test = order[:n_train], order[n_train:]
        self._train = {"x": onehot[train].contiguous(), "y": F.one_hot(labels[train], P).float()}
        self._test = {"x": onehot[test].contiguous(), "y": labels[test]}

    def init_params(self, seed: int) -> Params:
        gen = torch.Generator().manual_seed(seed)

        def dense(fan_in: int, fan_out: int) -> torch.Tensor:
            return torch.randn(fan_in, fan_out, generator=gen) / fan_in**0.5

        return {
            "embed": torch.randn(P, D_MODEL, generator=gen),
            "pos": torch.randn(2, D_MODEL, generator=gen),
            "wq": dense(D_MODEL, D_MODEL), "wk": dense(D_MODEL, D_MODEL),
            "wv": dense(D_MODEL, D_MODEL), "wo": dense(D_MODEL, D_MODEL),
            "w1": dense(D_MODEL, D_MLP), "b1": torch.zeros(D_MLP),
            "w2": dense(D_MLP, D_MODEL), "b2": torch.zeros(D_MODEL),
            "unembed": dense(D_MODEL, P),
        }

    @staticmethod
    def _logits(params: Params, onehot: torch.Tensor) -> torch.Tensor:
        n, head_dim = onehot.shape[0], D_MODEL // HEADS
        h = onehot @ params["embed"] + params["pos"]  # (n, 2, d)
        a = _rms(h)
        q = (a[:, -1] @ params["wq"]).reshape(n, 1, HEADS, head_dim)
        k = (a @ params["wk"]).reshape(n, 2, HEADS, head_dim)
        v = (a @ params["wv"]).reshape(n, 2, HEADS, head_dim)
        weights = torch.softmax((q * k).sum(-1) / head_dim**0.5, dim=1)  # (n, 2 keys, heads)
        attended = (weights.unsqueeze(-1) * v).sum(1).reshape(n, D_MODEL)
        out = h[:, -1] + attended @ params["wo"]
        out = out + torch.relu(_rms(out) @ params["w1"] + params["b1"]) @ params["w2"] + params["b2"]
        return _rms(out) @ params["unembed"]

    def loss(self, params: Params, batch: Batch) -> torch.Tensor:
        return data.cross_entropy(self._logits(params, batch["x"]), batch["y"])

    def batch(self, step: int, seed: int) -> Batch:
        return self._train

    def eval_batch(self) -> Batch:
        return self._train

    def val_batch(self) -> Batch:
        return {"x": self._test["x"], "y": F.one_hot(self._test["y"], P).float()}

    def test_metric(self, params: Params, seed: int) -> float:
        return data.accuracy(self._logits(params, self._test["x"]), self._test["y"])
