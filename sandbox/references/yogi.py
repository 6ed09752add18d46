"""Yogi: Adam whose second moment moves additively, by sign(v - g^2) * g^2, not multiplicatively.

Zaheer, Reddi, Sachan, Kale & Kumar, "Adaptive Methods for Nonconvex Optimization", NeurIPS 2018,
Algorithm 2. Matches jettify/pytorch-optimizer's torch_optimizer.Yogi with its defaults (both
moments start at initial_accumulator = 1e-6, L2 weight decay added to the gradient):

    m <- beta1 * m + (1 - beta1) * g
    v <- v - (1 - beta2) * sign(v - g^2) * g^2
    theta <- theta - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
"""

HPARAMS = {"lr": 1e-2, "beta1": 0.9, "beta2": 0.999, "eps": 1e-3, "weight_decay": 0.0}
INITIAL_ACCUMULATOR = 1e-6


def init(param):
    return {"m": full_like(param, INITIAL_ACCUMULATOR), "v": full_like(param, INITIAL_ACCUMULATOR)}


def update(grad, param, state, step, hp):
    g = grad + hp.weight_decay * param
    m = hp.beta1 * state["m"] + (1 - hp.beta1) * g
    g2 = g * g
    v = state["v"] - (1 - hp.beta2) * sign(state["v"] - g2) * g2
    denom = sqrt(v) / sqrt(1 - hp.beta2 ** step) + hp.eps
    return -(hp.lr / (1 - hp.beta1 ** step)) * m / denom, {"m": m, "v": v}
