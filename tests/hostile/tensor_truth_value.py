# expect: crashed
# `if` on a whole tensor is ambiguous.
HPARAMS = {"lr": 0.001}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    if grad > 0:
        x = grad
    else:
        x = -grad
    return -hp.lr * x, {"m": state["m"]}
