"""Each reference candidate matches its published implementation step for step.

The candidate is driven the way the harness drives it (``run_init``/``run_update``, then
``param = param + delta``); the reference steps the same parameters with the same gradient
function, so the trajectories feed back into the gradients and any drift would compound.
Where torch has the optimizer, torch.optim (single-tensor path) is the reference; for Lion,
signSGD/Signum, AdEMAMix, Muon, AdaBelief, Adan, Cautious AdamW, LAMB and Yogi the reference is a
direct transcription of the published code (lucidrains/lion-pytorch, mxnet.optimizer.Signum/SignSGD,
apple/ml-ademamix, KellerJordan/Muon, juntang-zhuang/Adabelief-Optimizer, sail-sg/Adan,
kyleliang919/C-Optim, timm's Lamb, jettify/pytorch-optimizer).
"""

from __future__ import annotations

import contextlib
import inspect
import math
from typing import Callable

import pytest
import torch

from sandbox.contract import run_init, run_update
from sandbox.references import load_reference, reference_names

SHAPES = [(7,), (5, 3), (3, 8), (2, 3, 4)]
STEPS = 15
# Relative to each parameter's scale (its largest entry). The candidate and the reference round
# in different places (delta then add, versus a fused addcdiv or a separate decay multiply): about
# one ulp per step, so 15 float32 steps land within a few 1e-7 of the O(1) parameters.
RELATIVE_TOLERANCE = {torch.float32: 1e-6, torch.float64: 1e-12}

Params = list[torch.Tensor]
GradFn = Callable[[int, torch.Tensor], torch.Tensor]


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype):
    # torch keeps scalar state (NAdam's mu_product, step counters) in the default dtype; in
    # float64 runs it must be float64 too, or the reference itself is only float32-accurate.
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def assert_close_to_scale(got: torch.Tensor, expected: torch.Tensor) -> None:
    tol = RELATIVE_TOLERANCE[expected.dtype]
    assert got.dtype == expected.dtype
    torch.testing.assert_close(got, expected, rtol=tol, atol=tol * float(expected.abs().max()))


def make_problem(dtype: torch.dtype, seed: int = 0) -> tuple[Params, GradFn]:
    """Parameters of several shapes and the gradient of a fixed quadratic + sine loss,
    loss_i(p) = sum(0.5 * a_i * p^2 + sin(3 p) / 3 + b_i * p), so the gradient depends on p."""
    gen = torch.Generator().manual_seed(seed)
    params = [torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype) for shape in SHAPES]
    scales = [(torch.rand(shape, generator=gen, dtype=torch.float64) + 0.5).to(dtype) for shape in SHAPES]
    offsets = [(0.3 * torch.randn(shape, generator=gen, dtype=torch.float64)).to(dtype) for shape in SHAPES]

    def grad_fn(i: int, p: torch.Tensor) -> torch.Tensor:
        return scales[i] * p + torch.cos(3 * p) + offsets[i]

    return params, grad_fn


def run_candidate(name: str, params0: Params, grad_fn: GradFn, hp: dict, steps: int = STEPS) -> Params:
    program = load_reference(name)
    hparams = program.hp(**hp)
    params = [p.clone() for p in params0]
    states = [run_init(program, p) for p in params]
    for step in range(1, steps + 1):
        for i, p in enumerate(params):
            delta, states[i] = run_update(program, grad_fn(i, p), p, states[i], step, hparams)
            params[i] = p + delta
    return params


def run_torch(make: Callable[[Params], torch.optim.Optimizer], params0: Params, grad_fn: GradFn,
              steps: int = STEPS) -> Params:
    params = [p.clone().requires_grad_(True) for p in params0]
    opt = make(params)
    for _ in range(steps):
        for i, p in enumerate(params):
            p.grad = grad_fn(i, p.detach())
        opt.step()
    return [p.detach() for p in params]


def run_published(step_fn: Callable, params0: Params, grad_fn: GradFn, steps: int = STEPS, **kw) -> Params:
    """Drive a transcribed reference ``step_fn(p, grad, state, **kw)`` (in-place on p, state)."""
    params = [p.clone() for p in params0]
    states: list[dict] = [{} for _ in params]
    for _ in range(steps):
        for i, p in enumerate(params):
            step_fn(p, grad_fn(i, p), states[i], **kw)
    return params


