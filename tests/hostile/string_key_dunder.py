# expect: crashed
# A dunder string as a state key finds nothing (KeyError).
HPARAMS = {"lr": 0.001}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    x = state["__class__"]
    return -hp.lr * grad, {"m": state["m"]}
