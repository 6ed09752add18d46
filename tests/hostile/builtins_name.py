# expect: forbidden_construct
# Reaching __builtins__ by name.
HPARAMS = {"lr": 0.001}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    b = __builtins__
    return -hp.lr * grad, {"m": state["m"]}
