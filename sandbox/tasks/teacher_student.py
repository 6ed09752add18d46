"""Teacher-student regression: a wider student MLP learns a fixed random teacher MLP.

    teacher: 16 -> 8 tanh -> 1 (fixed, random);   student: 16 -> 32 tanh -> 1
    loss = mean squared error on the teacher's outputs (no label noise, so the infimum is 0)

Inputs are N(0, I). Training uses minibatches of 64 from 1024 fixed inputs; the scoring loss is
the MSE on a fixed 256-input subset of them, the validation value the MSE on 512 separate
inputs and the test metric the MSE on 1024 more. Variants draw the student's width, the batch
size and the teacher's gain (how far its tanh units saturate: how non-linear the target is).
"""

from __future__ import annotations

import torch

from sandbox.tasks.base import Batch, FixedSplitsTask, Params, minibatch_indices
from sandbox.tasks.mlp import init_mlp, mlp_forward

INPUTS = 16
TEACHER = (INPUTS, 8, 1)
DATA_SEED = 3


class TeacherStudent(FixedSplitsTask):
    name = "teacher_student"
    version = 2
    steps = 1000
    schedule = "warmup_cosine"
    description = ("16-32-1 tanh student regressing a fixed random 16-8-1 tanh teacher, minibatches of 64 from 1024 "
                   "inputs; validation on 512 other inputs")
    loss_name = "eval_batch_mse"
    val_metric_name = "val_mse"
    test_metric_name = "test_mse"
    higher_is_better = False
    stochastic = True
    exact_stacked_grad = True
    family = "mlp"
    default_device_ok = True
    width = 32
    batch_size = 64
    teacher_gain = 2.0  # saturates the teacher's tanh units a little: a non-linear target
    num_train = 1024
    num_val = 512
    num_test = 1024
    eval_size = 256
    variant_space = {"width": (16, 32, 64), "batch_size": (32, 64, 128), "teacher_gain": (1.0, 2.0, 3.0)}

    def __init__(self, variant: int = 0) -> None:
        super().__init__(variant)
        teacher = {k: v * self.teacher_gain for k, v in init_mlp(TEACHER, DATA_SEED).items()}
        gen = torch.Generator().manual_seed(DATA_SEED + 1)
        x = torch.randn(self.num_train + self.num_val + self.num_test, INPUTS, generator=gen)
        y = mlp_forward(teacher, x, torch.tanh)
        cuts = (self.num_train, self.num_train + self.num_val)
        self._train = {"x": x[: cuts[0]], "y": y[: cuts[0]]}
        self._eval = {"x": x[: self.eval_size], "y": y[: self.eval_size]}
        self._val = {"x": x[cuts[0]: cuts[1]], "y": y[cuts[0]: cuts[1]]}
        self._test = {"x": x[cuts[1]:], "y": y[cuts[1]:]}

    def init_params(self, seed: int) -> Params:
        return init_mlp((INPUTS, self.width, 1), seed)

    def loss(self, params: Params, batch: Batch) -> torch.Tensor:
        error = mlp_forward(params, batch["x"], torch.tanh) - batch["y"]
        return (error * error).mean()

    def batch(self, step: int, seed: int) -> Batch:
        index = minibatch_indices(self.num_train, self.batch_size, step, seed)
        return {"x": self._train["x"][index], "y": self._train["y"][index]}

