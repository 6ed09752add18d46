# expect: forbidden_construct
# A plain import.
HPARAMS = {"lr": 0.001}

import os

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    return -hp.lr * grad, {"m": state["m"]}
