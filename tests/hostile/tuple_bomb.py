# expect: oom
# A tuple repeated 10**12 times.
HPARAMS = {"lr": 0.001}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    t = (grad, grad) * 10**12
    return -hp.lr * grad, {"m": state["m"]}
