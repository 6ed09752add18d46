"""Building blocks the attention tasks share (the same arithmetic, so their runs stay bit-identical)."""

from __future__ import annotations

import torch

from sandbox.tasks.base import Params


def rms(x: torch.Tensor) -> torch.Tensor:
    """RMS normalisation over the last dimension, without a gain (pre-norm, as in GPT-style blocks)."""
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + 1e-6)


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
