"""AdamW: Adam with decoupled weight decay.

Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019 (arXiv:1711.05101).
Matches torch.optim.AdamW: the decay multiplies the parameter by (1 - lr * weight_decay)
before the Adam step, and eps is added after the bias-corrected square root.
"""

HPARAMS = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.01}


def init(param):
    return {"m": zeros_like(param), "v": zeros_like(param)}


def update(grad, param, state, step, hp):
    m = interp(grad, state["m"], hp.beta1)
    v = interp(grad * grad, state["v"], hp.beta2)
    bias1 = 1 - hp.beta1 ** step
    bias2 = 1 - hp.beta2 ** step
    denom = sqrt(v) / sqrt(bias2) + hp.eps
    decay = -hp.lr * hp.weight_decay * param
    return decay - (hp.lr / bias1) * m / denom, {"m": m, "v": v}
