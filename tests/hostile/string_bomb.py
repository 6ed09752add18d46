# expect: oom
# A terabyte string from a small literal.
HPARAMS = {"lr": 0.001}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    s = "x" * 10**12
    return -hp.lr * grad, {"m": state["m"]}
