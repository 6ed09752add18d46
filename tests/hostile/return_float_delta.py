# expect: shape_error
# A Python float as the delta.
HPARAMS = {"lr": 0.001}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    return 0.001, {"m": state["m"]}
