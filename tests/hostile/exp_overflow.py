# expect: nan
# exp of a large number overflows to inf.
HPARAMS = {"lr": 0.001}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    return -hp.lr * exp(1000 * abs(grad) + 1000), {"m": state["m"]}
