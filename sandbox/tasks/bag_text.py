"""An embedding-bag text classifier (fastText, Joulin et al., 2017) on synthetic topic documents.

    doc    = (w_1 .. w_L), token ids in a vocabulary of V words
    h      = mean_l E[w_l] = c E                 (embedding bag, dim D; c = the doc's word frequencies)
    logits = h W + b,   loss = cross-entropy over K topics

Data: K topics share a Zipf-distributed background vocabulary (exponent 1.1: a few words in most
documents, most words rare). Each topic owns ``topic_words`` words of its own, also Zipf-ranked
within the topic. A document of topic k draws each token from k's own words with probability
``signal``, else from the background; some topics' words overlap (each topic draws its words from
the whole vocabulary), so a rare shared word is ambiguous. The label is the topic. Every training
step draws fresh documents from the step's generator (an unlimited stream, as for a model trained
on a large corpus for less than an epoch: with a fixed set of 8192 documents the 32k-parameter
model memorised it within two epochs and the training loss had flattened by 3/4 of the budget);
the scoring, validation and test documents are fixed draws from a fixed seed.

Why it is a distinct workload: the gradient of E is a sparse scatter over the few rows a batch
touches, and rows of rare words see a gradient a few times per hundred steps, so per-coordinate
step sizes (Adam's second moment) and what an optimizer does to an untouched row (momentum and
decoupled weight decay keep moving it) decide how fast the rare topic words are learned.

A batch carries each document as its row of word frequencies ``c`` (counts / L, built in
``batch``), so the bag is one matmul: the same numbers and the same exactly-sparse gradient as a
row lookup, but ``vmap`` batches a matmul well, whereas a batched-weight lookup and its
scatter-add backward cost ~6x more per step (27x a recurrent task's whole pass at 1000 steps).
"""

from __future__ import annotations

import torch

from sandbox.tasks import data
from sandbox.tasks.base import Batch, FixedSplitsTask, Params, step_generator

DATA_SEED = 41
ZIPF = 1.1


def _zipf_weights(size: int) -> torch.Tensor:
    return 1.0 / torch.arange(1, size + 1, dtype=torch.float64) ** ZIPF


class EmbeddingBagTopics(FixedSplitsTask):
    name = "embedbag_topics"
    version = 2
    steps = 600
    schedule = "warmup_cosine"
    description = ("fastText-style embedding bag (dim 16) + linear classifier over 8 topics, 24-token synthetic "
                   "documents on a 2000-word Zipf vocabulary, 32 fresh documents per step; validation on 512 fixed ones")
    family = "embedding"
    loss_name = "eval_batch_ce"
    val_metric_name = "val_ce"
    test_metric_name = "test_acc"
    higher_is_better = True
    stochastic = True
    exact_stacked_grad = True
    default_device_ok = True
    vocab = 2000
    topics = 8
    dim = 16
    length = 24
    topic_words = 100
    signal = 0.15
    batch_size = 32
    num_val = 512
    num_test = 1024
    eval_size = 128
    variant_space = {"dim": (8, 16, 32), "signal": (0.1, 0.15, 0.2), "batch_size": (16, 32, 64),
                     "topics": (8, 12)}

    def __init__(self, variant: int = 0) -> None:
        super().__init__(variant)
        gen = torch.Generator().manual_seed(DATA_SEED)
        self._background = torch.randperm(self.vocab, generator=gen)  # popularity rank -> word id
        self._topic_vocab = torch.stack([torch.randperm(self.vocab, generator=gen)[: self.topic_words]
                                         for _ in range(self.topics)])  # (K, topic_words)
        self._eval = self._make(self.eval_size, gen)
        self._val = self._make(self.num_val, gen)
        self._test = self._make(self.num_test, gen)

    def _make(self, count: int, gen: torch.Generator) -> Batch:
        tokens, labels = self.documents(count, gen)
        return {"x": self.frequencies(tokens), "y": data.one_hot(labels, self.topics)}

    def documents(self, count: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``count`` documents as (token ids (count, L), topic labels (count,)), drawn with ``gen``."""
        labels = torch.randint(self.topics, (count,), generator=gen)
        shape = (count, self.length)
        background = self._background[torch.multinomial(_zipf_weights(self.vocab), count * self.length,
                                                        replacement=True, generator=gen).reshape(shape)]
        rank = torch.multinomial(_zipf_weights(self.topic_words), count * self.length, replacement=True,
                                 generator=gen).reshape(shape)
        own = self._topic_vocab[labels[:, None], rank]
        return torch.where(torch.rand(shape, generator=gen) < self.signal, own, background), labels

    def frequencies(self, tokens: torch.Tensor) -> torch.Tensor:
        """(n, L) token ids -> (n, V) word frequencies (each row sums to 1)."""
        n, length = tokens.shape
        return torch.zeros(n, self.vocab).scatter_add_(1, tokens, torch.full((n, length), 1.0 / length))

    def init_params(self, seed: int) -> Params:
        gen = torch.Generator().manual_seed(seed)
        return {
            "embed": torch.randn(self.vocab, self.dim, generator=gen) / self.dim**0.5,
            "w": torch.randn(self.dim, self.topics, generator=gen) / self.dim**0.5,
            "b": torch.zeros(self.topics),
        }

    def _logits(self, params: Params, frequencies: torch.Tensor) -> torch.Tensor:
        return frequencies @ params["embed"] @ params["w"] + params["b"]

    def loss(self, params: Params, batch: Batch) -> torch.Tensor:
        return data.cross_entropy(self._logits(params, batch["x"]), batch["y"])

    def batch(self, step: int, seed: int) -> Batch:
        return self._make(self.batch_size, step_generator(seed, step))

    def test_metric(self, params: Params, seed: int) -> float:
        return data.accuracy(self._logits(params, self._test["x"]), self._test["y"].argmax(-1))
