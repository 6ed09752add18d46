# expect: forbidden_construct
# Bounded literals, unbounded integer power: 10 ** (12 ** 10**12), rejected before it runs.
HPARAMS = {"lr": 0.001}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    n = 10**12 ** 10**12
    return -hp.lr * grad * n, {"m": state["m"]}
