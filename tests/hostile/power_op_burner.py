# expect: timeout
# The vocabulary's `power` on Python integers.
HPARAMS = {"lr": 0.001}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    n = power(10**12, 10**12)
    return -hp.lr * grad * n, {"m": state["m"]}
