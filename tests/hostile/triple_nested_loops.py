# expect: forbidden_construct
# Three nested 16-step loops (4096 bodies).
HPARAMS = {"lr": 0.001}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    m = state["m"]
    for i in range(16):
        for j in range(16):
            for k in range(16):
                m = newton_schulz(m + grad, 16)
    return -hp.lr * m, {"m": m}
