# expect: forbidden_construct
# Writing a hyperparameter (shared with other calls).
HPARAMS = {"lr": 0.001}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    hp.lr = 1.0
    return -hp.lr * grad, {"m": state["m"]}
