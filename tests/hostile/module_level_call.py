# expect: forbidden_construct
# Code at module level runs during loading.
HPARAMS = {"lr": 0.001}

X = sqrt(4.0)

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    return -hp.lr * grad, {"m": state["m"]}
