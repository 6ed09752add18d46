"""AdEMAMix: Adam with a mixture of a fast and a slow gradient average.

Pagliardini, Ablin & Grangier, "The AdEMAMix Optimizer: Better, Faster, Older", ICLR 2025
(arXiv:2409.03137), Algorithm 1. Matches apple/ml-ademamix's PyTorch implementation, including
its optional linear warm-ups of alpha and (in half-life) of beta3; a warm-up of 0 turns it off:

    m1 <- beta1 * m1 + (1 - beta1) * g          (fast EMA, bias-corrected)
    m2 <- beta3 * m2 + (1 - beta3) * g          (slow EMA, not bias-corrected)
    v  <- beta2 * v  + (1 - beta2) * g^2
    theta <- theta - lr * ((m1 / (1 - beta1^t) + alpha * m2) / (sqrt(v / (1 - beta2^t)) + eps)
                           + weight_decay * theta)
"""

HPARAMS = {
    "lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "beta3": 0.9999, "alpha": 2.0, "eps": 1e-8,
    "weight_decay": 0.0, "alpha_warmup": 0.0, "beta3_warmup": 0.0,
}


def half_life(beta):
    # The number of steps over which an EMA with this beta halves a gradient's weight, minus 1.
    return log(0.5) / log(beta + 1e-8) - 1


def init(param):
    return {"m1": zeros_like(param), "m2": zeros_like(param), "v": zeros_like(param)}


def update(grad, param, state, step, hp):
    alpha = hp.alpha
    if hp.alpha_warmup > 0 and step < hp.alpha_warmup:
        alpha = step / hp.alpha_warmup * hp.alpha
    beta3 = hp.beta3
    if hp.beta3_warmup > 0 and step < hp.beta3_warmup:
        a = step / hp.beta3_warmup
        beta3 = power(0.5, 1 / ((1 - a) * half_life(hp.beta1) + a * half_life(hp.beta3) + 1))
    m1 = hp.beta1 * state["m1"] + (1 - hp.beta1) * grad
    m2 = beta3 * state["m2"] + (1 - beta3) * grad
    v = hp.beta2 * state["v"] + (1 - hp.beta2) * grad * grad
    bias1 = 1 - hp.beta1 ** step
    bias2 = 1 - hp.beta2 ** step
    denom = sqrt(v) / sqrt(bias2) + hp.eps
    direction = (m1 / bias1 + alpha * m2) / denom + hp.weight_decay * param
    return -hp.lr * direction, {"m1": m1, "m2": m2, "v": v}
