"""RAdam: Adam whose adaptive step is switched on, and rectified, once its variance is tractable.

Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond", ICLR 2020
(arXiv:1908.03265), Algorithm 2. Matches torch.optim.RAdam (single-tensor path, L2 weight decay
added to the gradient). With rho_inf = 2 / (1 - beta2) - 1 and
rho_t = rho_inf - 2 t beta2^t / (1 - beta2^t):

    m_hat = m / (1 - beta1^t)
    rho_t > 5:  theta <- theta - lr * m_hat * r_t * sqrt(1 - beta2^t) / (sqrt(v) + eps)
                with r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
    otherwise:  theta <- theta - lr * m_hat                     (SGD with momentum)

The switch is arithmetic (a 0/1 factor, as torch's capturable path does with torch.where), not a
Python branch, so it stays one traced graph when the step is a tensor; the rectifier is evaluated
at max(rho_t, 5) so that it is finite on the steps the switch discards it.
"""

HPARAMS = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0}


def init(param):
    return {"m": zeros_like(param), "v": zeros_like(param)}


def update(grad, param, state, step, hp):
    g = grad + hp.weight_decay * param
    m = interp(state["m"], g, 1 - hp.beta1)
    v = hp.beta2 * state["v"] + (1 - hp.beta2) * g * g
    bias1 = 1 - hp.beta1 ** step
    bias2 = 1 - hp.beta2 ** step
    rho_inf = 2 / (1 - hp.beta2) - 1
    rho_t = rho_inf - 2 * step * hp.beta2 ** step / bias2
    on = sign(relu(rho_t - 5))  # 1 when rho_t > 5, else 0
    r = maximum(rho_t, 5)
    r_inf = maximum(rho_inf, r)  # rho_inf itself whenever the switch is on (rho_inf > rho_t)
    rect = sqrt((r - 4) * (r - 2) * r_inf / ((r_inf - 4) * (r_inf - 2) * r))
    adaptive = sqrt(bias2) / (sqrt(v) + hp.eps)
    scale = on * rect * adaptive + (1 - on)
    return -(m / bias1) * hp.lr * scale, {"m": m, "v": v}
