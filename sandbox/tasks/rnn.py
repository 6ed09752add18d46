"""Recurrent sequence models trained with minibatches, unrolled over a fixed sequence length.

* ``rnn_adding``: an Elman (tanh) RNN on the adding problem (Hochreiter & Schmidhuber, 1997;
  Le et al., 2015). Each step reads a value in [0, 1] and a marker bit; exactly two steps are
  marked, one in each half of the sequence, and the target is the sum of the two marked values,
  read out from the last hidden state. Predicting the mean (1.0) scores MSE 1/6; getting below
  that needs the gradient to carry information across the whole sequence, which is where
  vanishing gradients and sharp curvature along the recurrent weights make optimizers differ.
* ``mingru_sentiment``: a minGRU (Feng et al., "Were RNNs all we needed?", 2024: a GRU whose
  gate and candidate depend on the input only, so the recurrence is a gated linear scan) after
  a width-2 causal convolution, classifying token sequences by the sign of their total
  "sentiment": tokens are positive, negative or neutral words, and a "not" token flips the next
  word's sign, so the label depends on order as well as counts. The gates have to learn to
  integrate over the whole sequence, the convolution to hold the one-step flip.

The data sets are generated once from fixed seeds (never from the run seed): train, validation
and test sets are disjoint draws. The run seed changes the initialisation and the minibatch order.
The Elman RNN's recurrent weights start orthogonal (times a gain), input weights at N(0, 1/fan_in).
The Elman RNN is unrolled step by step (a Python loop over a fixed length, which ``vmap`` traces
once per step): its cost grows with the length, so its sequences are short; the minGRU's scan
is computed in parallel for all steps.
"""

from __future__ import annotations

from abc import abstractmethod

import torch

from sandbox.tasks import data
from sandbox.tasks.base import Batch, FixedSplitsTask, Params, minibatch_indices


def _orthogonal(size: int, gain: float, gen: torch.Generator) -> torch.Tensor:
    return gain * torch.linalg.qr(torch.randn(size, size, generator=gen)).Q.contiguous()


