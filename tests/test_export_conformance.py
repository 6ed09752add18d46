"""Exported optimizers checked the way PyTorch checks its own.

PyTorch ships the inputs of its generic optimizer tests with the wheel
(``torch.testing._internal.common_optimizers``: ``optim_db``, ``OptimizerInfo``, the constructor
inputs and the error inputs). Upstream's ``TestOptimRenewed`` (``test/test_optim.py``) runs them
against every torch optimizer. This module builds an ``OptimizerInfo`` for each export from the
matching torch entry (AdamW's for our AdamW, Adam's for Adam-like rules, ...), translates its
inputs to the export's constructor, and runs our own implementation of each of upstream's
checks on it. Which torch inputs and which checks do not apply to which export, and why, is the
data in ``EXCLUDED_KWARGS``, ``EXCLUDED_ERRORS`` and ``EXCLUDED_CHECKS`` below; a test asserts
that every exclusion still matches something, so the table cannot go stale.
"""

from __future__ import annotations

import copy
import functools
import io
import warnings
from pathlib import Path

import pytest
import torch
from torch.nn import Parameter
from torch.optim.lr_scheduler import ReduceLROnPlateau
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

from archive.export import load_optimizer
from archive.export_analysis import complex_refusal, splits_exactly
from archive.export_template import _bounds
from sandbox.contract import load_program
from sandbox.references import reference_source

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from torch.testing._internal import common_optimizers as co
# Importing torch's test helpers freezes torch.backends flags for the whole process (upstream's
# guard against tests leaking cudnn settings); undo that so the rest of our suite is unaffected.
setattr(torch.backends, "__allow_nonbracketed_mutation_flag", True)

RESULTS = Path(__file__).resolve().parents[1] / "results"
EXPORTS = {
    # export -> (what load_optimizer takes, the torch optim_db entry whose inputs apply)
    "adamw": ("adamw", "AdamW"),
    "adam": ("adam", "Adam"),
    "sgd_momentum": ("sgd_momentum", "SGD"),
    "lion": ("lion", "Adam"),  # beta1, beta2, weight_decay: Adam's inputs are Lion's too
    "muon": ("muon", "Muon"),
    "winner": (str(RESULTS / "winner_program.py"), "AdamW"),  # Adam-shaped: beta1, beta2, eps, weight_decay
    "seed0_winner": (str(RESULTS / "seed0_winner_program.py"), "AdamW"),
}

EXCLUDED_KWARGS = {
    "amsgrad": "no export has an AMSGrad switch; AMSGrad is its own reference (sandbox/references/amsgrad.py)",
    "nesterov": "SGD's Nesterov variant is its own reference (sandbox/references/nesterov.py), not a switch",
    "ns_steps": "Muon's Newton-Schulz step count is a constant of the rule (NS_STEPS), not a hyperparameter",
    "ns_coefficients": "Muon's Newton-Schulz coefficients are constants of the vocabulary's newton_schulz",
    "adjust_lr_fn": "the Muon reference scales by sqrt(max(1, rows/cols)) only (KellerJordan's rule)",
    "fused": "no fused kernel: the rule is Python over torch ops (foreach=True is the fast path)",
    "capturable": "CUDA-graph capture is not offered; torch.compile works on the ordinary step",
    "differentiable": "the step runs under no_grad: differentiating through an update is not offered",
}
"""torch constructor options (in optim_db inputs) an export does not take, and why."""

EXCLUDED_ERRORS = {
    "lr as Tensor doesn't work with foreach & not capturable":
        "a limit of torch's foreach kernels; the export's fast path takes a Tensor lr, so there is no error",
    r"betas\[0\] as a Tensor is not supported for capturable=False and foreach=True":
        "a limit of torch's foreach kernels; the export reads Tensor betas once at construction",
    "only support 2D parameters":
        "the Muon reference steps every parameter (the auxiliary AdamW step for non-matrices), "
        "like KellerJordan's SingleDeviceMuonWithAuxAdam",
}
"""torch error inputs (by description) that are not errors for the export, and why."""

EXCLUDED_CHECKS = {
    ("muon", "complex"): "refused with a clear error: the rule reads shapes (ndim, size, newton_schulz)",
    ("winner", "complex"): "refused with a clear error: the rule orthogonalises with newton_schulz",
    ("muon", "complex_2d"): "no complex parameters (above)",
    ("winner", "complex_2d"): "no complex parameters (above)",
    ("seed0_winner", "complex_2d"): "the rule divides by rms(grad) over the whole tensor, so optimizing real "
                                    "and imaginary parts as two tensors is a different rule (test_complex applies)",
}
"""(export, check) pairs that do not apply, and why; every other pair runs."""

