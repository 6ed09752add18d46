# expect: shape_error
# A transposed delta.
HPARAMS = {"lr": 0.001}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    return -hp.lr * transpose(grad), {"m": state["m"]}