# --- torch.optim references -----------------------------------------------------------------

WD = 0.1
TORCH_CASES = {
    "sgd": (dict(lr=0.02, weight_decay=WD),
            lambda ps: torch.optim.SGD(ps, lr=0.02, weight_decay=WD, foreach=False)),
    "sgd_momentum": (dict(lr=0.02, momentum=0.9, dampening=0.1, weight_decay=WD),
                     lambda ps: torch.optim.SGD(ps, lr=0.02, momentum=0.9, dampening=0.1,
                                                weight_decay=WD, foreach=False)),
    "nesterov": (dict(lr=0.02, momentum=0.9, weight_decay=WD),
                 lambda ps: torch.optim.SGD(ps, lr=0.02, momentum=0.9, nesterov=True,
                                            weight_decay=WD, foreach=False)),
    "adam": (dict(lr=0.01, beta2=0.99, weight_decay=WD),
             lambda ps: torch.optim.Adam(ps, lr=0.01, betas=(0.9, 0.99), weight_decay=WD, foreach=False)),
    "adamw": (dict(lr=0.01, beta2=0.99, weight_decay=WD),
              lambda ps: torch.optim.AdamW(ps, lr=0.01, betas=(0.9, 0.99), weight_decay=WD, foreach=False)),
    "amsgrad": (dict(lr=0.01, beta2=0.99, weight_decay=WD),
                lambda ps: torch.optim.Adam(ps, lr=0.01, betas=(0.9, 0.99), weight_decay=WD,
                                            amsgrad=True, foreach=False)),
    "nadam": (dict(lr=0.01, beta2=0.99, weight_decay=WD, momentum_decay=0.05),
              lambda ps: torch.optim.NAdam(ps, lr=0.01, betas=(0.9, 0.99), weight_decay=WD,
                                           momentum_decay=0.05, foreach=False)),
    "rmsprop": (dict(lr=0.01, alpha=0.9, weight_decay=WD, momentum=0.5),
                lambda ps: torch.optim.RMSprop(ps, lr=0.01, alpha=0.9, weight_decay=WD, momentum=0.5,
                                               foreach=False)),
    "adagrad": (dict(lr=0.1, lr_decay=0.05, weight_decay=WD),
                lambda ps: torch.optim.Adagrad(ps, lr=0.1, lr_decay=0.05, weight_decay=WD, foreach=False)),
    "adadelta": (dict(lr=1.0, rho=0.8, weight_decay=WD),
                 lambda ps: torch.optim.Adadelta(ps, lr=1.0, rho=0.8, weight_decay=WD, foreach=False)),
    "adamax": (dict(lr=0.01, beta2=0.99, weight_decay=WD),
               lambda ps: torch.optim.Adamax(ps, lr=0.01, betas=(0.9, 0.99), weight_decay=WD, foreach=False)),
    # beta2 = 0.99: rho_t crosses 5 between steps 5 and 6, so both of RAdam's branches run
    "radam": (dict(lr=0.01, beta2=0.99, weight_decay=WD),
              lambda ps: torch.optim.RAdam(ps, lr=0.01, betas=(0.9, 0.99), weight_decay=WD, foreach=False)),
    "nadamw": (dict(lr=0.01, beta2=0.99, weight_decay=WD, momentum_decay=0.05),
               lambda ps: torch.optim.NAdam(ps, lr=0.01, betas=(0.9, 0.99), weight_decay=WD, momentum_decay=0.05,
                                            decoupled_weight_decay=True, foreach=False)),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", sorted(TORCH_CASES))
def test_matches_torch_optim(name: str, dtype: torch.dtype) -> None:
    hp, make = TORCH_CASES[name]
    params0, grad_fn = make_problem(dtype)
    with default_dtype(dtype):
        expected = run_torch(make, params0, grad_fn)
    got = run_candidate(name, params0, grad_fn, hp)
    for p0, e, g in zip(params0, expected, got):
        assert not torch.allclose(e, p0, rtol=0, atol=1e-3), "the trajectory did not move"
        assert_close_to_scale(g, e)


def test_rmsprop_without_momentum_matches_torch() -> None:
    params0, grad_fn = make_problem(torch.float64)
    with default_dtype(torch.float64):
        expected = run_torch(lambda ps: torch.optim.RMSprop(ps, lr=0.01, foreach=False), params0, grad_fn)
    got = run_candidate("rmsprop", params0, grad_fn, {})
    for e, g in zip(expected, got):
        assert_close_to_scale(g, e)


# Reference name -> (torch class, {HPARAMS key: (torch argument, index into it or None)}).
DEFAULTS = {
    "sgd": (torch.optim.SGD, {"lr": ("lr", None), "weight_decay": ("weight_decay", None)}),
    "adam": (torch.optim.Adam, {"lr": ("lr", None), "beta1": ("betas", 0), "beta2": ("betas", 1),
                                "eps": ("eps", None), "weight_decay": ("weight_decay", None)}),
    "adamw": (torch.optim.AdamW, {"lr": ("lr", None), "beta1": ("betas", 0), "beta2": ("betas", 1),
                                  "eps": ("eps", None), "weight_decay": ("weight_decay", None)}),
    "amsgrad": (torch.optim.Adam, {"lr": ("lr", None), "beta1": ("betas", 0), "beta2": ("betas", 1),
                                   "eps": ("eps", None), "weight_decay": ("weight_decay", None)}),
    "nadam": (torch.optim.NAdam, {"lr": ("lr", None), "beta1": ("betas", 0), "beta2": ("betas", 1),
                                  "eps": ("eps", None), "weight_decay": ("weight_decay", None),
                                  "momentum_decay": ("momentum_decay", None)}),
    "rmsprop": (torch.optim.RMSprop, {"lr": ("lr", None), "alpha": ("alpha", None), "eps": ("eps", None),
                                      "weight_decay": ("weight_decay", None), "momentum": ("momentum", None)}),
    "adagrad": (torch.optim.Adagrad, {"lr": ("lr", None), "lr_decay": ("lr_decay", None),
                                      "eps": ("eps", None), "weight_decay": ("weight_decay", None)}),
    "adadelta": (torch.optim.Adadelta, {"lr": ("lr", None), "rho": ("rho", None), "eps": ("eps", None),
                                        "weight_decay": ("weight_decay", None)}),
    "adamax": (torch.optim.Adamax, {"lr": ("lr", None), "beta1": ("betas", 0), "beta2": ("betas", 1),
                                    "eps": ("eps", None), "weight_decay": ("weight_decay", None)}),
    "radam": (torch.optim.RAdam, {"lr": ("lr", None), "beta1": ("betas", 0), "beta2": ("betas", 1),
                                  "eps": ("eps", None), "weight_decay": ("weight_decay", None)}),
    "nadamw": (torch.optim.NAdam, {"lr": ("lr", None), "beta1": ("betas", 0), "beta2": ("betas", 1),
                                   "eps": ("eps", None), "weight_decay": ("weight_decay", None),
                                   "momentum_decay": ("momentum_decay", None)}),
}
# Defaults that differ from the torch class's on purpose (documented in the reference's docstring).
DEFAULT_EXCEPTIONS = {
    ("nadamw", "weight_decay"): 0.01,  # torch.optim.AdamW's; NAdam's 0 would make NAdamW plain NAdam
}


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_defaults_equal_torch_defaults(name: str) -> None:
    cls, mapping = DEFAULTS[name]
    signature = inspect.signature(cls.__init__).parameters
    hparams = load_reference(name).hparams
    assert set(hparams) == set(mapping)
    for key, (arg, index) in mapping.items():
        default = signature[arg].default
        expected = DEFAULT_EXCEPTIONS.get((name, key), default if index is None else default[index])
        assert hparams[key] == expected, key


# --- published references that torch lacks ---------------------------------------------------


def lion_step(p, grad, state, lr, beta1, beta2, weight_decay):
    # lucidrains/lion-pytorch, lion_pytorch.py: update_fn
    exp_avg = state.setdefault("exp_avg", torch.zeros_like(p))
    p.mul_(1.0 - lr * weight_decay)
    update = exp_avg.clone().mul_(beta1).add(grad, alpha=1.0 - beta1).sign_()
    p.add_(update, alpha=-lr)
    exp_avg.mul_(beta2).add_(grad, alpha=1.0 - beta2)


def signsgd_step(p, grad, state, lr, weight_decay):
    # mxnet.optimizer.SignSGD: weight -= lr * sign(grad + wd * weight)
    p.sub_(lr * torch.sign(grad + weight_decay * p))


def signum_step(p, grad, state, lr, momentum, weight_decay):
    # mxnet signum_update: mom = momentum * mom - (1 - momentum) * (grad + wd * weight);
    # weight += lr * sign(mom)
    mom = state.setdefault("mom", torch.zeros_like(p))
    mom.mul_(momentum).sub_((1 - momentum) * (grad + weight_decay * p))
    p.add_(lr * torch.sign(mom))


def ademamix_step(p, grad, state, lr, betas, alpha, eps, weight_decay, alpha_warmup=None, beta3_warmup=None):
    # apple/ml-ademamix, pytorch/ademamix.py: AdEMAMix.step and its warm-up schedulers
    def f(beta, eps=1e-8):
        return math.log(0.5) / math.log(beta + eps) - 1

    def f_inv(t):
        return math.pow(0.5, 1 / (t + 1))

    beta1, beta2, beta3_final = betas
    if not state:
        state.update(step=0, exp_avg_fast=torch.zeros_like(p), exp_avg_slow=torch.zeros_like(p),
                     exp_avg_sq=torch.zeros_like(p))
    state["step"] += 1
    step = state["step"]
    bias_correction1 = 1 - beta1 ** step
    bias_correction2 = 1 - beta2 ** step
    if alpha_warmup is not None and step < alpha_warmup:
        a = step / float(alpha_warmup)
        alpha = (1.0 - a) * 0 + a * alpha
    beta3 = beta3_final
    if beta3_warmup is not None and step < beta3_warmup:
        a = step / float(beta3_warmup)
        beta3 = f_inv((1.0 - a) * f(beta1) + a * f(beta3_final))
    state["exp_avg_fast"].mul_(beta1).add_(grad, alpha=1 - beta1)
    state["exp_avg_slow"].mul_(beta3).add_(grad, alpha=1 - beta3)
    state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    denom = (state["exp_avg_sq"].sqrt() / math.sqrt(bias_correction2)).add_(eps)
    update = (state["exp_avg_fast"].div(bias_correction1) + alpha * state["exp_avg_slow"]) / denom
    update.add_(p, alpha=weight_decay)
    p.add_(-lr * update)


def zeropower_via_newtonschulz5(G, steps):
    # KellerJordan/Muon, muon.py (in G's dtype: the bfloat16 cast there is a speed choice)
    a, b, c = (3.4445, -4.7750, 2.0315)
    X = G
    if G.size(-2) > G.size(-1):
        X = X.mT
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for _ in range(steps):
        A = X @ X.mT
        B = b * A + c * A @ A
        X = a * X + B @ X
    if G.size(-2) > G.size(-1):
        X = X.mT
    return X


def muon_step(p, grad, state, lr, momentum, weight_decay, aux_lr, aux_betas, aux_eps):
    # KellerJordan/Muon, muon.py: SingleDeviceMuonWithAuxAdam.step (muon group for 2-D params,
    # adam group for the rest), with muon_update and adam_update.
    grad = grad.clone()
    if p.ndim == 2:
        buf = state.setdefault("momentum_buffer", torch.zeros_like(p))
        buf.lerp_(grad, 1 - momentum)
        update = grad.lerp_(buf, momentum)
        update = zeropower_via_newtonschulz5(update, steps=5)
        update *= max(1, grad.size(-2) / grad.size(-1)) ** 0.5
        p.mul_(1 - lr * weight_decay)
        p.add_(update.reshape(p.shape), alpha=-lr)
    else:
        if not state:
            state.update(exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p), step=0)
        state["step"] += 1
        buf1, buf2 = state["exp_avg"], state["exp_avg_sq"]
        buf1.lerp_(grad, 1 - aux_betas[0])
        buf2.lerp_(grad.square(), 1 - aux_betas[1])
        buf1c = buf1 / (1 - aux_betas[0] ** state["step"])
        buf2c = buf2 / (1 - aux_betas[1] ** state["step"])
        update = buf1c / (buf2c.sqrt() + aux_eps)
        p.mul_(1 - aux_lr * weight_decay)
        p.add_(update, alpha=-aux_lr)


