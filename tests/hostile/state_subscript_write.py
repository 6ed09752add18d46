# expect: forbidden_construct
# Mutating the state dict in place.
HPARAMS = {"lr": 0.001}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    state["m"] = grad
    return -hp.lr * grad, state
