# expect: forbidden_construct
# hp._values, the private storage.
HPARAMS = {"lr": 0.001}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    d = hp._values
    return -hp.lr * grad, {"m": state["m"]}
