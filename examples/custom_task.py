"""A task of your own: a small tanh MLP fitting a noisy 1-D wave, by minibatches.

Search on it from a config::

    [evaluation]
    task_modules = ["examples/custom_task.py"]   # a .py file or an importable module name
    tasks = ["wave_mlp"]                         # validation/test default to wave_mlp@1 / wave_mlp@2

or from Python::

    import discover
    results = discover.evaluate("adam", tasks=["wave_mlp"], task_modules=["examples/custom_task.py"])

Every concrete ``Task`` subclass this module defines is registered when the module is loaded
(calling ``discover.register_task(WaveMLP)`` does the same, explicitly). The contract, in
``sandbox/tasks/base.py``: pure tensor functions (the harness vmaps them over learning rates and
seeds), data from fixed generators (never from global state), a non-negative loss that starts
positive, and ``version`` bumped whenever the numbers change (cached runs are keyed by it).
"""

from __future__ import annotations

import math

import torch

from sandbox.tasks import Task
from sandbox.tasks.base import Batch, Params, minibatch_indices

DATA_SEED = 4242
TRAIN_SIZE = 1024
VAL_SIZE = 256


class WaveMLP(Task):
    name = "wave_mlp"  # lowercase letters, digits and _; must not clash with a built-in task
    version = 1
    steps = 300  # the step budget every optimizer gets (scaled by evaluation.steps_scale)
    schedule = "constant"  # or "warmup_cosine"
    description = "1-32-1 tanh MLP fitting sin(3x) + noise on [-2, 2], minibatches of 32"
    family = "mlp"  # one of sandbox.tasks.FAMILIES
    loss_name = "eval_batch_mse"
    val_metric_name = "val_mse"
    test_metric_name = "test_mse"
    higher_is_better = False  # of the test metric
    stochastic = True  # batch() depends on (step, seed)
    default_device_ok = False  # far too small to gain from a GPU
    # Workload variants: @1, @2, ... draw each attribute from its choices (seeded, the same everywhere).
    hidden = 32
    noise = 0.1
    batch_size = 32
    variant_space = {"hidden": (16, 32, 64), "noise": (0.05, 0.1, 0.2), "batch_size": (16, 32, 64)}

    def __init__(self, variant: int = 0) -> None:
        super().__init__(variant)  # sets hidden, noise and batch_size for the variant
        gen = torch.Generator().manual_seed(DATA_SEED)

        def draw(n: int) -> Batch:
            x = torch.rand(n, 1, generator=gen) * 4 - 2
            y = torch.sin(3 * x) + self.noise * torch.randn(n, 1, generator=gen)
            return {"x": x, "y": y}

        self._train, self._val, self._test = draw(TRAIN_SIZE), draw(VAL_SIZE), draw(VAL_SIZE)

    def init_params(self, seed: int) -> Params:
        gen = torch.Generator().manual_seed(seed)
        return {"w1": torch.randn(1, self.hidden, generator=gen),
                "b1": torch.zeros(self.hidden),
                "w2": torch.randn(self.hidden, 1, generator=gen) / math.sqrt(self.hidden),
                "b2": torch.zeros(1)}

    def loss(self, params: Params, batch: Batch) -> torch.Tensor:
        hidden = torch.tanh(batch["x"] @ params["w1"] + params["b1"])
        error = hidden @ params["w2"] + params["b2"] - batch["y"]
        return (error * error).mean()

    def batch(self, step: int, seed: int) -> Batch:
        index = minibatch_indices(TRAIN_SIZE, self.batch_size, step, seed)
        return {key: value[index] for key, value in self._train.items()}

    def eval_batch(self) -> Batch:
        return {key: value[:256] for key, value in self._train.items()}

    def val_batch(self) -> Batch:
        return self._val

    def test_metric(self, params: Params, seed: int) -> float:
        return float(self.loss(params, self._test))
