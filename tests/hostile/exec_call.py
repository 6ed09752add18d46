# expect: invalid_code
# exec is not in the vocabulary.
HPARAMS = {"lr": 0.001}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    x = exec("import os")
    return -hp.lr * grad, {"m": state["m"]}
