"""The ``torch.optim.Optimizer`` subclass an exported module defines around its update rule.

The class is written out as text (the module imports only torch) from :data:`TEMPLATE`, whose
``__NAME__`` markers :func:`render_wrapper` fills in. What it provides, and why:

* hyperparameter validation in ``__init__`` with torch.optim's own ValueErrors (``Invalid
  learning rate``, ``Tensor lr must be 1-element``, ``Invalid beta parameter at index 0``, ...);
  ``betas=(b1, b2)`` where the rule has ``beta1`` and ``beta2``; ``maximize``; ``foreach``;
* a tensor step counter per parameter (float64 on the CPU, like torch's non-capturable ``step``),
  so ``torch.compile`` traces one graph for every step instead of guarding on a Python int;
* complex parameters as their ``torch.view_as_real`` views (torch.optim's convention), unless
  the rule depends on shapes;
* for a position-independent rule (see :mod:`archive.export_analysis`), a fast path: every
  large parameter in cache-sized chunks and small ones packed together, with the same bits as
  the per-parameter loop (on the CPU the rule's temporaries then stay in cache, which is what
  makes it as fast as torch's foreach AdamW). Under ``torch.compile`` the step takes the
  per-parameter loop, which Inductor fuses; neither path compares storage pointers.
"""

from __future__ import annotations

