"""Data sets for the proxy tasks: scikit-learn's bundled copies (no downloads) and fixed splits.

Each loader returns float32 features and int64 labels as CPU tensors, split once with a fixed
permutation into train, validation and test sets (the held-out part is halved: validation first,
test second), so that every run, seed and optimizer sees the same three sets. The validation set
is what scores are computed on; the test set is only reported. Seeds of a *run* change the
initialisation and the minibatch order, never the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

SPLIT_SEED = 20240501  # fixes train/test splits; changing it changes every task's numbers
TEST_FRACTION = 0.2


@dataclass(frozen=True)
class Split:
    """A fixed train/test split of a classification data set."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    @property
    def num_features(self) -> int:
        return self.x_train.shape[1]

    @property
    def num_classes(self) -> int:
        return int(torch.cat([self.y_train, self.y_val, self.y_test]).max()) + 1


def _split(x: torch.Tensor, y: torch.Tensor, test_fraction: float, standardise: bool) -> Split:
    """Train on ``1 - test_fraction`` of the rows; the rest is halved into validation and test."""
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(SPLIT_SEED))
    n_heldout = round(test_fraction * len(x))
    n_val = (n_heldout + 1) // 2
    val, test, train = order[:n_val], order[n_val:n_heldout], order[n_heldout:]
    x_train, x_val, x_test = x[train], x[val], x[test]
    if standardise:
        # Train-set statistics only, so nothing about the held-out sets leaks into training.
        mean, std = x_train.mean(0), x_train.std(0).clamp_min(1e-6)
        x_train, x_val, x_test = (x_train - mean) / std, (x_val - mean) / std, (x_test - mean) / std
    return Split(x_train.contiguous(), y[train].contiguous(), x_val.contiguous(), y[val].contiguous(),
                 x_test.contiguous(), y[test].contiguous())


def _load(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    # Imported here: scikit-learn takes a second to import and most processes never need it.
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{name}")()
    return torch.tensor(bunch.data, dtype=torch.float32), torch.tensor(bunch.target, dtype=torch.int64)


@lru_cache(maxsize=None)
def digits() -> Split:
    """sklearn digits: 1797 8x8 grey images of 0-9, pixels scaled to [0, 1]; 1438 train / 180 validation / 179 test."""
    x, y = _load("digits")
    return _split(x / 16.0, y, TEST_FRACTION, standardise=False)


@lru_cache(maxsize=None)
def wine() -> Split:
    """sklearn wine: 178 samples, 13 standardised chemical features, 3 cultivars; 70/30 split."""
    x, y = _load("wine")
    return _split(x, y, 0.3, standardise=True)


@lru_cache(maxsize=None)
def breast_cancer() -> Split:
    """sklearn breast_cancer: 569 samples, 30 standardised features, benign/malignant."""
    x, y = _load("breast_cancer")
    return _split(x, y, TEST_FRACTION, standardise=True)


def one_hot(labels: torch.Tensor, classes: int) -> torch.Tensor:
    """Float one-hot rows for integer labels (the label format of every classification batch)."""
    return torch.nn.functional.one_hot(labels, classes).float()


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean of ``logsumexp(z) - z . t`` over rows, for one-hot (or soft) targets ``t``.

    The same number as ``F.cross_entropy`` on integer labels, written with element-wise ops and
    reductions only: under ``vmap(grad(...))`` that runs ~2x faster than the fused loss, whose
    batching goes through a Python decomposition of ``nll_loss``.
    """
    return (torch.logsumexp(logits, -1) - (logits * targets).sum(-1)).mean()


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of rows whose arg-max logit is the label."""
    return float((logits.argmax(-1) == labels).float().mean())
