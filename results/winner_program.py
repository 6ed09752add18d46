"""Mutant: HPARAMS: beta1 0.8 -> 0.59; line 8: wrapped `grad` as `newton_schulz(grad, 5)`."""
HPARAMS = {'lr': 0.001, 'beta1': 0.59, 'beta2': 0.999, 'eps': 1e-08, 'weight_decay': 0.0, 'beta3': 0.8}

def init(param):
    return {'m': zeros_like(param), 'v': zeros_like(param)}

def update(grad, param, state, step, hp):
    g = newton_schulz(grad, 5) + hp.weight_decay * param
    m = interp(g, state['m'], hp.beta1)
    v = interp(g * g, state['v'], hp.beta2)
    bias1 = 1 - hp.beta3 ** step
    bias2 = 1 - hp.beta2 ** step
    denom = sqrt(v) / sqrt(bias2) + hp.eps
    return (-(hp.lr / bias1) * m / denom, {'m': m, 'v': v})
