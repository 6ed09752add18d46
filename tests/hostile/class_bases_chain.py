# expect: forbidden_construct
# The classic ().__class__.__bases__[0].__subclasses__() escape.
HPARAMS = {"lr": 0.001}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    classes = ().__class__.__bases__[0].__subclasses__()
    return -hp.lr * grad, {"m": state["m"]}
