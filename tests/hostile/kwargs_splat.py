# expect: forbidden_construct
# ** arguments.
HPARAMS = {"lr": 0.001}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    return -hp.lr * clamp(grad, **state), {"m": state["m"]}