def adabelief_step(p, grad, state, lr, betas, eps, weight_decay):
    # juntang-zhuang/Adabelief-Optimizer, adabelief_pytorch 0.2.0 AdaBelief.step with
    # weight_decouple=True, fixed_decay=False, amsgrad=False, rectify=False
    beta1, beta2 = betas
    if len(state) == 0:
        state.update(step=0, exp_avg=torch.zeros_like(p), exp_avg_var=torch.zeros_like(p))
    p.mul_(1.0 - lr * weight_decay)
    exp_avg, exp_avg_var = state["exp_avg"], state["exp_avg_var"]
    state["step"] += 1
    bias_correction1 = 1 - beta1 ** state["step"]
    bias_correction2 = 1 - beta2 ** state["step"]
    exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
    grad_residual = grad - exp_avg
    exp_avg_var.mul_(beta2).addcmul_(grad_residual, grad_residual, value=1 - beta2)
    denom = (exp_avg_var.add_(eps).sqrt() / math.sqrt(bias_correction2)).add_(eps)
    step_size = lr / bias_correction1
    p.addcdiv_(exp_avg, denom, value=-step_size)


def adan_step(p, grad, state, lr, betas, eps, weight_decay):
    # sail-sg/Adan, adan.py: Adan.step (max_grad_norm=0, so clip_global_grad_norm = 1) and
    # _single_tensor_adan with no_prox=False
    beta1, beta2, beta3 = betas
    grad = grad.clone()
    state["step"] = state.get("step", 0) + 1
    bias_correction1 = 1.0 - beta1 ** state["step"]
    bias_correction2 = 1.0 - beta2 ** state["step"]
    bias_correction3 = 1.0 - beta3 ** state["step"]
    if "exp_avg" not in state:
        state.update(exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p), exp_avg_diff=torch.zeros_like(p))
    if "neg_pre_grad" not in state or state["step"] == 1:
        state["neg_pre_grad"] = grad.clone().mul_(-1.0)
    exp_avg, exp_avg_sq, exp_avg_diff = state["exp_avg"], state["exp_avg_sq"], state["exp_avg_diff"]
    neg_grad_or_diff = state["neg_pre_grad"]
    neg_grad_or_diff.add_(grad)
    exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)  # m_t
    exp_avg_diff.mul_(beta2).add_(neg_grad_or_diff, alpha=1 - beta2)  # diff_t
    neg_grad_or_diff.mul_(beta2).add_(grad)
    exp_avg_sq.mul_(beta3).addcmul_(neg_grad_or_diff, neg_grad_or_diff, value=1 - beta3)  # n_t
    denom = (exp_avg_sq.sqrt() / math.sqrt(bias_correction3)).add_(eps)
    step_size_diff = lr * beta2 / bias_correction2
    step_size = lr / bias_correction1
    p.addcdiv_(exp_avg, denom, value=-step_size)
    p.addcdiv_(exp_avg_diff, denom, value=-step_size_diff)
    p.div_(1 + lr * weight_decay)
    neg_grad_or_diff.zero_().add_(grad, alpha=-1.0)


