"""LAMB: Adam's step rescaled per parameter tensor by the trust ratio ||theta|| / ||step||.

You et al., "Large Batch Optimization for Deep Learning: Training BERT in 76 minutes", ICLR 2020
(arXiv:1904.00962), Algorithm 2. Matches timm's Lamb (huggingface/pytorch-image-models,
timm/optim/lamb.py, _single_tensor_lamb: the NVIDIA FusedLAMB behaviour) with its defaults
(bias correction, grad averaging, L2 decay folded into the step, no trust clipping), except
max_grad_norm=None: timm's default first divides every gradient by max(1, global grad norm), a
norm over all parameters together that a per-parameter update rule cannot see.

    u = m / (1 - beta1^t) / (sqrt(v) / sqrt(1 - beta2^t) + eps) + weight_decay * theta
    trust = ||theta|| / ||u||, or 1 where either norm is 0      (only when weight_decay != 0)
    theta <- theta - lr * trust * u
"""

HPARAMS = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-6, "weight_decay": 0.01}


def init(param):
    return {"m": zeros_like(param), "v": zeros_like(param)}


def update(grad, param, state, step, hp):
    m = interp(state["m"], grad, 1 - hp.beta1)
    v = hp.beta2 * state["v"] + (1 - hp.beta2) * grad * grad
    denom = sqrt(v) / sqrt(1 - hp.beta2 ** step) + hp.eps
    u = m / (1 - hp.beta1 ** step) / denom
    if hp.weight_decay != 0:
        # timm adapts only parameters that are decayed (always_adapt=False)
        u = u + hp.weight_decay * param
        w_norm = norm(param)
        u_norm = norm(u)
        # timm's nested torch.where, as arithmetic: `both` is 1 when both norms are positive (a
        # norm is >= 0, so its sign is 0 or 1), else 0, and then the ratio is exactly 1
        both = sign(w_norm) * sign(u_norm)
        trust = both * w_norm / (u_norm + (1 - both)) + (1 - both)
        u = u * trust
    return -hp.lr * u, {"m": m, "v": v}
