"""Batched (vmapped) versus sequential evaluation of one program over a grid of configs.

Runs AdamW on the digits MLP task for 16 configurations (8 learning rates x 2 seeds) both ways,
in the same process and with the same thread count, and prints the wall times and their ratio.
Then it measures the worker sandbox's overhead: the same batched evaluation as an ``evaluate``
job through a one-worker :class:`~sandbox.pool.WorkerPool` (separate process, rlimits, JSON
replies) against calling the job function in this process.
Each path is warmed up once, then timed ``--repeats`` times; the minimum is reported (the
least-disturbed run: on a shared machine every other number is mostly noise from neighbours).

    python benchmarks/batched_eval.py [--task mlp_digits] [--steps N] [--threads 1] [--repeats 3]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from sandbox.harness import RunConfig, run_candidate  # noqa: E402
from sandbox.references import load_reference  # noqa: E402
from sandbox.tasks import get_task  # noqa: E402

LEARNING_RATES = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)
SEEDS = (0, 1)


def time_once(batched: bool, task, program, configs, steps: int | None, device: str) -> tuple[float, list]:
    start = time.perf_counter()
    results = run_candidate(program, task, configs, steps=steps, device=device, batched=batched)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="mlp_digits", help="task name (default: mlp_digits)")
    parser.add_argument("--program", default="adamw", help="reference program (default: adamw)")
    parser.add_argument("--steps", type=int, default=None, help="steps per run (default: the task's budget)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for both paths (default: 1)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per path; the minimum is reported")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    task, program = get_task(args.task), load_reference(args.program)
    configs = [RunConfig(lr, seed) for lr in LEARNING_RATES for seed in SEEDS]
    steps = args.steps or task.steps
    print(f"task {task.name} ({steps} steps), program {args.program}, {len(configs)} configs, "
          f"{args.threads} thread(s), device {args.device}")

    times: dict[str, list[float]] = {"sequential": [], "batched": []}
    outputs = {}
    for mode in times:  # warm-up: first-call costs (vmap tracing caches, allocator) stay out of the timing
        time_once(mode == "batched", task, program, configs, min(steps, 5), args.device)
    for _ in range(args.repeats):
        for mode in times:  # interleaved, so a burst of load from neighbours hits both paths alike
            seconds, outputs[mode] = time_once(mode == "batched", task, program, configs, steps, args.device)
            times[mode].append(seconds)

    worst = max(
        (abs(a - b) / max(abs(b), 1e-12)
         for ra, rb in zip(outputs["batched"], outputs["sequential"])
         for a, b in zip(ra.losses, rb.losses) if math.isfinite(a) and math.isfinite(b)),
        default=0.0)
    seq, bat = min(times["sequential"]), min(times["batched"])
    per_step = 1e3 * bat / (steps * len(configs))
    print(f"sequential: {seq:7.2f} s   (all repeats: {', '.join(f'{t:.2f}' for t in times['sequential'])})")
    print(f"batched:    {bat:7.2f} s   (all repeats: {', '.join(f'{t:.2f}' for t in times['batched'])}); "
          f"{per_step:.3f} ms per config-step")
    print(f"speed-up:   {seq / bat:7.2f}x   (largest relative loss difference between the paths: {worst:.1e})")
    sandbox_overhead(args, program, configs, steps)


def sandbox_overhead(args, program, configs, steps: int) -> None:
    """The same job in-process and through a sandboxed worker, interleaved; minimum of repeats."""
    from sandbox.jobs import evaluate_job
    from sandbox.pool import WorkerPool

    payload = {"source": program.source, "task": args.task, "steps": steps,
               "configs": [[c.lr, c.seed] for c in configs]}
    times: dict[str, list[float]] = {"in-process": [], "sandboxed": []}
    with WorkerPool(1, device=args.device, num_threads=args.threads) as pool:
        pool.submit("evaluate", {**payload, "steps": 5}, timeout=600).result()  # warm the worker up
        evaluate_job({**payload, "steps": 5}, args.device)
        for _ in range(args.repeats):
            start = time.perf_counter()
            local = evaluate_job(payload, args.device)
            times["in-process"].append(time.perf_counter() - start)
            start = time.perf_counter()
            remote = pool.submit("evaluate", payload, timeout=600).result()
            times["sandboxed"].append(time.perf_counter() - start)
    if not remote.ok:
        raise SystemExit(f"the sandboxed evaluation failed: {remote.reason}: {remote.message}")
    same = remote.value == local
    inproc, boxed = min(times["in-process"]), min(times["sandboxed"])
    print(f"in-process: {inproc:7.2f} s   sandboxed worker: {boxed:7.2f} s   "
          f"overhead: {100 * (boxed / inproc - 1):+.1f}%   (identical results: {same})")


if __name__ == "__main__":
    main()
