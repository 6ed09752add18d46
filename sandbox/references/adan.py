"""Adan: adaptive Nesterov momentum, with moving averages of the gradient and its difference.

Xie et al., "Adan: Adaptive Nesterov Momentum Algorithm for Faster Optimizing Deep Models",
TPAMI 2024 (arXiv:2208.06677), Algorithm 1. Matches sail-sg/Adan's adan.py, the non-fused
single-tensor step (_single_tensor_adan) with its defaults: no global gradient clipping
(max_grad_norm=0) and the proximal weight decay (no_prox=False). With d_t = g_t - g_{t-1}
(0 at the first step, where the code starts the previous gradient at the current one):

    m <- beta1 * m + (1 - beta1) * g
    d <- beta2 * d + (1 - beta2) * d_t
    n <- beta3 * n + (1 - beta3) * (g + beta2 * d_t)^2
    denom = sqrt(n) / sqrt(1 - beta3^t) + eps
    theta <- (theta - lr / (1 - beta1^t) * m / denom - lr * beta2 / (1 - beta2^t) * d / denom)
             / (1 + lr * weight_decay)

The betas are the code's (0.98, 0.92, 0.99), i.e. one minus the paper's.
"""

HPARAMS = {"lr": 1e-3, "beta1": 0.98, "beta2": 0.92, "beta3": 0.99, "eps": 1e-8, "weight_decay": 0.0}


def init(param):
    return {"m": zeros_like(param), "d": zeros_like(param), "n": zeros_like(param), "prev_grad": zeros_like(param)}


def update(grad, param, state, step, hp):
    # 0 at step 1, 1 after: no gradient difference before there is a previous gradient (arithmetic,
    # not a branch, so a tensor step stays one traced graph)
    started = minimum(step - 1, 1)
    diff = (grad - state["prev_grad"]) * started
    m = hp.beta1 * state["m"] + (1 - hp.beta1) * grad
    d = hp.beta2 * state["d"] + (1 - hp.beta2) * diff
    z = diff * hp.beta2 + grad
    n = hp.beta3 * state["n"] + (1 - hp.beta3) * z * z
    denom = sqrt(n) / sqrt(1 - hp.beta3 ** step) + hp.eps
    step_size = hp.lr / (1 - hp.beta1 ** step)
    step_size_diff = hp.lr * hp.beta2 / (1 - hp.beta2 ** step)
    moved = param - step_size * m / denom - step_size_diff * d / denom
    new_param = moved / (1 + hp.lr * hp.weight_decay)
    return new_param - param, {"m": m, "d": d, "n": n, "prev_grad": grad}
