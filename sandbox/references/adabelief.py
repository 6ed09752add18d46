"""AdaBelief: Adam whose second moment tracks the gradient's deviation from its average.

Zhuang et al., "AdaBelief Optimizer: Adapting Stepsizes by the Belief in Observed Gradients",
NeurIPS 2020 (arXiv:2010.07468). Matches juntang-zhuang/Adabelief-Optimizer's adabelief-pytorch
0.2.0 AdaBelief with its defaults (weight_decouple=True, fixed_decay=False, amsgrad=False) but
rectify=False, the plain (non-RAdam) update:

    theta <- theta * (1 - lr * weight_decay)
    m <- beta1 * m + (1 - beta1) * g
    s <- beta2 * s + (1 - beta2) * (g - m)^2 + eps      (eps is added into the state each step)
    theta <- theta - lr / (1 - beta1^t) * m / (sqrt(s) / sqrt(1 - beta2^t) + eps)
"""

HPARAMS = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-16, "weight_decay": 0.0}


def init(param):
    return {"m": zeros_like(param), "s": zeros_like(param)}


def update(grad, param, state, step, hp):
    m = hp.beta1 * state["m"] + (1 - hp.beta1) * grad
    residual = grad - m
    s = hp.beta2 * state["s"] + (1 - hp.beta2) * residual * residual + hp.eps
    bias1 = 1 - hp.beta1 ** step
    bias2 = 1 - hp.beta2 ** step
    denom = sqrt(s) / sqrt(bias2) + hp.eps
    decay = -hp.lr * hp.weight_decay * param
    return decay - (hp.lr / bias1) * m / denom, {"m": m, "s": s}