_USED: set = set()  # exclusions that matched, for the staleness check


def _excluded(export: str, check: str) -> None:
    if (export, check) in EXCLUDED_CHECKS:
        _USED.add((export, check))
        pytest.skip(EXCLUDED_CHECKS[(export, check)])


@functools.lru_cache(maxsize=None)
def export_class(export: str) -> type[torch.optim.Optimizer]:
    return load_optimizer(EXPORTS[export][0])


def _template(export: str) -> co.OptimizerInfo:
    return next(info for info in co.optim_db if info.name == EXPORTS[export][1])


def _signature(cls) -> set[str]:
    import inspect
    return set(inspect.signature(cls.__init__).parameters) - {"self", "params"}


def _translate(export: str, kwargs: dict) -> dict | None:
    """torch's kwargs for the export's constructor, or None when one of them does not apply."""
    accepted = _signature(export_class(export))
    for key in kwargs:
        if key in EXCLUDED_KWARGS:
            _USED.add(key)
            return None
        if key not in accepted:
            raise AssertionError(f"{export}: torch input option {key!r} is neither accepted nor excluded")
    return copy.copy(kwargs)


@functools.lru_cache(maxsize=None)
def optim_info(export: str) -> co.OptimizerInfo:
    """An OptimizerInfo for the export, with the torch entry's inputs translated."""
    template = _template(export)

    def inputs(device, dtype=None):
        found = []
        for optim_input in template.optim_inputs_func(device=device, dtype=dtype):
            kwargs = _translate(export, optim_input.kwargs)
            if kwargs is not None:
                found.append(co.OptimizerInput(params=None, kwargs=kwargs, desc=optim_input.desc))
        found.append(co.OptimizerInput(params=None, kwargs={"lr": torch.tensor(0.001)}, desc="Tensor lr"))
        return found

    def error_inputs(device, dtype):
        found = []
        for error in template.optim_error_inputs_func(device=device, dtype=dtype):
            desc = error.optimizer_error_input.desc
            if desc in EXCLUDED_ERRORS:
                _USED.add(desc)
                continue
            kwargs = _translate(export, error.optimizer_error_input.kwargs)
            if kwargs is None:
                continue
            found.append(co.ErrorOptimizerInput(
                co.OptimizerInput(params=error.optimizer_error_input.params, kwargs=kwargs, desc=desc),
                error_on=error.error_on, error_type=error.error_type, error_regex=error.error_regex))
        return found + _own_error_inputs(export)

    program = load_program(_source(export))
    return co.OptimizerInfo(
        export_class(export), optim_inputs_func=inputs, optim_error_inputs_func=error_inputs,
        scheduler_inputs=template.scheduler_inputs, supported_impls=("foreach",),
        supports_complex=complex_refusal(program.ops_used) is None)


def _source(export: str) -> str:
    ref = EXPORTS[export][0]
    return Path(ref).read_text() if ref.endswith(".py") else reference_source(ref)


def _own_error_inputs(export: str) -> list:
    """Every hyperparameter of the export that has a range gets a value outside it, expecting a
    ValueError that names it (in torch's wording where torch has one)."""
    program = load_program(_source(export))
    found = []
    for name, default in program.hparams.items():
        low, high = _bounds(name, default)
        wording = {"lr": "Invalid learning rate", "eps": "Invalid epsilon value"}.get(name, f"Invalid {name} value")
        for bad in ([low - 1.0] if low is not None else []) + ([high] if high is not None else []):
            found.append(co.ErrorOptimizerInput(
                co.OptimizerInput(params=None, kwargs={name: bad}, desc=f"{name}={bad} out of range"),
                error_type=ValueError, error_regex=f"{wording}: {bad}"))
    found += [
        co.ErrorOptimizerInput(co.OptimizerInput(params=None, kwargs={"lr": float("nan")}, desc="nan lr"),
                               error_type=ValueError, error_regex="Invalid learning rate: nan"),
        co.ErrorOptimizerInput(co.OptimizerInput(params=None, kwargs={"lr": "0.1"}, desc="text lr"),
                               error_type=TypeError, error_regex="lr must be a number or a 1-element Tensor"),
        co.ErrorOptimizerInput(co.OptimizerInput(params=None, kwargs={"maximize": 1}, desc="maximize not a bool"),
                               error_type=ValueError, error_regex="maximize must be True or False")]
    if "beta1" in program.hparams and "beta2" in program.hparams:
        found.append(co.ErrorOptimizerInput(
            co.OptimizerInput(params=None, kwargs={"betas": (0.9, 1.0)}, desc="beta2 = 1"),
            error_type=ValueError, error_regex=r"Invalid beta parameter at index 1: 1.0"))
    return found


