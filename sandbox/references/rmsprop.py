"""RMSprop: divide the gradient by a running root mean square of recent gradients.

Tieleman & Hinton, "Lecture 6.5 - rmsprop", COURSERA: Neural Networks for Machine Learning, 2012.
Matches torch.optim.RMSprop (non-centred; eps added outside the square root; optional momentum
applied to the normalised gradient):

    v   <- alpha * v + (1 - alpha) * g^2
    buf <- momentum * buf + g / (sqrt(v) + eps)
    theta <- theta - lr * buf
"""

HPARAMS = {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8, "weight_decay": 0.0, "momentum": 0.0}


def init(param):
    return {"v": zeros_like(param), "buf": zeros_like(param)}


def update(grad, param, state, step, hp):
    g = grad + hp.weight_decay * param
    v = interp(g * g, state["v"], hp.alpha)
    buf = hp.momentum * state["buf"] + g / (sqrt(v) + hp.eps)
    return -hp.lr * buf, {"v": v, "buf": buf}
