# expect: forbidden_construct
# A vocabulary function's __globals__.
HPARAMS = {"lr": 0.001}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    f = sqrt
    g = f.__globals__
    return -hp.lr * grad, {"m": state["m"]}
