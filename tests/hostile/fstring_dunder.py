# expect: forbidden_construct
# An f-string that evaluates a dunder chain.
HPARAMS = {"lr": 0.001}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    s = f"{grad.__class__.__mro__}"
    return -hp.lr * grad, {"m": state["m"]}
