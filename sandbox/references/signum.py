"""Signum: signSGD with momentum.

Bernstein, Wang, Azizzadenesheli & Anandkumar, "signSGD: Compressed Optimisation for Non-Convex
Problems", ICML 2018 (arXiv:1802.04434), Algorithm 3. Matches the authors' MXNet implementation
(mxnet.optimizer.Signum, wd_lh = 0): the momentum starts at zero and averages the decayed gradient,

    m <- momentum * m + (1 - momentum) * (g + weight_decay * theta)
    theta <- theta - lr * sign(m)
"""

HPARAMS = {"lr": 1e-3, "momentum": 0.9, "weight_decay": 0.0}


def init(param):
    return {"m": zeros_like(param)}


def update(grad, param, state, step, hp):
    m = interp(grad + hp.weight_decay * param, state["m"], hp.momentum)
    return -hp.lr * sign(m), {"m": m}
