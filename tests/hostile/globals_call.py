# expect: invalid_code
# globals() to find the loader's scope.
HPARAMS = {"lr": 0.001}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    g = globals()
    return -hp.lr * grad, {"m": state["m"]}
