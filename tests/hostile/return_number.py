# expect: shape_error
# A bare number instead of (delta, state).
HPARAMS = {"lr": 0.001}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    return 1.0