def _dense(fan_in: int, fan_out: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randn(fan_in, fan_out, generator=gen) / fan_in**0.5


class _SequenceTask(FixedSplitsTask):
    """Shared data handling: fixed train/val/test sets of time-major inputs ``x`` (length, n, features)
    and targets ``y`` (n, ...); minibatches of the training set."""

    stochastic = True
    exact_stacked_grad = True
    default_device_ok = True
    num_train = 4096
    num_val = 512
    num_test = 512
    eval_size = 128

    @abstractmethod
    def _make(self, count: int, gen: torch.Generator) -> Batch:
        """``count`` samples of this task's data (inputs and targets), drawn with ``gen``."""

    def _build(self, data_seed: int) -> None:
        gen = torch.Generator().manual_seed(data_seed)
        self._train = self._make(self.num_train, gen)
        self._val = self._make(self.num_val, gen)
        self._test = self._make(self.num_test, gen)
        self._eval = {"x": self._train["x"][:, : self.eval_size].contiguous(), "y": self._train["y"][: self.eval_size]}

    def batch(self, step: int, seed: int) -> Batch:
        index = minibatch_indices(self.num_train, self.batch_size, step, seed)
        return {"x": self._train["x"][:, index], "y": self._train["y"][index]}


class AddingRNN(_SequenceTask):
    name = "rnn_adding"
    version = 1
    steps = 400
    schedule = "warmup_cosine"
    description = ("Elman tanh RNN (32 units) on the adding problem, sequences of 12, minibatches of 32 from 4096; "
                   "validation on 512 other sequences")
    family = "rnn"
    loss_name = "eval_batch_mse"
    val_metric_name = "val_mse"
    test_metric_name = "test_mse"
    higher_is_better = False
    hidden = 32
    length = 12
    batch_size = 32
    recurrent_gain = 1.0
    variant_space = {"hidden": (16, 32, 48), "length": (8, 12, 16), "batch_size": (16, 32, 64),
                     "recurrent_gain": (0.5, 1.0)}
    DATA_SEED = 23

    def __init__(self, variant: int = 0) -> None:
        super().__init__(variant)
        self._build(self.DATA_SEED)

    def _make(self, count: int, gen: torch.Generator) -> Batch:
        half = self.length // 2
        values = torch.rand(count, self.length, generator=gen)
        first = torch.randint(0, half, (count,), generator=gen)
        second = torch.randint(half, self.length, (count,), generator=gen)
        markers = torch.zeros(count, self.length)
        rows = torch.arange(count)
        markers[rows, first] = 1.0
        markers[rows, second] = 1.0
        target = (values * markers).sum(1)
        # (count, length, 2) -> time-major (length, count, 2): one slice per unrolled step.
        x = torch.stack([values, markers], dim=-1).transpose(0, 1).contiguous()
        return {"x": x, "y": target}

    def init_params(self, seed: int) -> Params:
        gen = torch.Generator().manual_seed(seed)
        return {
            "w_in": _dense(2, self.hidden, gen),
            "w_rec": _orthogonal(self.hidden, self.recurrent_gain, gen),
            "b": torch.zeros(self.hidden),
            "w_out": _dense(self.hidden, 1, gen).squeeze(1),
            "b_out": torch.ones(()),  # starts at the mean target, so the loss starts near 1/6
        }

    def _predict(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        # All input projections at once, then unbound: indexing one step at a time would make the
        # backward pass build a full-size zero gradient per step (quadratic in the length).
        inputs = (x @ params["w_in"] + params["b"]).unbind(0)
        h = torch.tanh(inputs[0])
        for projected in inputs[1:]:
            h = torch.tanh(projected + h @ params["w_rec"])
        return h @ params["w_out"] + params["b_out"]

    def loss(self, params: Params, batch: Batch) -> torch.Tensor:
        error = self._predict(params, batch["x"]) - batch["y"]
        return (error * error).mean()

    def test_metric(self, params: Params, seed: int) -> float:
        return float(self.loss(params, self._test))


VOCAB = 16
POSITIVE = range(0, 6)
NEGATIVE = range(6, 12)
NOT = 15  # flips the sign of the next word; tokens 12-14 are neutral


class SentimentMinGRU(_SequenceTask):
    name = "mingru_sentiment"
    exact_stacked_grad = False  # its scan's backward rounds differently outside vmap
    version = 1
    steps = 400
    schedule = "warmup_cosine"
    description = ("minGRU (32 units) after a width-2 causal conv, classifying 16-token sequences by the sign of "
                   "their sentiment (a 'not' token flips the next word), minibatches of 32 from 4096; validation on "
                   "512 other sequences")
    family = "rnn"
    loss_name = "eval_batch_ce"
    val_metric_name = "val_ce"
    test_metric_name = "test_acc"
    higher_is_better = True
    hidden = 32
    length = 16
    batch_size = 32
    init_gain = 1.0
    variant_space = {"hidden": (16, 32, 48), "length": (12, 16, 20), "batch_size": (16, 32, 64),
                     "init_gain": (0.5, 1.0, 2.0)}
    DATA_SEED = 29

    def __init__(self, variant: int = 0) -> None:
        super().__init__(variant)
        self._build(self.DATA_SEED)

    def _make(self, count: int, gen: torch.Generator) -> Batch:
        # Draw 3x as many as needed and keep the ones whose sentiment is not a tie.
        tokens = torch.randint(0, VOCAB, (3 * count, self.length), generator=gen)
        sign = torch.zeros(tokens.shape)
        sign[(tokens >= POSITIVE.start) & (tokens < POSITIVE.stop)] = 1.0
        sign[(tokens >= NEGATIVE.start) & (tokens < NEGATIVE.stop)] = -1.0
        flipped = torch.cat([torch.zeros(tokens.shape[0], 1, dtype=torch.bool), tokens[:, :-1] == NOT], dim=1)
        total = torch.where(flipped, -sign, sign).sum(1)
        keep = total != 0
        tokens, total = tokens[keep][:count], total[keep][:count]
        if len(tokens) < count:
            raise RuntimeError(f"{self.name}: only {len(tokens)} of {count} sequences are not ties")
        # Each step sees its own token and the previous one (one-hot, zeros before the start):
        # the width-2 causal convolution, as a plain matmul on (length, count, 2 * vocab).
        onehot = data.one_hot(tokens, VOCAB)
        previous = torch.cat([torch.zeros(len(tokens), 1, VOCAB), onehot[:, :-1]], dim=1)
        x = torch.cat([previous, onehot], dim=-1).transpose(0, 1).contiguous()
        return {"x": x, "y": data.one_hot((total > 0).long(), 2)}

    def init_params(self, seed: int) -> Params:
        gen = torch.Generator().manual_seed(seed)
        h, g = self.hidden, self.init_gain
        return {
            "w_conv": g * _dense(2 * VOCAB, h, gen), "b_conv": torch.zeros(h),
            "w_gate": g * _dense(h, h, gen), "b_gate": torch.zeros(h),
            "w_cand": g * _dense(h, h, gen), "b_cand": torch.zeros(h),
            "w_out": _dense(h, 2, gen), "b_out": torch.zeros(2),
        }

    def _logits(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        """minGRU (Feng et al., 2024): h_t = (1 - z_t) h_{t-1} + z_t c_t with z_t and c_t functions of
        the input only, so every h_t is a weighted sum of the c_s, computed in parallel from
        cumulative sums of log(1 - z) instead of a step-by-step loop (h_0 = 0)."""
        u = torch.relu(x @ params["w_conv"] + params["b_conv"]).transpose(0, 1)  # (n, length, hidden)
        z = torch.sigmoid(u @ params["w_gate"] + params["b_gate"])
        c = u @ params["w_cand"] + params["b_cand"]
        log_keep = torch.cumsum(torch.log1p(-z.clamp(max=1 - 1e-6)), dim=1)  # (n, length, hidden)
        # Only the last state is read out: h_L = sum_s z_s c_s prod_{s<r<=L} (1 - z_r), and each
        # product is exp(log_keep[L] - log_keep[s]) <= 1, so nothing overflows.
        h_last = (torch.exp(log_keep[:, -1:] - log_keep) * z * c).sum(1)
        return h_last @ params["w_out"] + params["b_out"]

    def loss(self, params: Params, batch: Batch) -> torch.Tensor:
        return data.cross_entropy(self._logits(params, batch["x"]), batch["y"])

    def test_metric(self, params: Params, seed: int) -> float:
        return data.accuracy(self._logits(params, self._test["x"]), self._test["y"].argmax(-1))
