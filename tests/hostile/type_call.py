# expect: invalid_code
# type(x) to reach the class hierarchy.
HPARAMS = {"lr": 0.001}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    t = type(grad)
    return -hp.lr * grad, {"m": state["m"]}
