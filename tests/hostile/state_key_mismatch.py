# expect: shape_error
# init makes `m`, update returns `v`.
HPARAMS = {"lr": 0.001}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    return -hp.lr * grad, {"v": grad}