def cautious_adamw_step(p, grad, state, lr, betas, eps, weight_decay):
    # kyleliang919/C-Optim, c_adamw.py: AdamW.step, the foreach=False loop (correct_bias=True)
    if "step" not in state:
        state["step"] = 0
    if "exp_avg" not in state:
        state.update(exp_avg=torch.zeros_like(grad), exp_avg_sq=torch.zeros_like(grad))
    exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
    beta1, beta2 = betas
    state["step"] += 1
    if weight_decay > 0.0:
        p.add_(p, alpha=(-lr * weight_decay))
    exp_avg.mul_(beta1).add_(grad, alpha=(1.0 - beta1))
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
    denom = exp_avg_sq.sqrt().add_(eps)
    bias_correction1 = 1.0 - beta1 ** state["step"]
    bias_correction2 = 1.0 - beta2 ** state["step"]
    step_size = lr * math.sqrt(bias_correction2) / bias_correction1
    mask = (exp_avg * grad > 0).to(grad.dtype)
    mask.div_(mask.mean().clamp_(min=1e-3))
    norm_grad = (exp_avg * mask) / denom
    p.add_(norm_grad, alpha=-step_size)


def lamb_step(p, grad, state, lr, betas, eps, weight_decay):
    # timm/optim/lamb.py: Lamb.step and _single_tensor_lamb with bias_correction=True,
    # grad_averaging=True, max_grad_norm=None, trust_clip=False, always_adapt=False, caution=False,
    # decoupled_decay=False
    beta1, beta2 = betas
    beta3 = 1 - beta1
    state["step"] = state.get("step", 0) + 1
    bias_correction1 = 1 - beta1 ** state["step"]
    bias_correction2 = 1 - beta2 ** state["step"]
    if "exp_avg" not in state:
        state.update(exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
    exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
    exp_avg.lerp_(grad, beta3)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    denom = (exp_avg_sq.sqrt() / (bias_correction2 ** 0.5)).add_(eps)
    update = (exp_avg / bias_correction1).div_(denom)
    if weight_decay != 0:
        update.add_(p, alpha=weight_decay)
        w_norm, g_norm = p.norm(2.0), update.norm(2.0)
        trust_ratio = torch.where(w_norm > 0, torch.where(g_norm > 0, w_norm / g_norm, 1.0), 1.0)
        update.mul_(trust_ratio)
    p.add_(update, alpha=-lr)


def yogi_step(p, grad, state, lr, betas, eps, initial_accumulator, weight_decay):
    # jettify/pytorch-optimizer, torch_optimizer/yogi.py: Yogi.step (old-style positional
    # add_/addcmul_ arguments written with keywords)
    if len(state) == 0:
        state.update(step=0, exp_avg=torch.full_like(p, initial_accumulator),
                     exp_avg_sq=torch.full_like(p, initial_accumulator))
    exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
    beta1, beta2 = betas
    state["step"] += 1
    bias_correction1 = 1 - beta1 ** state["step"]
    bias_correction2 = 1 - beta2 ** state["step"]
    if weight_decay != 0:
        grad = grad.add(p, alpha=weight_decay)
    exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
    grad_squared = grad.mul(grad)
    exp_avg_sq.addcmul_(torch.sign(exp_avg_sq - grad_squared), grad_squared, value=-(1 - beta2))
    denom = (exp_avg_sq.sqrt() / math.sqrt(bias_correction2)).add_(eps)
    step_size = lr / bias_correction1
    p.addcdiv_(exp_avg, denom, value=-step_size)


PUBLISHED_CASES = {
    "lion": (dict(lr=0.01, beta1=0.9, beta2=0.99, weight_decay=WD),
             lion_step, dict(lr=0.01, beta1=0.9, beta2=0.99, weight_decay=WD)),
    "signsgd": (dict(lr=0.01, weight_decay=WD), signsgd_step, dict(lr=0.01, weight_decay=WD)),
    "signum": (dict(lr=0.01, momentum=0.8, weight_decay=WD),
               signum_step, dict(lr=0.01, momentum=0.8, weight_decay=WD)),
    "ademamix": (dict(lr=0.01, beta3=0.999, alpha=5.0, weight_decay=WD),
                 ademamix_step, dict(lr=0.01, betas=(0.9, 0.999, 0.999), alpha=5.0, eps=1e-8, weight_decay=WD)),
    "ademamix_warmup": (dict(lr=0.01, beta3=0.999, alpha=5.0, weight_decay=WD, alpha_warmup=10, beta3_warmup=12),
                        ademamix_step, dict(lr=0.01, betas=(0.9, 0.999, 0.999), alpha=5.0, eps=1e-8,
                                            weight_decay=WD, alpha_warmup=10, beta3_warmup=12)),
    "muon": (dict(lr=0.02, momentum=0.95, weight_decay=WD, aux_lr_scale=0.5),
             muon_step, dict(lr=0.02, momentum=0.95, weight_decay=WD, aux_lr=0.01, aux_betas=(0.9, 0.95),
                             aux_eps=1e-10)),
    "adabelief": (dict(lr=0.01, beta2=0.99, eps=1e-8, weight_decay=WD),
                  adabelief_step, dict(lr=0.01, betas=(0.9, 0.99), eps=1e-8, weight_decay=WD)),
    "adabelief_defaults": (dict(lr=0.01), adabelief_step, dict(lr=0.01, betas=(0.9, 0.999), eps=1e-16, weight_decay=0.0)),
    "adan": (dict(lr=0.01, weight_decay=WD),
             adan_step, dict(lr=0.01, betas=(0.98, 0.92, 0.99), eps=1e-8, weight_decay=WD)),
    "cautious_adamw": (dict(lr=0.01, beta2=0.99, weight_decay=WD),
                       cautious_adamw_step, dict(lr=0.01, betas=(0.9, 0.99), eps=1e-6, weight_decay=WD)),
    "lamb": (dict(lr=0.01, beta2=0.99, weight_decay=WD),
             lamb_step, dict(lr=0.01, betas=(0.9, 0.99), eps=1e-6, weight_decay=WD)),
    "lamb_no_decay": (dict(lr=0.01, beta2=0.99, weight_decay=0.0),
                      lamb_step, dict(lr=0.01, betas=(0.9, 0.99), eps=1e-6, weight_decay=0.0)),
    "yogi": (dict(lr=0.01, beta2=0.99, weight_decay=WD),
             yogi_step, dict(lr=0.01, betas=(0.9, 0.99), eps=1e-3, initial_accumulator=1e-6, weight_decay=WD)),
}


def reference_of(case: str) -> str:
    """The reference a published case runs: the longest reference name the case's name starts
    with, up to an underscore ("ademamix_warmup" runs ademamix, "cautious_adamw" itself)."""
    parts = case.split("_")
    return next("_".join(parts[:n]) for n in range(len(parts), 0, -1) if "_".join(parts[:n]) in reference_names())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", sorted(PUBLISHED_CASES))
def test_matches_published_implementation(case: str, dtype: torch.dtype) -> None:
    hp, step_fn, kw = PUBLISHED_CASES[case]
    name = reference_of(case)
    params0, grad_fn = make_problem(dtype)
    expected = run_published(step_fn, params0, grad_fn, **kw)
    got = run_candidate(name, params0, grad_fn, hp)
    for p0, e, g in zip(params0, expected, got):
        assert not torch.allclose(e, p0, rtol=0, atol=1e-3), "the trajectory did not move"
        assert_close_to_scale(g, e)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_lamb_trust_ratio_is_one_where_the_parameter_norm_is_zero(dtype: torch.dtype) -> None:
    # timm's guard: a parameter that starts at zero (its norm 0) takes the plain Adam step at first
    params0, grad_fn = make_problem(dtype)
    zeros = [torch.zeros_like(p) for p in params0]
    kw = dict(lr=0.01, betas=(0.9, 0.99), eps=1e-6, weight_decay=WD)
    for steps in (1, 3):
        expected = run_published(lamb_step, zeros, grad_fn, steps=steps, **kw)
        got = run_candidate("lamb", zeros, grad_fn, dict(lr=0.01, beta2=0.99, weight_decay=WD), steps=steps)
        for e, g in zip(expected, got):
            assert torch.isfinite(g).all() and not torch.equal(g, torch.zeros_like(g))
            assert_close_to_scale(g, e)


def test_every_reference_is_covered() -> None:
    covered = set(TORCH_CASES) | {reference_of(case) for case in PUBLISHED_CASES}
    assert covered == set(reference_names())


@pytest.mark.parametrize("name", reference_names())
def test_reference_documents_its_source(name: str) -> None:
    doc = load_reference(name).doc
    assert len(doc.splitlines()) >= 3, "docstring should cite the paper and the implementation matched"
    assert any(word in doc for word in ("Matches", "matches")), doc
