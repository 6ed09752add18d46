"""Teacher-student regression: a wider student MLP learns a fixed random teacher MLP.

    teacher: 16 -> 8 tanh -> 1 (fixed, random);   student: 16 -> 32 tanh -> 1
    loss = mean squared error on the teacher's outputs (no label noise, so the infimum is 0)

Inputs are N(0, I). Training uses minibatches of 64 from 1024 fixed inputs; the scoring loss is
the full training-set MSE and the test metric the MSE on 1024 fresh inputs.
"""

from __future__ import annotations

import torch

from sandbox.tasks.base import Batch, Params, Task, minibatch_indices
from sandbox.tasks.mlp import init_mlp, mlp_forward

INPUTS = 16
TEACHER = (INPUTS, 8, 1)
STUDENT = (INPUTS, 32, 1)
DATA_SEED = 3
TEACHER_GAIN = 2.0  # saturates the teacher's tanh units a little: a non-linear target


class TeacherStudent(Task):
    name = "teacher_student"
    version = 1
    steps = 300
    schedule = "warmup_cosine"
    description = "16-32-1 tanh student regressing a fixed random 16-8-1 tanh teacher, minibatches of 64 from 1024 inputs"
    loss_name = "train_mse"
    test_metric_name = "test_mse"
    higher_is_better = False
    stochastic = True
    family = "mlp"
    default_device_ok = True
    batch_size = 64
    num_train = 1024
    num_test = 1024

    def __init__(self, variant: int = 0) -> None:
        super().__init__(variant)
        teacher = {k: v * TEACHER_GAIN for k, v in init_mlp(TEACHER, DATA_SEED).items()}
        gen = torch.Generator().manual_seed(DATA_SEED + 1)
        x = torch.randn(self.num_train + self.num_test, INPUTS, generator=gen)
        y = mlp_forward(teacher, x, torch.tanh)
        self._train = {"x": x[: self.num_train], "y": y[: self.num_train]}
        self._test = {"x": x[self.num_train:], "y": y[self.num_train:]}

    def init_params(self, seed: int) -> Params:
        return init_mlp(STUDENT, seed)

    def loss(self, params: Params, batch: Batch) -> torch.Tensor:
        error = mlp_forward(params, batch["x"], torch.tanh) - batch["y"]
        return (error * error).mean()

    def batch(self, step: int, seed: int) -> Batch:
        index = minibatch_indices(self.num_train, self.batch_size, step, seed)
        return {"x": self._train["x"][index], "y": self._train["y"][index]}

    def eval_batch(self) -> Batch:
        return self._train

    def val_batch(self) -> Batch:
        return self._test

    def test_metric(self, params: Params, seed: int) -> float:
        return float(self.loss(params, self._test))