TEMPLATE = '''
_HPARAM_MESSAGES = {"lr": "Invalid learning rate: {}", "eps": "Invalid epsilon value: {}",
                    "weight_decay": "Invalid weight_decay value: {}", "momentum": "Invalid momentum value: {}"}


def _check_hparam(name, value, low, high):
    # The ValueErrors torch.optim raises for its own hyperparameters, with the same wording.
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"Tensor {name} must be 1-element")
        number = float(value)  # construction only: the step never reads a tensor to the host
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    else:
        raise TypeError(f"{name} must be a number or a 1-element Tensor, got {type(value).__name__}")
    if number != number or abs(number) == float("inf") or (low is not None and number < low) or \\
            (high is not None and number >= high):
        raise ValueError(_HPARAM_MESSAGES.get(name, "Invalid " + name + " value: {}").format(value))


class _HParams:
    """One parameter group's hyperparameters as attributes (``hp.lr``, ``hp.beta1``, ...)."""

    def __init__(self, group):
        for name in HPARAMS:
            value = group[name]
            # Numbers stay Python floats, so the rule's scalar maths is exactly the sandbox's. A
            # Tensor lr is passed through (a scheduler then changes it in place and a compiled
            # step never recompiles); other Tensor hyperparameters are read once per step.
            if isinstance(value, torch.Tensor) and name != "lr":
                value = float(value)
            setattr(self, name, value if isinstance(value, torch.Tensor) else float(value))


def _root(tensor):
    return tensor if tensor._base is None else tensor._base


def _own(tensor, param, grad):
    # The rule is pure, but it may hand back `param` or `grad` (or a view of them, e.g. a state
    # that remembers the last gradient). Those change in place later (param.add_, backward into
    # an existing grad), so keep a private copy, as the sandbox's functional loop implies.
    root = _root(tensor)
    if root is _root(param) or root is _root(grad):
        return tensor.clone()
    return tensor


def _fresh(tensor, inputs):
    # A copy of `tensor` when it is (a view of) one of `inputs`, which are about to be written.
    root = _root(tensor)
    return tensor.clone() if any(root is other for other in inputs) else tensor


class __CLASS__(torch.optim.Optimizer):
    """__CLASS_DOC__"""

    # The fast path's unit of work, in entries: a large parameter is stepped in slices of this
    # size and small ones are packed together up to it, so that on the CPU the rule's
    # temporaries stay in cache (2**17 float32 entries: 512 KiB each); elsewhere it only bounds
    # the temporaries' memory.
    cpu_chunk_numel = 2 ** 17
    chunk_numel = 2 ** 25
    _complex_refusal = __COMPLEX_REFUSAL__
    _has_fast_path = __FAST__
    _batches_matrices = __BATCHED__

    def __init__(
        self,
        params,
__SIGNATURE__
    ):
__VALIDATION__
        if not isinstance(maximize, bool):
            raise ValueError(f"maximize must be True or False, got {maximize!r}")
        if foreach not in (None, True, False):
            raise ValueError(f"foreach must be None, True or False, got {foreach!r}")
        defaults = {
__DEFAULTS__
            "maximize": maximize,
            "foreach": foreach,
        }
        super().__init__(params, defaults)

    def add_param_group(self, param_group):
__GROUP_BETAS__
        super().add_param_group(param_group)
        for param in self.param_groups[-1]["params"]:
            if not (param.is_floating_point() or param.is_complex()):
                raise ValueError(f"__CLASS__ optimizes floating-point parameters, got {param.dtype}")

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:
            # groups saved before these options existed
            group.setdefault("maximize", False)
            group.setdefault("foreach", None)
        for value in self.state.values():
            if isinstance(value, dict) and "step" in value and not torch.is_tensor(value["step"]):
                value["step"] = torch.tensor(float(value["step"]), dtype=torch.float64)

    @torch.no_grad()
    def step(self, closure=None):
        """Perform one optimization step: ``param += delta`` for every parameter with a grad.

        Args:
            closure (Callable, optional): re-evaluates the model and returns the loss.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        compiling = torch.compiler.is_compiling()
        for group in self.param_groups:
            hp = _HParams(group)
            work = []  # (the parameter as the rule sees it, its gradient, its state)
            for param in group["params"]:
                if param.grad is None:
                    continue
                if param.grad.is_sparse:
                    raise RuntimeError("__CLASS__ does not support sparse gradients")
                state = self.state[param]
                grad = param.grad
                if torch.is_complex(param):
                    if self._complex_refusal is not None:
                        raise RuntimeError("__CLASS__ does not support complex parameters: " + self._complex_refusal)
                    param, grad = torch.view_as_real(param), torch.view_as_real(grad)
                if group.get("maximize", False):
                    grad = -grad
                if len(state) == 0:
                    state.update(self._initial_state(param))
                work.append((param, grad, state))
            if not work:
                continue
            torch._foreach_add_([state["step"] for _, _, state in work], 1)
            if compiling:
                # one traced graph for every step: the rule sees the step as a tensor
                for param, grad, state in work:
                    self._step_param(param, grad, state, hp, state["step"])
            elif self._has_fast_path and group.get("foreach", None) is not False:
                self._step_fast(work, hp)
            elif self._batches_matrices and group.get("foreach", None) is not False:
                self._step_batched(work, hp, force=group.get("foreach", None) is True)
            else:
                for param, grad, state in work:
                    self._step_param(param, grad, state, hp, int(state["step"]))
        return loss

    def _step_param(self, param, grad, state, hp, step):
        # The reference loop: one call of the rule per parameter, as the sandbox runs it.
        rule_state = {key: value for key, value in state.items() if key != "step"}
        delta, new_state = update(grad, param, rule_state, step, hp)
        if new_state.keys() != rule_state.keys():
            raise RuntimeError(f"update returned state keys {sorted(new_state)}, but init made {sorted(rule_state)}")
        if delta.shape != param.shape:
            raise RuntimeError(f"update's delta has shape {tuple(delta.shape)}, param has {tuple(param.shape)}")
        for key, value in new_state.items():
            state[key] = _own(value, param, grad)
        param.add_(_own(delta, param, grad))

    @staticmethod
    def _initial_state(param):
        state = init(param)
        if "step" in state:
            raise RuntimeError("the update rule's state has a key 'step', which the optimizer "
                               "keeps for its own step count; rename it in the program")
        step = torch.zeros((), dtype=torch.float64)
        return {"step": step, **{key: _own(value, param, param) for key, value in state.items()}}

    def _step_fast(self, work, hp):
        # The rule is elementwise and built from ops that round the same wherever an element
        # sits, so any slice or concatenation of parameters gives the per-parameter loop's bits.
        buckets = {}
        # every step count in one read (one .item() per parameter costs more than the rule on
        # a small tensor); they live on the CPU, so this never waits for a device
        steps = torch.stack([state["step"] for _, _, state in work]).tolist()
        for (param, grad, state), step in zip(work, steps):
            step = int(step)
            keys = tuple(key for key in state if key != "step")
            # the fast path writes state in place, so two keys must not share memory
            fits = param.is_contiguous() and grad.is_contiguous() and grad.dtype == param.dtype and all(
                state[key].shape == param.shape and state[key].dtype == param.dtype and state[key].is_contiguous()
                for key in keys) and len({id(_root(state[key])) for key in keys}) == len(keys)
            if fits:
                buckets.setdefault((param.device, param.dtype, step, keys), []).append((param, grad, state))
            else:
                self._step_param(param, grad, state, hp, step)
        for (device, _, step, keys), items in buckets.items():
            cap = self.cpu_chunk_numel if device.type == "cpu" else self.chunk_numel
            pack, numel = [], 0
            for item in items:
                if item[0].numel() >= cap:
                    self._step_slices(item, keys, step, hp, cap)
                    continue
                if pack and numel + item[0].numel() > cap:
                    self._step_pack(pack, keys, step, hp)
                    pack, numel = [], 0
                pack.append(item)
                numel += item[0].numel()
            if pack:
                self._step_pack(pack, keys, step, hp)

    def _step_slices(self, item, keys, step, hp, cap):
        # One parameter, in slices of `cap` entries (views: nothing is copied in).
        param, grad, state = item
        flat_param, flat_grad = param.view(-1), grad.view(-1)
        flat_state = [state[key].view(-1) for key in keys]
        inputs = [_root(param), _root(grad)] + [_root(state[key]) for key in keys]
        numel = flat_param.numel()
        for start in range(0, numel, cap):
            stop = min(numel, start + cap)
            old = {key: value[start:stop] for key, value in zip(keys, flat_state)}
            delta, new = self._checked(update(flat_grad[start:stop], flat_param[start:stop], dict(old), step, hp),
                                       stop - start, keys)
            delta = _fresh(delta, inputs)
            # a state the rule hands back unchanged needs no copy; any other view of an input
            # is copied before the inputs are overwritten
            new = {key: value if value is old[key] else _fresh(value, inputs) for key, value in new.items()}
            for key in keys:
                if new[key] is not old[key]:
                    old[key].copy_(new[key])
            flat_param[start:stop].add_(delta)

    def _step_pack(self, items, keys, step, hp):
        # Small parameters concatenated into one call of the rule, then scattered back into
        # each parameter's own state tensors. (Keeping the states as views of the rule's output
        # instead, to skip the state's concatenation, measured no faster on a CPU.)
        if len(items) == 1:
            self._step_slices(items[0], keys, step, hp, max(1, items[0][0].numel()))
            return
        # The 1-D views of the pack's parameters and states are kept from step to step while
        # the very same tensor objects are there (an identity check): making them anew costs
        # about as much as the rule's arithmetic on small tensors.
        cache = self.__dict__.setdefault("_pack_views", {})
        tensors = [tensor for param, _, state in items for tensor in (param, *(state[key] for key in keys))]
        cache_key = (tuple(id(tensor) for tensor in tensors), keys)
        kept = cache.get(cache_key)
        if kept is None or not all(a is b for a, b in zip(kept[0], tensors)):
            kept = (tensors, [param.view(-1) for param, _, _ in items],
                    {key: [state[key].view(-1) for _, _, state in items] for key in keys},
                    [param.numel() for param, _, _ in items])
            if len(cache) > 4096:  # packs change when grads come and go: keep the cache bounded
                cache.clear()
            cache[cache_key] = kept
        _, param_views, state_views, sizes = kept
        flat_param = torch.cat(param_views)
        flat_grad = torch.cat([grad.view(-1) for _, grad, _ in items])
        flat_state = {key: torch.cat(state_views[key]) for key in keys}
        delta, new = self._checked(update(flat_grad, flat_param, dict(flat_state), step, hp), sum(sizes), keys)
        for key in keys:
            torch._foreach_copy_(state_views[key], list(new[key].split(sizes)))
        torch._foreach_add_(param_views, list(delta.split(sizes)))

    def _step_batched(self, work, hp, force=False):
        # A rule with matrix products (Newton-Schulz, matmul) steps same-shaped parameters in
        # one batched call: torch.func.vmap over their stack turns each matrix product into one
        # batched product, one kernel launch for all of them on a GPU. On the CPU the loop
        # measured faster (no launches to save; the stack is a copy), so there only foreach=True
        # batches. Batched and single products may round differently (the per-parameter loop,
        # foreach=False, keeps the sandbox's bits); a rule vmap cannot run stays looped.
        groups = {}
        for param, grad, state in work:
            step = int(state["step"])
            keys = tuple(key for key in state if key != "step")
            fits = (force or param.device.type != "cpu") and getattr(self, "_vmap_works", True) and \
                grad.dtype == param.dtype and all(
                state[key].shape == param.shape and state[key].dtype == param.dtype for key in keys) and \
                len({id(_root(state[key])) for key in keys}) == len(keys)
            group_key = (param.device, param.dtype, tuple(param.shape), step, keys) if fits else id(param)
            groups.setdefault(group_key, []).append((param, grad, state, step))
        for items in groups.values():
            if len(items) > 1 and getattr(self, "_vmap_works", True):
                keys = tuple(key for key in items[0][2] if key != "step")
                step = items[0][3]
                stacked = {key: torch.stack([state[key] for _, _, state, _ in items]) for key in keys}
                try:
                    delta, new = torch.func.vmap(lambda g, p, s: update(g, p, s, step, hp))(
                        torch.stack([grad for _, grad, _, _ in items]), torch.stack([p for p, _, _, _ in items]), stacked)
                except Exception:  # e.g. control flow on tensor values: loop instead, from now on
                    self._vmap_works = False
                else:
                    self._checked_batch(delta, new, items, keys)
                    for key in keys:
                        torch._foreach_copy_([state[key] for _, _, state, _ in items], list(new[key].unbind(0)))
                    torch._foreach_add_([param for param, _, _, _ in items], list(delta.unbind(0)))
                    continue
            for param, grad, state, step in items:
                self._step_param(param, grad, state, hp, step)

    @staticmethod
    def _checked_batch(delta, new, items, keys):
        shape = (len(items), *items[0][0].shape)
        if set(new) != set(keys):
            raise RuntimeError(f"update returned state keys {sorted(new)}, but init made {sorted(keys)}")
        for value in (delta, *new.values()):
            if tuple(value.shape) != shape:
                raise RuntimeError(f"update returned a tensor of shape {tuple(value.shape)[1:]} for a "
                                   f"parameter of shape {shape[1:]}")

    @staticmethod
    def _checked(result, numel, keys):
        delta, new = result
        if set(new) != set(keys):
            raise RuntimeError(f"update returned state keys {sorted(new)}, but init made {sorted(keys)}")
        for value in (delta, *new.values()):
            if value.shape != (numel,):
                raise RuntimeError(f"update returned a tensor of shape {tuple(value.shape)} for a parameter "
                                   f"of {numel} entries; an elementwise rule keeps the parameter's shape")
        return delta, new
'''


