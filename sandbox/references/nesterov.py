"""SGD with Nesterov momentum.

Nesterov, "A method for solving the convex programming problem with convergence rate O(1/k^2)",
1983; in the form of Sutskever et al., ICML 2013. Matches torch.optim.SGD(momentum=0.9,
nesterov=True): the step looks ahead along the updated buffer,

    g   <- grad + weight_decay * theta
    buf <- g on step 1, else momentum * buf + (1 - dampening) * g
    theta <- theta - lr * (g + momentum * buf)
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
    return -hp.lr * (g + hp.momentum * buf), {"buf": buf}
