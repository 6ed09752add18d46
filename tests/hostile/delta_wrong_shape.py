# expect: shape_error
# A 0-d delta for every parameter.
HPARAMS = {"lr": 0.001}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    return -hp.lr * mean(grad), {"m": state["m"]}
