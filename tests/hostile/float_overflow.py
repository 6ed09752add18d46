# expect: crashed
# A Python float power that overflows raises OverflowError.
HPARAMS = {"lr": 0.001}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    x = 10.0 ** 400
    return -hp.lr * grad * x, {"m": state["m"]}
