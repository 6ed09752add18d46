# expect: forbidden_construct
# Unbounded self-recursion.
HPARAMS = {"lr": 0.001}

def burn(x):
    return burn(x + 1)

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    return burn(grad), {"m": state["m"]}
