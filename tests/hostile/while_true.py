# expect: forbidden_construct
# An infinite `while` loop.
HPARAMS = {"lr": 0.001}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    m = state["m"]
    while True:
        m = m + grad
    return -hp.lr * m, {"m": m}
