# expect: invalid_code
# compile() to build a code object.
HPARAMS = {"lr": 0.001}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    c = compile("import os", "x", "exec")
    return -hp.lr * grad, {"m": state["m"]}
