# expect: shape_error
# (delta, state, extra).
HPARAMS = {"lr": 0.001}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    return -hp.lr * grad, {"m": state["m"]}, 1.0
