# expect: invalid_code
# vars() on the hyperparameters.
HPARAMS = {"lr": 0.001}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    v = vars(hp)
    return -hp.lr * grad, {"m": state["m"]}
