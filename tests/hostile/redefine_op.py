# expect: forbidden_construct
# Shadowing a vocabulary op.
HPARAMS = {"lr": 0.001}

def sqrt(x):
    return x

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    return -hp.lr * sqrt(grad), {"m": state["m"]}
