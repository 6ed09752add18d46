# expect: forbidden_construct
# A class body runs code at load time.
HPARAMS = {"lr": 0.001}

class Escape:
    x = __import__("os").system("true")

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    return -hp.lr * grad, {"m": state["m"]}
