"""Building blocks the attention tasks share (the same arithmetic, so their runs stay bit-identical)."""

from __future__ import annotations

import torch

from sandbox.tasks.base import Params


def rms(x: torch.Tensor) -> torch.Tensor:
    """RMS normalisation over the last dimension, without a gain (pre-norm, as in GPT-style blocks)."""
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + 1e-6)


def prenorm_transformer_params(gen: torch.Generator, vocab: int, positions: int, d: int, layers: int) -> Params:
    """Initial parameters for :func:`prenorm_transformer` (token and position embeddings, ``layers``
    blocks, ``unembed``), drawn from ``gen`` in that order. q, k and v sit in one (d, 3d) matrix and
    there are no biases, as in GPT-2/nanoGPT: fewer tensors means fewer per-tensor update calls,
    which dominate the cost of a model this small. The residual projections are scaled by
    1/sqrt(2 * layers)."""

    def dense(fan_in: int, fan_out: int) -> torch.Tensor:
        return torch.randn(fan_in, fan_out, generator=gen) / fan_in**0.5

    params = {"embed": torch.randn(vocab, d, generator=gen), "pos": torch.randn(positions, d, generator=gen) * 0.1}
    for layer in range(layers):
        params |= {f"qkv{layer}": dense(d, 3 * d),
                   f"proj{layer}": dense(d, d) / (2 * layers) ** 0.5,
                   f"fc{layer}": dense(d, 2 * d),
                   f"out{layer}": dense(2 * d, d) / (2 * layers) ** 0.5}
    params["unembed"] = dense(d, vocab)
    return params


def prenorm_transformer(params: Params, h: torch.Tensor, layers: int, heads: int,
                        mask: torch.Tensor | None = None) -> torch.Tensor:
    """Logits of ``layers`` pre-norm blocks over embedded tokens ``h`` (n, t, d): fused ``qkv{i}``
    (d, 3d) and ``proj{i}`` attention, a ReLU MLP ``fc{i}``/``out{i}``, no biases, then ``unembed``
    after a final norm. ``mask`` (t, t) is added to the attention scores (e.g. causal -inf)."""
    n, t, d = h.shape
    head_dim = d // heads
    for layer in range(layers):
        qkv = (rms(h) @ params[f"qkv{layer}"]).reshape(n, t, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (n, heads, t, head_dim)
        scores = q @ k.transpose(-1, -2) / head_dim**0.5  # (n, heads, t, t)
        if mask is not None:
            scores = scores + mask
        attended = (torch.softmax(scores, -1) @ v).transpose(1, 2).reshape(n, t, d)
        h = h + attended @ params[f"proj{layer}"]
        h = h + torch.relu(rms(h) @ params[f"fc{layer}"]) @ params[f"out{layer}"]
    return rms(h) @ params["unembed"]
