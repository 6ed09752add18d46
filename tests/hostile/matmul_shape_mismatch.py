# expect: crashed
# matmul(g, g) on a non-square matrix.
HPARAMS = {"lr": 0.001}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    x = matmul(grad, grad)
    return -hp.lr * grad + 0 * sum(x), {"m": state["m"]}
