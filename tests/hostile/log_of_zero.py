# expect: nan
# log(0) = -inf in the delta.
HPARAMS = {"lr": 0.001}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    return -hp.lr * log(zeros_like(param)), {"m": state["m"]}
