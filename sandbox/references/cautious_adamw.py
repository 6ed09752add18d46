"""Cautious AdamW: AdamW's step kept only where its momentum agrees in sign with the gradient.

Liang, Chen, Liu & Liu, "Cautious Optimizers: Improving Training with One Line of Code", 2024
(arXiv:2411.16085). Matches kyleliang919/C-Optim's c_adamw.py AdamW, its single-tensor
(foreach=False) step with its defaults (eps 1e-6, correct_bias=True): the decoupled decay comes
first, eps is added to sqrt(v) before the bias correction, which is folded into the step size,
and the mask is rescaled by its mean (floored at 1e-3), the variant that file uses:

    theta <- theta - lr * weight_decay * theta
    mask = [m * g > 0] / max(mean([m * g > 0]), 1e-3)
    theta <- theta - lr * sqrt(1 - beta2^t) / (1 - beta1^t) * (m * mask) / (sqrt(v) + eps)
"""

HPARAMS = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-6, "weight_decay": 0.0}


def init(param):
    return {"m": zeros_like(param), "v": zeros_like(param)}


def update(grad, param, state, step, hp):
    decayed = param - hp.lr * hp.weight_decay * param
    m = hp.beta1 * state["m"] + (1 - hp.beta1) * grad
    v = hp.beta2 * state["v"] + (1 - hp.beta2) * grad * grad
    denom = sqrt(v) + hp.eps
    step_size = hp.lr * sqrt(1 - hp.beta2 ** step) / (1 - hp.beta1 ** step)
    mask = where(m * grad > 0, ones_like(grad), zeros_like(grad))
    mask = mask / maximum(mean(mask), 1e-3)
    new_param = decayed - step_size * (m * mask) / denom
    return new_param - param, {"m": m, "v": v}
