"""AMSGrad: Adam whose second-moment estimate never decreases.

Reddi, Kale & Kumar, "On the Convergence of Adam and Beyond", ICLR 2018 (arXiv:1904.09237).
Matches torch.optim.Adam(amsgrad=True): the running maximum is taken over the raw (not
bias-corrected) second moment, and the bias correction is applied to that maximum:

    v_max <- max(v_max, v)
    theta <- theta - lr / (1 - beta1^t) * m / (sqrt(v_max) / sqrt(1 - beta2^t) + eps)
"""

HPARAMS = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0}


def init(param):
    return {"m": zeros_like(param), "v": zeros_like(param), "v_max": zeros_like(param)}


def update(grad, param, state, step, hp):
    g = grad + hp.weight_decay * param
    m = interp(g, state["m"], hp.beta1)
    v = interp(g * g, state["v"], hp.beta2)
    v_max = maximum(state["v_max"], v)
    bias1 = 1 - hp.beta1 ** step
    bias2 = 1 - hp.beta2 ** step
    denom = sqrt(v_max) / sqrt(bias2) + hp.eps
    return -(hp.lr / bias1) * m / denom, {"m": m, "v": v, "v_max": v_max}
