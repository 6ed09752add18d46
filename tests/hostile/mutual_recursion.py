# expect: forbidden_construct
# Recursion through two helpers.
HPARAMS = {"lr": 0.001}

def ping(x):
    return pong(x)


def pong(x):
    return ping(x)

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    return ping(grad), {"m": state["m"]}
