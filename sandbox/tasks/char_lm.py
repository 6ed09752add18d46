"""A tiny causal transformer language model on real text: scikit-learn's own prose, by character.

    h      = E[x] + P                                         (context T, d_model d)
    repeat L times (pre-norm):
        h  = h + W_o CausalAttn(rms(h) W_qkv)                  (2 heads)
        h  = h + W_2 relu(W_1 rms(h))                          (MLP d -> 2d -> d, no biases)
    logits = rms(h) U                                          (vocabulary of 57 characters)
    loss   = next-character cross-entropy, nats per character

``rms`` is a parameter-free RMS normalisation. The embedding is a row lookup, targets are one-hot
and the causal mask is a fixed additive bias, so the model is a lookup, matmuls and element-wise
ops and batches well under ``vmap``. Each step trains on a minibatch of random windows of the training
blocks of :mod:`sandbox.tasks.text`; validation and test are fixed windows of their own blocks.
A uniform guess scores ln(57) = 4.04 nats/char.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sandbox.tasks import data, text
from sandbox.tasks.base import Batch, FixedSplitsTask, Params, step_generator
from sandbox.tasks.layers import prenorm_transformer, prenorm_transformer_params

HEADS = 2
EVAL_WINDOWS = 4  # the scoring loss is measured every step: keep it cheap
VAL_WINDOWS = 32
TEST_WINDOWS = 256


class CharTransformerLM(FixedSplitsTask):
    name = "charlm_transformer"
    version = 1
    steps = 1000
    schedule = "warmup_cosine"
    description = ("causal transformer character LM (pre-norm, 2 heads) on ~200 KB of scikit-learn's documentation, "
                   "minibatches of random windows; validation CE on held-out blocks")
    family = "attention"
    loss_name = "eval_batch_ce"
    val_metric_name = "val_ce"
    test_metric_name = "test_ce"
    higher_is_better = False
    stochastic = True
    exact_stacked_grad = True
    default_device_ok = True
    layers = 1
    d_model = 32
    context = 32
    batch_size = 4
    # Choices bounded so that no variant costs more than ~1.5x the default. (Their order only
    # decides which value a seeded draw lands on: @1 and @2 both differ from the default.)
    variant_space = {"layers": (1, 2), "d_model": (24, 40, 32), "context": (24, 32, 40), "batch_size": (4, 6)}

    def __init__(self, variant: int = 0) -> None:
        super().__init__(variant)
        corpus = text.corpus()
        self.vocab = corpus.vocab_size
        length = self.context + 1  # inputs and next-character targets
        # Position j may attend to positions <= j: a fixed bias, -1e9 above the diagonal.
        causal = torch.ones(self.context, self.context).triu(1).bool()
        self._mask = torch.zeros(self.context, self.context).masked_fill(causal, -1e9)
        self._eval = self._encode(text.windows(text.window_starts(corpus.train_blocks, length, EVAL_WINDOWS), length))
        self._val = self._encode(text.windows(text.window_starts(corpus.val_blocks, length, VAL_WINDOWS), length))
        self._test = self._encode(text.windows(text.window_starts(corpus.test_blocks, length, TEST_WINDOWS), length))

    def _encode(self, ids: torch.Tensor) -> Batch:
        return {"x": ids[:, :-1].contiguous(), "y": F.one_hot(ids[:, 1:], self.vocab).float()}

    def init_params(self, seed: int) -> Params:
        return prenorm_transformer_params(torch.Generator().manual_seed(seed), self.vocab, self.context, self.d_model,
                                          self.layers)

    def _logits(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        h = F.embedding(x, params["embed"]) + params["pos"]
        return prenorm_transformer(params, h, self.layers, HEADS, self._mask)

    def loss(self, params: Params, batch: Batch) -> torch.Tensor:
        return data.cross_entropy(self._logits(params, batch["x"]), batch["y"])

    def batch(self, step: int, seed: int) -> Batch:
        length = self.context + 1
        starts = text.random_starts(text.corpus().train_blocks, length, self.batch_size, step_generator(seed, step))
        return self._encode(text.windows(starts, length))

