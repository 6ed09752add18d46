# expect: nan
# 0/0 on tensors is NaN.
HPARAMS = {"lr": 0.001}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    z = zeros_like(grad)
    return z / z, {"m": state["m"]}
