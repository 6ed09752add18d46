"""SGD with (heavy-ball) momentum.

Polyak, "Some methods of speeding up the convergence of iteration methods", 1964; in the form of
Sutskever et al., "On the importance of initialization and momentum in deep learning", ICML 2013.
Matches torch.optim.SGD(momentum=0.9, nesterov=False), including its first step (the buffer
starts as the gradient itself, so dampening does not apply to it):

    g   <- grad + weight_decay * theta
    buf <- g                                       on step 1
    buf <- momentum * buf + (1 - dampening) * g    afterwards
    theta <- theta - lr * buf
"""

HPARAMS = {"lr": 1e-3, "momentum": 0.9, "dampening": 0.0, "weight_decay": 0.0}


def init(param):
    return {"buf": zeros_like(param)}


def update(grad, param, state, step, hp):
    g = grad + hp.weight_decay * param
    if step == 1:
        buf = g
    else:
        buf = hp.momentum * state["buf"] + (1 - hp.dampening) * g
    return -hp.lr * buf, {"buf": buf}
