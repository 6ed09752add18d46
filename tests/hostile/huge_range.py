# expect: forbidden_construct
# A loop bound far above the limit.
HPARAMS = {"lr": 0.001}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    m = state["m"]
    for i in range(1000000000):
        m = m + grad
    return -hp.lr * m, {"m": m}
