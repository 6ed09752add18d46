# expect: crashed
# 0/0 on Python numbers raises ZeroDivisionError.
HPARAMS = {"lr": 0.001}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    x = 0 / 0
    return -hp.lr * grad * x, {"m": state["m"]}