def all_inputs(export: str, skip=("differentiable",)) -> list:
    return co._get_optim_inputs_including_global_cliquey_kwargs("cpu", torch.float32, optim_info(export),
                                                                skip=skip)


def _quadratic(weight, bias, x):
    return (weight.mv(x) + bias).pow(2).sum()


NAMES = list(EXPORTS)


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("export", NAMES)
def test_errors(export: str) -> None:
    info = optim_info(export)
    errors = info.optim_error_inputs_func(device="cpu", dtype=torch.float32)
    assert len(errors) >= 8
    for error in errors:
        params, kwargs = error.optimizer_error_input.params, error.optimizer_error_input.kwargs
        if error.error_on == co.OptimizerErrorEnum.CONSTRUCTION_ERROR:
            if issubclass(error.error_type, Warning):
                with pytest.warns(error.error_type, match=error.error_regex):
                    info.optim_cls(params, **kwargs)
            else:
                with pytest.raises(error.error_type, match=error.error_regex):
                    info.optim_cls(params, **kwargs)
        else:
            opt = info.optim_cls(params, **kwargs)
            with pytest.raises(error.error_type, match=error.error_regex):
                opt.step()


# --- direction, schedulers, groups, tensor lr -------------------------------------------------


@pytest.mark.parametrize("export", NAMES)
@pytest.mark.parametrize("contiguous", [True, False], ids=["contiguous", "strided"])
@pytest.mark.parametrize("with_lrsched", [False, True], ids=["", "lrsched"])
def test_goes_right_direction(export: str, contiguous: bool, with_lrsched: bool) -> None:
    info = optim_info(export)
    for schedulers in info.scheduler_inputs if with_lrsched else [[]]:
        for optim_input in info.optim_inputs_func(device="cpu"):
            torch.manual_seed(0)
            if contiguous:
                weight, bias = Parameter(torch.randn(10, 5)), Parameter(torch.randn(10))
            else:
                weight, bias = Parameter(torch.randn(10, 5, 2)[..., 0]), Parameter(torch.randn(10, 2)[..., 0])
            x = torch.randn(5)
            opt = info.optim_cls([weight, bias], **optim_input.kwargs, foreach=False)
            scheds = [make(opt) for make in schedulers]
            before = _quadratic(weight, bias, x).item()
            for _ in range(20):
                opt.zero_grad()
                loss = _quadratic(weight, bias, x)
                loss.backward()
                opt.step()
                for s in scheds:
                    s.step(loss.item()) if isinstance(s, ReduceLROnPlateau) else s.step()
            after = _quadratic(weight, bias, x).item()
            assert (after > before) if optim_input.kwargs.get("maximize") else (after < before), optim_input.desc


@pytest.mark.parametrize("export", NAMES)
def test_param_group_with_lrscheduler_goes_right_direction(export: str) -> None:
    info = optim_info(export)
    for schedulers in info.scheduler_inputs:
        torch.manual_seed(0)
        weight, bias, x = Parameter(torch.randn(10, 5)), Parameter(torch.randn(10)), torch.randn(5)
        opt = info.optim_cls([{"params": [weight]}, {"params": [bias], "lr": 0.01}])
        scheds = [make(opt) for make in schedulers]
        before = _quadratic(weight, bias, x).item()
        for _ in range(20):
            def closure():
                opt.zero_grad()
                loss = _quadratic(weight, bias, x)
                loss.backward()
                return loss
            loss = opt.step(closure)
            for s in scheds:
                s.step(loss.item()) if isinstance(s, ReduceLROnPlateau) else s.step()
        assert _quadratic(weight, bias, x).item() < before


