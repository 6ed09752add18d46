# expect: nan
# A finite delta but a NaN carried in the state.
HPARAMS = {"lr": 0.001}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    m = sqrt(-ones_like(grad))
    return -hp.lr * grad, {"m": m}
