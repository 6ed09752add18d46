# expect: forbidden_construct
# The walrus operator.
HPARAMS = {"lr": 0.001}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    return -hp.lr * (g := grad), {"m": state["m"]}