@pytest.mark.parametrize("export", NAMES)
def test_tensor_lr_matches_float_lr(export: str) -> None:
    info = optim_info(export)
    for optim_input in all_inputs(export):
        torch.manual_seed(0)
        weight, bias, x = Parameter(torch.randn(10, 5)), Parameter(torch.randn(10)), torch.randn(5)
        twins = weight.detach().clone().requires_grad_(), bias.detach().clone().requires_grad_()
        kwargs = {k: v for k, v in optim_input.kwargs.items() if k != "lr"}
        opts = [info.optim_cls([weight, bias], lr=1e-3, **kwargs),
                info.optim_cls(list(twins), lr=torch.tensor(1e-3), **kwargs)]
        for _ in range(5):
            for opt, (w, b) in zip(opts, ((weight, bias), twins)):
                opt.zero_grad()
                _quadratic(w, b, x).backward()
                opt.step()
        torch.testing.assert_close(weight, twins[0])
        torch.testing.assert_close(bias, twins[1])


@pytest.mark.parametrize("export", NAMES)
def test_param_groups_weight_decay_and_lr(export: str) -> None:
    info = optim_info(export)
    for optim_input in all_inputs(export):
        torch.manual_seed(0)
        weight, bias, x = Parameter(torch.randn(10, 5)), Parameter(torch.randn(10)), torch.randn(5)
        irrelevant = Parameter(torch.randn(2))
        irrelevant_before = irrelevant.detach().clone()
        kwargs = dict(optim_input.kwargs)
        kwargs.setdefault("lr", 1e-3)
        no_decay = {**kwargs, "weight_decay": 0.0}
        opt = info.optim_cls([dict(params=[weight], **kwargs), dict(params=[bias], **no_decay),
                              dict(params=[irrelevant])], lr=1e-28)
        before = _quadratic(weight, bias, x).item()
        for _ in range(20):
            opt.zero_grad()
            loss = _quadratic(weight, bias, x)
            loss.backward()
            irrelevant.grad = torch.rand_like(irrelevant)
            opt.step()
        assert (loss.item() > before) if kwargs.get("maximize") else (loss.item() < before), optim_input.desc
        torch.testing.assert_close(irrelevant.detach(), irrelevant_before)  # lr 1e-28: no visible move


# --- complex parameters ----------------------------------------------------------------------


@pytest.mark.parametrize("export", NAMES)
def test_complex(export: str) -> None:
    _excluded(export, "complex")
    info = optim_info(export)
    assert info.supports_complex
    for optim_input in all_inputs(export):
        torch.manual_seed(0)
        complex_params = [torch.randn(10, 5, dtype=torch.complex64, requires_grad=True),
                          torch.randn(10, dtype=torch.complex64, requires_grad=True),
                          torch.randn(10, 5, requires_grad=True)]  # a real one mixed in
        real_params = [(torch.view_as_real(p) if p.is_complex() else p).detach().clone().requires_grad_()
                       for p in complex_params]
        opts = info.optim_cls(complex_params, **optim_input.kwargs), info.optim_cls(real_params, **optim_input.kwargs)
        for _ in range(3):
            for c, r in zip(complex_params, real_params):
                r.grad = torch.randn_like(r)
                c.grad = torch.view_as_complex(r.grad.clone()) if c.is_complex() else r.grad.clone()
            for opt in opts:
                opt.step()
            for c, r in zip(complex_params, real_params):
                assert torch.equal(torch.view_as_real(c.detach()) if c.is_complex() else c.detach(), r.detach())


@pytest.mark.parametrize("export", ["muon", "winner"])
def test_complex_parameters_are_refused_clearly_where_the_rule_reads_shapes(export: str) -> None:
    p = torch.randn(4, 3, dtype=torch.complex64, requires_grad=True)
    p.grad = torch.randn_like(p)
    with pytest.raises(RuntimeError, match="does not support complex parameters: its rule uses"):
        export_class(export)([p]).step()


def _rosenbrock(t):
    x, y = t
    return (1 - x) ** 2 + 100 * (y - x ** 2) ** 2


