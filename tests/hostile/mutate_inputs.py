# expect: ok
# `grad += 1` must not change the caller's tensors (the contract rewrites it).
HPARAMS = {"lr": 0.001}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    grad += 1
    param *= 0
    return -hp.lr * grad, {"m": state["m"]}
