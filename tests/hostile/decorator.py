# expect: forbidden_construct
# A decorator runs arbitrary code at definition time.
HPARAMS = {"lr": 0.001}

@zeros_like
def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    return -hp.lr * grad, {"m": state["m"]}