@pytest.mark.parametrize("export", NAMES)
def test_complex_2d(export: str) -> None:
    _excluded(export, "complex_2d")
    assert splits_exactly(load_program(_source(export)).ops_used)
    info = optim_info(export)
    for optim_input in all_inputs(export):
        torch.manual_seed(0)
        a = torch.randn(2, dtype=torch.complex64, requires_grad=True)
        re, im = a.real.detach().clone().requires_grad_(), a.imag.detach().clone().requires_grad_()
        opt1, opt2 = info.optim_cls([a], **optim_input.kwargs), info.optim_cls([re, im], **optim_input.kwargs)
        for _ in range(3):
            opt1.zero_grad()
            opt2.zero_grad()
            _rosenbrock(a).abs().backward()
            _rosenbrock(torch.complex(re, im)).abs().backward()
            torch.testing.assert_close(a.grad.real, re.grad)
            torch.testing.assert_close(a.grad.imag, im.grad)
            opt1.step()
            opt2.step()
            torch.testing.assert_close(a.real.detach(), re.detach())
            torch.testing.assert_close(a.imag.detach(), im.detach())


# --- the fast path against the per-parameter loop ("foreach matches forloop") ------------------


@pytest.mark.parametrize("export", NAMES)
def test_foreach_matches_forloop_bit_for_bit(export: str) -> None:
    info = optim_info(export)
    for optim_input in info.optim_inputs_func(device="cpu"):
        runs = []
        for foreach in (False, True):
            torch.manual_seed(1)
            model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Sigmoid(), torch.nn.Linear(3, 1),
                                        torch.nn.Sigmoid()).double()
            empty = torch.empty((), dtype=torch.float64, requires_grad=True)  # a 0-d parameter last
            empty.grad = torch.rand_like(empty)
            opt = info.optim_cls([*model.parameters(), empty], **optim_input.kwargs, foreach=foreach)
            opt.cpu_chunk_numel = 4  # slices and packs even on this small model
            x = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], dtype=torch.float64).reshape(3, 2)
            trace = []
            for i in range(7):
                opt.zero_grad()
                model[2].requires_grad_(not 3 <= i < 5)  # a frozen layer for two steps
                if i != 2:  # one step with every grad None: a no-op
                    model(x).sum().backward()
                opt.step()
                trace.append([p.detach().clone() for p in model.parameters()]
                             + [v.clone() for p in model.parameters() for v in opt.state[p].values()])
            runs.append(trace)
        for a, b in zip(*runs):
            for x, y in zip(a, b):
                assert torch.equal(x, y), optim_input.desc


# --- no-op steps and gradients left alone ----------------------------------------------------


@pytest.mark.parametrize("export", NAMES)
def test_step_is_noop_when_params_have_no_grad_and_for_zero_grads(export: str) -> None:
    info = optim_info(export)
    defaults = load_program(_source(export)).hparams
    for optim_input in all_inputs(export):
        params = [torch.randn(2, 3) for _ in range(2)]
        info.optim_cls(params, **optim_input.kwargs).step(lambda: torch.tensor([1.0]))
        kwargs = dict(optim_input.kwargs)
        if kwargs.get("weight_decay", 0) != 0:
            continue  # decay moves params without a gradient, by design
        if defaults.get("weight_decay", 0) != 0:
            # a default decoupled decay moves them too; upstream shrinks AdamW's lr for this
            kwargs["lr"] = torch.tensor(1e-5) if isinstance(kwargs.get("lr"), torch.Tensor) else 1e-5
        param = torch.randn(5, 1, requires_grad=True)
        before = param.detach().clone()
        param.grad = torch.zeros_like(param)
        info.optim_cls([param], **kwargs).step(lambda: torch.tensor([1.0]))
        torch.testing.assert_close(param.detach(), before)


@pytest.mark.parametrize("export", NAMES)
def test_step_never_modifies_grads(export: str) -> None:
    info = optim_info(export)
    for optim_input in all_inputs(export):
        torch.manual_seed(0)
        params = [Parameter(torch.randn(6, 4)), Parameter(torch.randn(4))]
        opt = info.optim_cls(params, **optim_input.kwargs)
        for _ in range(3):
            for p in params:
                p.grad = torch.randn_like(p)
            grads = [p.grad.clone() for p in params]
            opt.step()
            for p, g in zip(params, grads):
                assert torch.equal(p.grad, g), optim_input.desc


@pytest.mark.parametrize("export", NAMES)
def test_printing_and_non_empty_state(export: str) -> None:
    info = optim_info(export)
    for optim_input in info.optim_inputs_func(device="cpu"):
        model = torch.nn.Linear(5, 5)
        opt = info.optim_cls(model.parameters(), **optim_input.kwargs)
        text = repr(opt)
        assert type(opt).__name__ in text and "lr" in text
        model(torch.rand(2, 5)).sum().backward()
        opt.step()
        assert all(len(state) > 0 for state in opt.state.values()) and len(opt.state) == 2


