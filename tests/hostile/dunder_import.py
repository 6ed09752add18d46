# expect: forbidden_construct
# __import__ called directly.
HPARAMS = {"lr": 0.001}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    os = __import__("os")
    return -hp.lr * grad, {"m": state["m"]}
