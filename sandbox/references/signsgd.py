"""signSGD: step by the sign of the gradient.

Bernstein, Wang, Azizzadenesheli & Anandkumar, "signSGD: Compressed Optimisation for Non-Convex
Problems", ICML 2018 (arXiv:1802.04434), Algorithm 1. Matches the authors' MXNet implementation
(mxnet.optimizer.SignSGD), which adds weight decay to the gradient before taking the sign:

    theta <- theta - lr * sign(g + weight_decay * theta)
"""

HPARAMS = {"lr": 1e-3, "weight_decay": 0.0}


def init(param):
    return {}


def update(grad, param, state, step, hp):
    return -hp.lr * sign(grad + hp.weight_decay * param), {}