# --- state_dict ------------------------------------------------------------------------------


def _named(params, named):
    return [(f"name{i}", p) for i, p in enumerate(params)] if named else params


def _without_names(state_dict):
    state_dict = copy.deepcopy(state_dict)
    for group in state_dict["param_groups"]:
        group.pop("param_names", None)
    return state_dict


@pytest.mark.parametrize("export", NAMES)
@pytest.mark.parametrize("named0, named1", [(False, False), (True, False), (False, True), (True, True)])
def test_state_dict_deterministic(export: str, named0: bool, named1: bool) -> None:
    info = optim_info(export)
    for optim_input in all_inputs(export):
        torch.manual_seed(0)
        weight, bias, x = Parameter(torch.randn(2, 3)), Parameter(torch.randn(2)), torch.randn(3)
        opt = info.optim_cls(_named([weight, bias], named0), **optim_input.kwargs)
        for _ in range(10):
            opt.zero_grad()
            _quadratic(weight, bias, x).backward()
            opt.step()
        with torch.no_grad():
            weight_c, bias_c = Parameter(weight.clone()), Parameter(bias.clone())
        opt_c = info.optim_cls(_named([weight_c, bias_c], named1), **optim_input.kwargs)
        opt_c.load_state_dict(copy.deepcopy(opt.state_dict()))
        for _ in range(10):
            for o, w, b in ((opt, weight, bias), (opt_c, weight_c, bias_c)):
                o.zero_grad()
                _quadratic(w, b, x).backward()
                o.step()
            assert torch.equal(weight, weight_c) and torch.equal(bias, bias_c), optim_input.desc
        torch.testing.assert_close(_without_names(opt.state_dict()), _without_names(opt_c.state_dict()))
        opt_c.param_groups.extend(opt_c.param_groups)
        torch.testing.assert_close(_without_names(opt.state_dict())["param_groups"][-1],
                                   _without_names(opt_c.state_dict())["param_groups"][-1])


def _conv_model():
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Conv2d(4, 2, 1, stride=2), torch.nn.BatchNorm2d(2))


def _fwd_bwd(opt, model):
    opt.zero_grad()
    model(torch.rand(1, 4, 16, 16)).sum().backward()


@pytest.mark.parametrize("export", NAMES)
def test_can_load_older_and_named_state_dicts(export: str) -> None:
    info = optim_info(export)
    for optim_input in all_inputs(export):
        for named0, named1 in ((False, False), (True, False), (False, True)):
            model = _conv_model()
            opt = info.optim_cls(model.named_parameters() if named0 else model.parameters(), **optim_input.kwargs)
            for _ in range(3):
                _fwd_bwd(opt, model)
                opt.step()
            old = copy.deepcopy(opt.state_dict())
            for group in old["param_groups"]:  # a state_dict from before these options existed
                for flag in ("foreach", "maximize"):
                    group.pop(flag, None)
            opt2 = info.optim_cls(model.named_parameters() if named1 else model.parameters(), **optim_input.kwargs)
            opt2.load_state_dict(old)
            _fwd_bwd(opt2, model)
            opt2.step()
            assert opt2.param_groups[0]["maximize"] is False and opt2.param_groups[0]["foreach"] is None
            if named0 or named1:
                assert opt2.state_dict()["param_groups"][0]["param_names"] == \
                    ["0.weight", "0.bias", "1.weight", "1.bias"]


@pytest.mark.parametrize("export", NAMES)
def test_save_load_with_weights_only_and_nontensor_step(export: str) -> None:
    info = optim_info(export)
    for optim_input in all_inputs(export):
        torch.manual_seed(0)
        weight, bias, x = Parameter(torch.randn(2, 3)), Parameter(torch.randn(2)), torch.randn(3)
        opt = info.optim_cls([weight, bias], **optim_input.kwargs)
        for _ in range(3):
            opt.zero_grad()
            _quadratic(weight, bias, x).backward()
            opt.step()
        state_dict = opt.state_dict()
        buffer = io.BytesIO()
        torch.save(state_dict, buffer)
        for weights_only in (False, True):
            buffer.seek(0)
            torch.testing.assert_close(torch.load(buffer, weights_only=weights_only), state_dict)
        old = copy.deepcopy(state_dict)
        for state in old["state"].values():
            state["step"] = state["step"].item()  # as optimizers saved before tensor steps
        opt.load_state_dict(old)
        opt.step()
        assert torch.is_tensor(opt.state[weight]["step"]) and opt.state[weight]["step"].item() == 4


