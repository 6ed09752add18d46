# expect: shape_error
# init returns a tensor, not a dict.
HPARAMS = {"lr": 0.001}

def init(param):
    return zeros_like(param)

def update(grad, param, state, step, hp):
    return -hp.lr * grad, state
