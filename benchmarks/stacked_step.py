"""The batched step's shortcuts past vmap, per task, on one device: exact? how much faster?

For every task (or ``--tasks``) and its tier variants this compares, at a few batch sizes (rows of
the LR x seed grid), every row's gradient and loss from ``vmap(grad_and_value(loss))`` with
:func:`sandbox.stacked.stacked_grads` (plain autograd through the vmapped loss): bit for bit, and
the seconds per call of each, side by side in one run. It also times AdamW's update under vmap
against :func:`sandbox.stacked.stacked_update` on the same rows.

On CPU the harness takes the stacked gradient where a task declares ``exact_stacked_grad`` (the
``declared`` column; tests/test_stacked_step.py holds every such task to it). On CUDA it takes
neither shortcut yet: run this on a GPU (``--device cuda``) to see whether they are exact and
worth it there before enabling them.

    python benchmarks/stacked_step.py [--device cpu|cuda] [--tasks a,b] [--rows 2,5,22] [--repeats 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import torch
from torch.func import grad_and_value, vmap

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from sandbox.harness import RunConfig, _apply_update, _init_states, _Run, resolve_device  # noqa: E402
from sandbox.references import load_reference  # noqa: E402
from sandbox.stacked import stacked_grads, stacked_update  # noqa: E402
from sandbox.tasks import get_task, task_names  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _seconds(fn, device: torch.device, repeats: int) -> float:
    fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / repeats


def measure(spec: str, rows: int, device: torch.device, repeats: int) -> dict:
    task, program = get_task(spec), load_reference("adamw")
    configs = [RunConfig(1e-3 * (1 + i), i % 2) for i in range(rows)]
    run = _Run(program, task, configs, 4, device, None)
    params = {k: torch.stack([run._init_params(c.seed)[k] * (1 + 0.003 * i) for i, c in enumerate(configs)])
              for k in run._init_params(0)}
    if task.stochastic:
        batch, dims = run._stacked_batch(1, [0, 1], torch.tensor([c.seed % 2 for c in configs], device=device))
    else:
        batch, dims = run.eval_batch, None
    with torch.no_grad():
        vmapped = vmap(grad_and_value(task.loss), in_dims=(0, dims))
        want, want_loss = vmapped(params, batch)
        got, got_loss = stacked_grads(task, params, batch, dims)
        exact = torch.equal(got_loss, want_loss) and all(torch.equal(got[k], want[k]) for k in want)
        t_vmap = _seconds(lambda: vmapped(params, batch), device, repeats)
        t_stacked = _seconds(lambda: stacked_grads(task, params, batch, dims), device, repeats)
        states = vmap(partial(_init_states, program))(params)
        lr = torch.full((rows,), 1e-3, device=device)
        hp = program.hp()
        update = vmap(lambda g, p, s, r: _apply_update(program, g, p, s, 3, hp.replace(lr=r)))
        u_vmap = _seconds(lambda: update(want, params, states, lr), device, repeats)
        u_stacked = _seconds(lambda: stacked_update(program, want, params, states, 3, hp, lr), device, repeats)
    return {"exact": exact, "grad": (t_vmap, t_stacked), "update": (u_vmap, u_stacked)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tasks", default="", help="comma-separated task names (default: every task)")
    parser.add_argument("--rows", default="2,5,22", help="batch sizes to check (default: 2,5,22)")
    parser.add_argument("--repeats", type=int, default=100, help="timed calls per measurement (default: 100)")
    args = parser.parse_args()
    try:
        device = resolve_device(args.device)
        rows = [int(r) for r in args.rows.split(",") if r.strip()]
        names = [t.strip() for t in args.tasks.split(",") if t.strip()] or task_names()
        for name in names:
            get_task(name)
    except (ValueError, KeyError, RuntimeError) as exc:
        raise SystemExit(f"stacked_step.py: error: {exc.args[0] if exc.args else exc}") from None
    if not rows or min(rows) < 1 or args.repeats < 1:
        raise SystemExit("stacked_step.py: error: --rows and --repeats must be positive")
    torch.set_num_threads(1)
    print(f"device {device}; rows {rows}; AdamW; seconds per call of vmap(grad) vs the stacked gradient, "
          f"and of AdamW's update under vmap vs on the stacked rows (at {rows[len(rows) // 2]} rows)")
    print(f"{'task':<22}{'declared':>9}{'exact (all variants, rows)':>28}{'grad x':>8}{'update x':>10}")
    speedups = []
    for name in names:
        specs = [name] + ([f"{name}@1", f"{name}@2"] if get_task(name).variant_space else [])
        results = {(spec, r): measure(spec, r, device, args.repeats if r == rows[len(rows) // 2] and spec == name else 3)
                   for spec in specs for r in rows}
        exact = all(m["exact"] for m in results.values())
        mid = results[(name, rows[len(rows) // 2])]
        grad_x = mid["grad"][0] / mid["grad"][1]
        update_x = mid["update"][0] / mid["update"][1]
        speedups.append(grad_x)
        differs = sum(not m["exact"] for m in results.values())
        verdict = "yes" if exact else f"no ({differs} of {len(results)} differ)"
        print(f"{name:<22}{'yes' if get_task(name).exact_stacked_grad else 'no':>9}"
              f"{verdict:>28}{grad_x:>7.2f}x{update_x:>9.2f}x", flush=True)
    print(f"\nstacked gradient vs vmap(grad), median over tasks: {statistics.median(speedups):.2f}x")


if __name__ == "__main__":
    main()
