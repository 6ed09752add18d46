# expect: invalid_code
# getattr with a dunder string.
HPARAMS = {"lr": 0.001}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    d = getattr(hp, "__dict__")
    return -hp.lr * grad, {"m": state["m"]}
