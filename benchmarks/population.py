"""Population batching vs per-program batching, side by side on this machine (issue 14 item 2).

For each task of a suite, ``--programs`` AdamW mutants (the offline mutation proposer, seeded, as
benchmarks/throughput.py makes them) are trained on the LR-selection grid (the default LR grid x
the two selection seeds: 22 configs each) with a reduced step budget, in this process, with one
torch thread (as in a sandbox worker):

- per program: ``run_candidate`` once per program (what one ``evaluate`` job per program costs
  in the worker, without the job round trips);
- population: one ``run_population`` call for all of them (one ``evaluate_population`` job).

The two are timed alternately ``--repeats`` times and the fastest of each is kept (the machine is
shared). The table also says how many programs shared the pass (the rest fell back to running
alone: untraceable or crashing mutants, or a task whose rows are not computed independently of
their batch-mates) and whether every run came out bit for bit the same.

    python benchmarks/population.py [--programs 8] [--suite search] [--steps-scale 0.2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from sandbox.contract import CandidateError, load_program  # noqa: E402
from sandbox.evaluate import DEFAULT_LR_GRID, EvalSettings  # noqa: E402
from sandbox.harness import RunConfig, run_candidate  # noqa: E402
from sandbox.population import train_population  # noqa: E402
from sandbox.tasks import suite  # noqa: E402
from throughput import adamw_mutants  # noqa: E402


def per_program(programs, task, configs, steps):
    out = []
    for program in programs:
        try:
            out.append(run_candidate(program, task, configs, steps=steps))
        except CandidateError as exc:
            out.append(exc)
    return out


def fingerprint(results) -> list:
    """Every number a run reports (NaN as text), or the failure, per program."""
    return [(exc.reason, str(exc)) if isinstance(exc := r, CandidateError) else
            [(x.status, x.stopped_at, repr(x.losses), repr(x.val_losses), repr(x.test_metric)) for x in r]
            for r in results]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", type=int, default=8, help="AdamW mutants (default: 8)")
    parser.add_argument("--suite", default="search", help="task suite (default: search)")
    parser.add_argument("--tasks", default="", help="comma-separated task names instead of the suite")
    parser.add_argument("--steps-scale", type=float, default=0.2, help="fraction of each task's budget (default: 0.2)")
    parser.add_argument("--repeats", type=int, default=2, help="alternating timed repeats, fastest kept (default: 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the mutants")
    args = parser.parse_args()

    torch.set_num_threads(1)
    from sandbox.tasks import get_task

    tasks = [get_task(n.strip()) for n in args.tasks.split(",") if n.strip()] or suite(args.suite)
    programs = [load_program(source) for source in adamw_mutants(args.programs, args.seed)]
    settings = EvalSettings(steps_scale=args.steps_scale)
    configs = [RunConfig(lr, seed) for lr in DEFAULT_LR_GRID for seed in settings.selection_seeds]
    print(f"{len(programs)} AdamW mutants x {len(configs)} configs (LR grid x seeds {settings.selection_seeds}), "
          f"steps x{args.steps_scale:g}, 1 torch thread, fastest of {args.repeats}")
    print(f"{'task':<18}{'steps':>6}{'shared':>8}{'per-program s':>15}{'population s':>14}{'ratio':>7}{'identical':>11}")
    totals = [0.0, 0.0]
    for task in tasks:
        steps = settings.steps_for(task)
        per_program(programs[:1], task, configs[:2], 3)  # first-use costs (task data, kernels) off the clock
        best = [float("inf"), float("inf")]
        for _ in range(args.repeats):
            start = time.perf_counter()
            alone = per_program(programs, task, configs, steps)
            best[0] = min(best[0], time.perf_counter() - start)
            start = time.perf_counter()
            outcome = train_population(programs, task, configs, steps=steps)
            best[1] = min(best[1], time.perf_counter() - start)
        same = fingerprint(alone) == fingerprint(outcome.results)
        totals = [totals[0] + best[0], totals[1] + best[1]]
        print(f"{task.key:<18}{steps:>6}{sum(outcome.shared):>5}/{len(programs):<2}{best[0]:>15.2f}{best[1]:>14.2f}"
              f"{best[0] / best[1]:>6.2f}x{'yes' if same else 'NO':>11}", flush=True)
    print(f"{'total':<18}{'':>6}{'':>8}{totals[0]:>15.2f}{totals[1]:>14.2f}{totals[0] / totals[1]:>6.2f}x")


if __name__ == "__main__":
    main()
