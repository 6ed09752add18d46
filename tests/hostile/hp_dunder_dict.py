# expect: forbidden_construct
# hp.__dict__ to reach the HParams internals.
HPARAMS = {"lr": 0.001}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    d = hp.__dict__
    return -hp.lr * grad, {"m": state["m"]}
