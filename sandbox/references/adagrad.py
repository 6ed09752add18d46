"""Adagrad: per-coordinate step sizes from the sum of all past squared gradients.

Duchi, Hazan & Singer, "Adaptive Subgradient Methods for Online Learning and Stochastic
Optimization", JMLR 2011. Matches torch.optim.Adagrad (initial_accumulator_value = 0):

    s <- s + g^2
    theta <- theta - lr / (1 + (t - 1) * lr_decay) * g / (sqrt(s) + eps)
"""

HPARAMS = {"lr": 1e-2, "lr_decay": 0.0, "eps": 1e-10, "weight_decay": 0.0}


def init(param):
    return {"sum": zeros_like(param)}


def update(grad, param, state, step, hp):
    g = grad + hp.weight_decay * param
    total = state["sum"] + g * g
    clr = hp.lr / (1 + (step - 1) * hp.lr_decay)
    return -clr * g / (sqrt(total) + hp.eps), {"sum": total}