def _bounds(name: str, default: float) -> tuple[float | None, float | None]:
    """The range a hyperparameter must lie in, from its name, as torch.optim checks its own:
    learning rates, eps, decays and momenta are non-negative, betas in [0, 1). A range is only
    imposed when the program's own default lies in it (a discovered rule may use a "beta3" of 2)."""
    lowered = name.lower()
    if lowered == "lr" or lowered.endswith("_lr") or "lr_scale" in lowered:
        return 0.0, None
    if "beta" in lowered and 0.0 <= default < 1.0:
        return 0.0, 1.0
    if any(word in lowered for word in ("eps", "decay", "momentum", "dampening")) and default >= 0.0:
        return 0.0, None
    return None, None


def render_wrapper(class_name: str, class_doc: str, hparams: dict[str, float], fast: bool,
                   complex_refusal: str | None, batched: bool = False) -> str:
    """The wrapper's source text for a rule with these HPARAMS."""
    betas = "beta1" in hparams and "beta2" in hparams
    signature = [f"        {key}={value!r}," for key, value in hparams.items()]
    if betas:
        signature.append("        betas=None,")
    signature += ["        *,", "        maximize=False,", "        foreach=None,"]
    validation = []
    if betas:
        beta_bounds = [_bounds("beta1", hparams["beta1"]), _bounds("beta2", hparams["beta2"])]
        validation += [
            "        if betas is not None:",
            "            if not (isinstance(betas, (tuple, list)) and len(betas) == 2):",
            '                raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")',
            "            if isinstance(betas[0], torch.Tensor) != isinstance(betas[1], torch.Tensor):",
            '                raise ValueError("betas must be either both floats or both Tensors")',
        ]
        for index, (low, high) in enumerate(beta_bounds):
            if low is not None:
                condition = f"{low!r} <= float(betas[{index}])" + (f" < {high!r}" if high is not None else "")
                validation += [f"            if not {condition}:",
                               f'                raise ValueError(f"Invalid beta parameter at index {index}: '
                               f'{{betas[{index}]}}")']
        validation.append("            beta1, beta2 = betas")
    for key, value in hparams.items():
        low, high = _bounds(key, value)
        validation.append(f"        _check_hparam({key!r}, {key}, {low!r}, {high!r})")
    # a Tensor beta or eps is read once here; only lr stays a tensor (schedulers change it in place)
    validation += [f"        {key} = float({key}) if isinstance({key}, torch.Tensor) else {key}"
                   for key in hparams if key != "lr"]
    group_betas = ["        if \"betas\" in param_group:",
                   "            param_group = dict(param_group)",
                   "            param_group[\"beta1\"], param_group[\"beta2\"] = param_group.pop(\"betas\")"] if betas else []
    replacements = {
        "__CLASS_DOC__": class_doc,
        "__CLASS__": class_name,
        "__SIGNATURE__": "\n".join(signature),
        "__VALIDATION__": "\n".join(validation),
        "__DEFAULTS__": "\n".join(f"            {key!r}: {key}," for key in hparams),
        "__GROUP_BETAS__": "\n".join(group_betas),
        "__COMPLEX_REFUSAL__": repr(complex_refusal),
        "__FAST__": repr(fast),
        "__BATCHED__": repr(batched and not fast),
    }
    text = TEMPLATE
    for marker, value in replacements.items():
        text = text.replace(marker, value)
    return text


WRAPPER_NAMES = frozenset({"self", "params", "super", "defaults", "betas", "maximize", "foreach", "param_group"})
"""Constructor-local names an HPARAMS key may not take."""
