# expect: timeout
# 256 bounded iterations that each square a growing integer.
HPARAMS = {"lr": 0.001}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    n = 10**12
    for i in range(16):
        for j in range(16):
            n = n * n
    return -hp.lr * grad * n, {"m": state["m"]}
