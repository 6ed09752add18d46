"""SGD: plain stochastic gradient descent.

Robbins & Monro, "A Stochastic Approximation Method", Ann. Math. Statist. 1951.
Matches torch.optim.SGD with momentum=0, including its L2 weight decay (added to the gradient):

    theta <- theta - lr * (g + weight_decay * theta)
"""

HPARAMS = {"lr": 1e-3, "weight_decay": 0.0}


def init(param):
    return {}


def update(grad, param, state, step, hp):
    g = grad + hp.weight_decay * param
    return -hp.lr * g, {}
