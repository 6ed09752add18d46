# expect: forbidden_construct
# A default argument that smuggles in a function.
HPARAMS = {"lr": 0.001}

def helper(x, f=open):
    return x

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    return helper(grad), {"m": state["m"]}
