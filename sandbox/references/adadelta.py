"""Adadelta: step sizes from the ratio of running RMS of updates to running RMS of gradients.

Zeiler, "ADADELTA: An Adaptive Learning Rate Method", arXiv:1212.5701, 2012. Matches
torch.optim.Adadelta (lr = 1 recovers the paper's rule):

    v <- rho * v + (1 - rho) * g^2
    d <- sqrt(u + eps) / sqrt(v + eps) * g
    u <- rho * u + (1 - rho) * d^2
    theta <- theta - lr * d
"""

HPARAMS = {"lr": 1.0, "rho": 0.9, "eps": 1e-6, "weight_decay": 0.0}


def init(param):
    return {"v": zeros_like(param), "u": zeros_like(param)}


def update(grad, param, state, step, hp):
    g = grad + hp.weight_decay * param
    v = interp(g * g, state["v"], hp.rho)
    d = sqrt(state["u"] + hp.eps) / sqrt(v + hp.eps) * g
    u = interp(d * d, state["u"], hp.rho)
    return -hp.lr * d, {"v": v, "u": u}
