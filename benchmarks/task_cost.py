"""What each proxy task costs, and whether tuned baselines behave sanely on it.

For every task (or ``--task NAME[@VARIANT]``, repeatable) it runs the selection pass the
evaluator runs, the whole LR grid x 2 selection seeds of one reference optimizer in one batched
(vmapped) pass, and prints per task: wall seconds of that pass, the best LR by final validation
value (``*`` when it sits at the grid's edge: the grid is too narrow there) and the final
validation value at that LR, for each ``--program`` (default: adamw, adam, sgd_momentum).
A task whose every optimizer's best LR is at the edge, or where one optimizer is >10x ahead of
AdamW by a trick, is degenerate (shared/DESIGN.md section 3).

    python benchmarks/task_cost.py [--task NAME ...] [--program adamw ...] [--threads 2]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from sandbox.evaluate import DEFAULT_LR_GRID  # noqa: E402
from sandbox.harness import RunConfig, run_candidate  # noqa: E402
from sandbox.references import load_reference  # noqa: E402
from sandbox.tasks import get_task, task_names  # noqa: E402

SELECTION_SEEDS = (0, 1)


def final_value(result) -> float:
    """The run's last validation value (falls back to the scoring loss before the harness has
    validation curves); inf for a failed run."""
    if result.status != "ok":
        return math.inf
    values = getattr(result, "val_losses", None) or result.losses
    return float(values[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", action="append", help="task NAME or NAME@VARIANT (repeatable; default: all)")
    parser.add_argument("--program", action="append", help="reference optimizer (repeatable)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: 2, this machine's cores)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    programs = args.program or ["adamw", "adam", "sgd_momentum"]
    specs = args.task or task_names()
    configs = [RunConfig(lr, seed) for lr in DEFAULT_LR_GRID for seed in SELECTION_SEEDS]
    print(f"{'task':28} {'family':11} {'steps':>5} " + " ".join(f"{p + ' s':>8} {'best lr':>8} {'val':>9}" for p in programs))
    for spec in specs:
        task = get_task(spec)
        cells = []
        for name in programs:
            program = load_reference(name)
            start = time.perf_counter()
            results = run_candidate(program, task, configs, batched=True)
            seconds = time.perf_counter() - start
            by_lr: dict[float, list[float]] = {}
            for config, result in zip(configs, results):
                by_lr.setdefault(config.lr, []).append(final_value(result))
            means = {lr: sum(v) / len(v) for lr, v in by_lr.items()}
            best = min(means, key=lambda lr: (means[lr], lr))
            edge = "*" if best in (DEFAULT_LR_GRID[0], DEFAULT_LR_GRID[-1]) else " "
            cells.append(f"{seconds:8.1f} {best:7.0e}{edge} {means[best]:9.4g}")
        print(f"{task.key:28} {getattr(task, 'family', '?'):11} {task.steps:5d} " + " ".join(cells), flush=True)


if __name__ == "__main__":
    main()
