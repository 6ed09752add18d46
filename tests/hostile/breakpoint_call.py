# expect: invalid_code
# Dropping into the debugger.
HPARAMS = {"lr": 0.001}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    x = breakpoint()
    return -hp.lr * grad, {"m": state["m"]}
