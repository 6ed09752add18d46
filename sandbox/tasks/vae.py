"""A small variational autoencoder (Kingma & Welling, 2014) on sklearn's digits.

    encoder  x (64 pixels in [0, 1]) -> tanh(W_1 x + b_1) (hidden) -> mu, log sigma^2   (latent)
    sample   z = mu + sigma * eps,  eps ~ N(0, I)            (the reparameterisation trick)
    decoder  z -> tanh(W_3 z + b_3) (hidden) -> p = sigmoid(W_4 h + b_4)
    loss     = [ sum_j KL(Bern(x_j) || Bern(p_j)) + KL(N(mu, sigma^2) || N(0, I)) ] / 64

The reconstruction term is the Bernoulli cross-entropy of the grey levels minus its minimum
(the pixels' own binary entropy, a constant of the data), so the loss is the negative ELBO
shifted to be non-negative, per pixel. ``eps`` comes with the batch: drawn from the step's
generator in training (the sampling noise is part of the gradient noise), fixed for the
evaluation, validation and test sets (so those values are deterministic functions of the
parameters).
"""

from __future__ import annotations

import torch

from sandbox.tasks import data
from sandbox.tasks.base import Batch, FixedSplitsTask, Params, minibatch_indices, step_generator
from sandbox.tasks.mlp import init_mlp

EVAL_SIZE = 256
EPS_SEED = 99


def _entropy(x: torch.Tensor) -> torch.Tensor:
    """Binary entropy of each grey level (0 log 0 = 0)."""
    return -(torch.xlogy(x, x) + torch.xlogy(1 - x, 1 - x))


class DigitsVAE(FixedSplitsTask):
    name = "vae_digits"
    version = 1
    steps = 600
    schedule = "warmup_cosine"
    description = "64-H-(2x L) / L-H-64 tanh VAE on sklearn digits, Bernoulli likelihood, one reparameterised sample per image, minibatches of 64"
    family = "generative"
    loss_name = "eval_batch_neg_elbo"
    val_metric_name = "val_neg_elbo"
    test_metric_name = "test_neg_elbo"
    higher_is_better = False
    stochastic = True
    exact_stacked_grad = True
    default_device_ok = True
    hidden = 64
    latent = 8
    batch_size = 64
    variant_space = {"hidden": (32, 64, 96), "latent": (4, 8, 16), "batch_size": (32, 64, 128)}

    def __init__(self, variant: int = 0) -> None:
        super().__init__(variant)
        split = data.digits()
        self._x = split.x_train
        gen = torch.Generator().manual_seed(EPS_SEED)
        self._eval = self._with_entropy(self._x[:EVAL_SIZE], torch.randn(EVAL_SIZE, self.latent, generator=gen))
        self._val = self._with_entropy(split.x_val, torch.randn(len(split.x_val), self.latent, generator=gen))
        self._test = self._with_entropy(split.x_test, torch.randn(len(split.x_test), self.latent, generator=gen))

    @staticmethod
    def _with_entropy(x: torch.Tensor, eps: torch.Tensor) -> Batch:
        return {"x": x, "h": _entropy(x).sum(-1), "eps": eps}

    def init_params(self, seed: int) -> Params:
        encoder = init_mlp((64, self.hidden, 2 * self.latent), seed)
        decoder = init_mlp((self.latent, self.hidden, 64), seed + 1_000_003)
        return {"enc_w1": encoder["w1"], "enc_b1": encoder["b1"], "enc_w2": encoder["w2"], "enc_b2": encoder["b2"],
                "dec_w1": decoder["w1"], "dec_b1": decoder["b1"], "dec_w2": decoder["w2"], "dec_b2": decoder["b2"]}

    def loss(self, params: Params, batch: Batch) -> torch.Tensor:
        x = batch["x"]
        stats = torch.tanh(x @ params["enc_w1"] + params["enc_b1"]) @ params["enc_w2"] + params["enc_b2"]
        mu, log_var = stats[:, : self.latent], stats[:, self.latent:]
        z = mu + torch.exp(0.5 * log_var) * batch["eps"]
        logits = torch.tanh(z @ params["dec_w1"] + params["dec_b1"]) @ params["dec_w2"] + params["dec_b2"]
        # Bernoulli cross-entropy with logits, stably: softplus(l) - x l.
        cross_entropy = (torch.nn.functional.softplus(logits) - x * logits).sum(-1)
        kl = 0.5 * (mu * mu + torch.exp(log_var) - 1 - log_var).sum(-1)
        return (cross_entropy - batch["h"] + kl).mean() / 64

    def batch(self, step: int, seed: int) -> Batch:
        x = self._x[minibatch_indices(len(self._x), self.batch_size, step, seed)]
        eps = torch.randn(self.batch_size, self.latent, generator=step_generator(seed, step, stream=1))
        return self._with_entropy(x, eps)

