# expect: forbidden_construct
# An import hidden in the function body.
HPARAMS = {"lr": 0.001}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    import subprocess
    return -hp.lr * grad, {"m": state["m"]}
