# expect: forbidden_construct
# A lambda used as a value.
HPARAMS = {"lr": 0.001}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    f = lambda x: x
    return -hp.lr * f(grad), {"m": state["m"]}
