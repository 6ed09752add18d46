"""NAdamW: NAdam with decoupled weight decay.

Dozat, "Incorporating Nesterov Momentum into Adam", ICLR 2016 workshop, with the decay of
Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019 (arXiv:1711.05101). Matches torch.optim.NAdam with decoupled_weight_decay=True: the
parameter is multiplied by (1 - lr * weight_decay), then takes NAdam's step on the raw gradient.
With mu_t = beta1 * (1 - 0.5 * 0.96^(t * psi)) and P_t = mu_1 * ... * mu_t:

    theta <- theta - lr * (1 - mu_t) / (1 - P_t) * g / d - lr * mu_{t+1} / (1 - P_t mu_{t+1}) * m / d
    where d = sqrt(v / (1 - beta2^t)) + eps.

Defaults are torch's, except weight_decay = 0.01 (torch.optim.AdamW's default): torch.optim.NAdam's
0 would make this program NAdam. The running product P_t is a 0-d state tensor, as torch keeps it.
"""

HPARAMS = {"lr": 2e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.01, "momentum_decay": 4e-3}


def init(param):
    return {"m": zeros_like(param), "v": zeros_like(param), "mu_product": ones_like(mean(param))}


def update(grad, param, state, step, hp):
    bias2 = 1 - hp.beta2 ** step
    mu = hp.beta1 * (1 - 0.5 * 0.96 ** (step * hp.momentum_decay))
    mu_next = hp.beta1 * (1 - 0.5 * 0.96 ** ((step + 1) * hp.momentum_decay))
    mu_product = state["mu_product"] * mu
    m = interp(grad, state["m"], hp.beta1)
    v = interp(grad * grad, state["v"], hp.beta2)
    denom = sqrt(v / bias2) + hp.eps
    decay = -hp.lr * hp.weight_decay * param
    grad_part = (-hp.lr * (1 - mu) / (1 - mu_product)) * grad / denom
    momentum_part = (-hp.lr * mu_next / (1 - mu_product * mu_next)) * m / denom
    return decay + grad_part + momentum_part, {"m": m, "v": v, "mu_product": mu_product}
