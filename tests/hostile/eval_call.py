# expect: invalid_code
# eval is not in the vocabulary.
HPARAMS = {"lr": 0.001}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    x = eval("1 + 1")
    return -hp.lr * grad * x, {"m": state["m"]}
