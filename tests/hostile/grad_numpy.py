# expect: forbidden_construct
# A tensor method: grad.numpy().
HPARAMS = {"lr": 0.001}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    a = grad.numpy()
    return -hp.lr * grad, {"m": state["m"]}
