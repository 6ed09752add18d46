"""How much one ``step()`` of an exported optimizer costs next to ``torch.optim.AdamW``.

Measured at export time for programs exported from a campaign, so the docstring discloses it:
a rule with Newton-Schulz iterations costs tens of AdamW steps on a CPU, which matters for a
user choosing it. The two optimizers step the same parameters (a small MLP's tensor shapes)
interleaved, so machine noise hits both alike; the median ratio is reported with its setting.
"""

from __future__ import annotations

import statistics
import time

import torch

SHAPES = [(512, 256), (512,), (512, 512), (512,), (10, 512), (10,)]  # 400K parameters, 6 tensors


def measure_step_cost(cls: type[torch.optim.Optimizer], rounds: int = 7) -> float:
    """Median over ``rounds`` of (one step of ``cls``) / (one step of torch AdamW, default
    implementation) on the same CPU parameters, after one warm-up step each."""
    gen = torch.Generator().manual_seed(0)
    timings: dict[str, list[float]] = {"ours": [], "adamw": []}
    optimizers = {}
    for name in timings:
        params = [torch.nn.Parameter(torch.randn(shape, generator=gen) * 0.1) for shape in SHAPES]
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen)
        optimizers[name] = cls(params) if name == "ours" else torch.optim.AdamW(params)
    for r in range(rounds + 1):
        for name, opt in optimizers.items():
            start = time.perf_counter()
            opt.step()
            if r:
                timings[name].append(time.perf_counter() - start)
    return statistics.median(a / b for a, b in zip(timings["ours"], timings["adamw"]))


def step_cost_note(ratio: float) -> str:
    """The docstring's sentence for a measured ratio."""
    return (f"Step cost: one step() took {ratio:.1f}x as long as torch.optim.AdamW's on the same "
            f"parameters\n(measured at export on the CPU with torch {torch.__version__.split('+')[0]}, "
            f"{torch.get_num_threads()} threads: a 400K-parameter MLP's\ntensors, median of 7 "
            "interleaved steps; the model's forward and backward are not included).")
