# expect: shape_error
# A string smuggled through the state.
HPARAMS = {"lr": 0.001}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    return -hp.lr * grad, {"m": "%s" % hp}
