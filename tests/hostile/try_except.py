# expect: forbidden_construct
# try/except to swallow the sandbox's errors.
HPARAMS = {"lr": 0.001}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    try:
        x = grad
    except:
        x = grad
    return -hp.lr * x, {"m": state["m"]}