# --- hooks and copies ------------------------------------------------------------------------


@pytest.mark.parametrize("export", NAMES)
def test_hooks(export: str) -> None:
    cls = export_class(export)
    for optim_input in all_inputs(export):
        param = torch.rand(2, 3, requires_grad=True)
        opt = cls([param], **optim_input.kwargs)
        # state_dict pre/post hooks
        opt.register_state_dict_pre_hook(lambda o: o.state.__setitem__("test", 1))

        def post(o, sd):
            sd["ran_pre"] = sd["state"].pop("test", None) == 1
            return sd
        opt.register_state_dict_post_hook(post)
        state_dict = opt.state_dict()
        assert state_dict["ran_pre"] and "test" not in state_dict["state"]
        # load_state_dict pre hooks (one prepended) and post hook
        opt = cls([param], **optim_input.kwargs)
        loaded = opt.state_dict()

        def pre_return(o, sd):
            sd = copy.deepcopy(sd)
            sd["param_groups"][0]["lr"] = 0.003
            return sd
        opt.register_load_state_dict_pre_hook(lambda o, sd: sd["param_groups"][0].__setitem__("lr", 0.002))
        opt.register_load_state_dict_pre_hook(pre_return, prepend=True)
        opt.register_load_state_dict_post_hook(lambda o: o.state.__setitem__("post", o.param_groups[0]["lr"]))
        opt.load_state_dict(loaded)
        assert opt.param_groups[0]["lr"] == 0.002 and opt.state["post"] == 0.002
        # step pre/post hooks, local and global, in order; removed handles stop firing
        opt = cls([torch.tensor([1.0, 1.0])], **optim_input.kwargs)
        calls = []
        handles = [register_optimizer_step_pre_hook(lambda *a: calls.append(0)),
                   register_optimizer_step_post_hook(lambda *a: calls.append(5)),
                   opt.register_step_pre_hook(lambda *a: calls.append(1)),
                   opt.register_step_post_hook(lambda *a: calls.append(2))]
        opt.step()
        opt.step()
        assert calls == [0, 1, 2, 5] * 2
        for handle in handles:
            handle.remove()
        opt.step()
        assert calls == [0, 1, 2, 5] * 2


@pytest.mark.parametrize("export", NAMES)
def test_deepcopy_copies_all_public_attrs_and_is_independent(export: str) -> None:
    info = optim_info(export)
    for optim_input in all_inputs(export):
        torch.manual_seed(0)
        params = [Parameter(torch.randn(2, 3)) for _ in range(2)]
        for p in params:
            p.grad = torch.rand_like(p)
        opt = info.optim_cls(params, **optim_input.kwargs)
        for _ in range(3):
            opt.step()
        twin = copy.deepcopy(opt)
        assert {k for k in vars(opt) if not k.startswith("_")} == {k for k in vars(twin) if not k.startswith("_")}
        twin_params = twin.param_groups[0]["params"]
        for p, q in zip(params, twin_params):
            p.grad = torch.rand_like(p)
            q.grad = p.grad.clone()  # a Parameter's deepcopy leaves its grad behind
        for o in (opt, twin):
            o.step()
        for p, q in zip(params, twin_params):
            assert p is not q and torch.equal(p, q)
            assert all(opt.state[p][k] is not twin.state[q][k] for k in opt.state[p])


# --- the exclusion table stays honest --------------------------------------------------------


def test_every_exclusion_is_used() -> None:
    # Build every export's inputs (which records the options and error inputs excluded) and
    # check each table entry names something that exists.
    for export in NAMES:
        optim_info(export).optim_error_inputs_func(device="cpu", dtype=torch.float32)
        optim_info(export).optim_inputs_func(device="cpu")
    assert set(EXCLUDED_KWARGS) - {"fused", "capturable", "differentiable"} <= _USED, \
        set(EXCLUDED_KWARGS) - _USED
    assert set(EXCLUDED_ERRORS) <= _USED, set(EXCLUDED_ERRORS) - _USED
    for export, check in EXCLUDED_CHECKS:
        program = load_program(_source(export))
        if check == "complex":
            assert complex_refusal(program.ops_used) is not None
        else:
            assert not splits_exactly(program.ops_used)
