"""Adamax: Adam with the second moment replaced by an exponentially weighted infinity norm.

Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015 (arXiv:1412.6980),
section 7.1. Matches torch.optim.Adamax (single-tensor path, L2 weight decay added to the
gradient, eps added to |g| inside the max):

    m <- beta1 * m + (1 - beta1) * g
    u <- max(beta2 * u, |g| + eps)
    theta <- theta - lr / (1 - beta1^t) * m / u
"""

HPARAMS = {"lr": 2e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0}


def init(param):
    return {"m": zeros_like(param), "u": zeros_like(param)}


def update(grad, param, state, step, hp):
    g = grad + hp.weight_decay * param
    m = interp(state["m"], g, 1 - hp.beta1)
    u = maximum(state["u"] * hp.beta2, abs(g) + hp.eps)
    bias1 = 1 - hp.beta1 ** step
    return -(hp.lr / bias1) * m / u, {"m": m, "u": u}
