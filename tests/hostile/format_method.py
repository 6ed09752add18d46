# expect: forbidden_construct
# str.format with an attribute lookup in the field.
HPARAMS = {"lr": 0.001}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    s = "{0.__class__}".format(grad)
    return -hp.lr * grad, {"m": state["m"]}
