# expect: forbidden_construct
# An integer literal above the bound.
HPARAMS = {"lr": 0.001}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    n = 10000000000000000000000
    return -hp.lr * grad * n, {"m": state["m"]}
