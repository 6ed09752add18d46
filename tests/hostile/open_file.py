# expect: invalid_code
# Reading a file.
HPARAMS = {"lr": 0.001}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    secret = open("/etc/passwd")
    return -hp.lr * grad, {"m": state["m"]}
