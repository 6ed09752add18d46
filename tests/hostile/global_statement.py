# expect: forbidden_construct
# global, to change module state between calls.
HPARAMS = {"lr": 0.001}

COUNTER = 0

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    global COUNTER
    return -hp.lr * grad, {"m": state["m"]}
