# expect: invalid_code
# Spelling a name out of chr() calls.
HPARAMS = {"lr": 0.001}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    name = chr(111) + chr(115)
    return -hp.lr * grad, {"m": state["m"]}
