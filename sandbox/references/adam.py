"""Adam: adaptive moment estimation.

Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015 (arXiv:1412.6980).
Matches torch.optim.Adam, including its L2-style weight decay (added to the gradient).
"""

HPARAMS = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0}


def init(param):
    return {"m": zeros_like(param), "v": zeros_like(param)}


def update(grad, param, state, step, hp):
    g = grad + hp.weight_decay * param
    m = interp(g, state["m"], hp.beta1)
    v = interp(g * g, state["v"], hp.beta2)
    bias1 = 1 - hp.beta1 ** step
    bias2 = 1 - hp.beta2 ** step
    denom = sqrt(v) / sqrt(bias2) + hp.eps
    return -(hp.lr / bias1) * m / denom, {"m": m, "v": v}
