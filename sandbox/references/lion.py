"""Lion: evolved sign momentum.

Chen et al., "Symbolic Discovery of Optimization Algorithms", NeurIPS 2023 (arXiv:2302.06675).
Matches lucidrains/lion-pytorch (the paper's Program 1) with decoupled weight decay:

    c <- beta1 * m + (1 - beta1) * g
    theta <- theta - lr * (sign(c) + weight_decay * theta)
    m <- beta2 * m + (1 - beta2) * g
"""

HPARAMS = {"lr": 1e-4, "beta1": 0.9, "beta2": 0.99, "weight_decay": 0.0}


def init(param):
    return {"m": zeros_like(param)}


def update(grad, param, state, step, hp):
    direction = sign(interp(grad, state["m"], hp.beta1))
    m = interp(grad, state["m"], hp.beta2)
    return -hp.lr * (direction + hp.weight_decay * param), {"m": m}
