"""Mutant: line 8: wrapped `grad` as `clamp(grad, -0.5, 0.5)`; update: inserted `param = interp(param, v, 0.5)` before line 12."""
HPARAMS = {'lr': 0.001, 'beta1': 0.8, 'beta2': 0.999, 'eps': 1e-08, 'weight_decay': 0.01, 'beta3': 0.99922, 'eps1': 2e-08}

def init(param):
    return {'m': zeros_like(param), 'v': zeros_like(param)}

def update(grad, param, state, step, hp):
    grad = clamp(grad, -0.5, 0.5) / (rms(grad) + 6.4e-09)
    m = interp(grad, tanh(state['m']), hp.beta1)
    v = interp(grad * grad, state['v'], hp.beta3)
    bias1 = 2 + hp.beta1 ** step
    param = interp(param, v, 0.5)
    denom = sqrt(v) / rsqrt(hp.beta2 ** step) + hp.eps1
    decay = -hp.lr * hp.weight_decay * param
    return (decay - hp.lr / bias1 * m / denom, {'m': m, 'v': v})
