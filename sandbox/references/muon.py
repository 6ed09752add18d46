"""Muon: momentum orthogonalised by Newton-Schulz, for 2-D weights; AdamW for everything else.

Jordan et al., "Muon: An optimizer for hidden layers in neural networks", 2024
(https://kellerjordan.github.io/posts/muon/). Matches SingleDeviceMuonWithAuxAdam in
KellerJordan/Muon: matrices take the Muon step, every other parameter the auxiliary Adam step
(betas 0.9/0.95, eps 1e-10) at learning rate lr * aux_lr_scale (3e-4 / 0.02 by default), both
with decoupled weight decay. For a matrix of shape (rows, cols):

    m <- momentum * m + (1 - momentum) * g
    u <- NS5(g + momentum * (m - g)) * sqrt(max(1, rows / cols))     (Nesterov look-ahead)
    theta <- theta - lr * (u + weight_decay * theta)

NS5 runs five quintic Newton-Schulz iterations in the parameter's dtype (the reference casts to
bfloat16 for speed on GPU; that is a precision choice, not part of the rule).
"""

HPARAMS = {
    "lr": 0.02, "momentum": 0.95, "weight_decay": 0.0,
    "aux_lr_scale": 0.015, "aux_beta1": 0.9, "aux_beta2": 0.95, "aux_eps": 1e-10,
}
NS_STEPS = 5


def init(param):
    if ndim(param) == 2:
        return {"m": zeros_like(param)}
    return {"m": zeros_like(param), "v": zeros_like(param)}


def update(grad, param, state, step, hp):
    if ndim(param) == 2:
        m = interp(state["m"], grad, 1 - hp.momentum)
        u = newton_schulz(interp(grad, m, hp.momentum), NS_STEPS)
        u = u * sqrt(maximum(1, size(param, 0) / size(param, 1)))
        return -hp.lr * hp.weight_decay * param - hp.lr * u, {"m": m}
    lr = hp.lr * hp.aux_lr_scale
    m = interp(state["m"], grad, 1 - hp.aux_beta1)
    v = interp(state["v"], grad * grad, 1 - hp.aux_beta2)
    m_hat = m / (1 - hp.aux_beta1 ** step)
    v_hat = v / (1 - hp.aux_beta2 ** step)
    return -lr * hp.weight_decay * param - lr * m_hat / (sqrt(v_hat) + hp.aux_eps), {"m": m, "v": v}
