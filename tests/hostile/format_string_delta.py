# expect: shape_error
# printf-style formatting produces a string, not a tensor.
HPARAMS = {"lr": 0.001}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    return "%s" % grad, {"m": state["m"]}
