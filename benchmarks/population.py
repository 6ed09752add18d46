"""Population batching vs per-program batching, side by side on this machine (issue 14 item 2).

For each task of a suite, ``--programs`` AdamW mutants (the offline mutation proposer, seeded, as
benchmarks/throughput.py makes them) are trained on one evaluation stage's configs with a reduced
step budget, in this process, with one torch thread (as in a sandbox worker). ``--stage select``:
the LR-selection grid (the default LR grid x the two selection seeds, 22 configs per program);
``screen``: the coarse grid (6 x 2); ``measure``: one learning rate (1e-3) x the two measure seeds.

- per program: ``run_candidate`` once per program (what one ``evaluate`` job per program costs
  in the worker, without the job round trips);
- population: one ``run_population`` call for all of them (one ``evaluate_population`` job).

The two are timed alternately ``--repeats`` times and the fastest of each is kept, in wall time
and in this process's CPU time (with one thread, the CPU time is the work done, less disturbed
than the wall time when other processes share the cores). The table also says how many
programs shared the pass (the rest fell back to running alone: untraceable or crashing mutants,
or a task whose rows are not computed independently of their batch-mates), whether every run
came out bit for bit the same, and what the population's own speed check measured for one
shared forward/backward against the programs' own ones (what ``share="auto"``, the library's
default, decides by; the benchmark's default ``independent`` shares wherever results stay exact).
``--halving 0.25`` gives both sides successive halving at those rung fractions (keep half), as
the evaluator's selection jobs carry it (``--halving recommended``: ``sandbox.halving.RECOMMENDED``).

    python benchmarks/population.py [--programs 8] [--suite search] [--stage select] [--steps-scale 0.2]
                                    [--share independent] [--max-rows N] [--repeats 2] [--halving 0.25]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from throughput import adamw_mutants  # noqa: E402

from sandbox.contract import CandidateError, load_program  # noqa: E402
from sandbox.evaluate import EvalSettings  # noqa: E402
from sandbox.halving import RECOMMENDED, Schedule  # noqa: E402
from sandbox.harness import RunConfig, run_candidate  # noqa: E402
from sandbox.population import SHARE_MODES, train_population  # noqa: E402
from sandbox.tasks import suite  # noqa: E402


def per_program(programs, task, configs, steps, halving=None):
    out = []
    for program in programs:
        try:
            out.append(run_candidate(program, task, configs, steps=steps, halving=halving))
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
    parser.add_argument("--stage", choices=("select", "screen", "measure"), default="select",
                        help="whose configs each program gets (default: select, 22 configs)")
    parser.add_argument("--steps-scale", type=float, default=0.2, help="fraction of each task's budget (default: 0.2)")
    parser.add_argument("--max-rows", type=int, default=None, help="rows of one shared pass (default: no cap)")
    parser.add_argument("--share", choices=SHARE_MODES, default="independent",
                        help="when programs share a pass (default: independent, i.e. whenever the results "
                             "stay bit-exact; auto also skips passes its speed check measures slower)")
    parser.add_argument("--repeats", type=int, default=2, help="alternating timed repeats, fastest kept (default: 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the mutants")
    parser.add_argument("--halving", default="", help="successive halving on both sides: rung fractions "
                        "(comma-separated, keep half) or 'recommended' (default: off)")
    args = parser.parse_args()
    try:
        halving = RECOMMENDED if args.halving == "recommended" else (
            Schedule(tuple(float(f) for f in args.halving.split(","))) if args.halving else None)
    except ValueError as exc:
        parser.error(f"--halving: {exc}")

    torch.set_num_threads(1)
    from sandbox.tasks import get_task

    tasks = [get_task(n.strip()) for n in args.tasks.split(",") if n.strip()] or suite(args.suite)
    programs = [load_program(source) for source in adamw_mutants(args.programs, args.seed)]
    settings = EvalSettings(steps_scale=args.steps_scale)
    if args.stage == "measure":
        configs = [RunConfig(1e-3, seed) for seed in settings.measure_seeds]
    else:
        configs = [RunConfig(lr, seed) for lr in settings.grid(coarse=args.stage == "screen")
                   for seed in settings.selection_seeds]
    max_rows = args.max_rows
    print(f"{len(programs)} AdamW mutants x {len(configs)} configs ({args.stage} stage), share={args.share}, "
          f"max rows per pass {max_rows or 'all'}, "
          f"steps x{args.steps_scale:g}, halving: {halving.label if halving else 'off'}, 1 torch thread, "
          f"fastest of {args.repeats}")
    print(f"{'':<33}{'wall seconds':^24}{'CPU seconds':^24}")
    print(f"{'task':<18}{'steps':>6}{'shared':>9}" + f"{'per-prog':>9}{'popul.':>8}{'ratio':>7}" * 2 + f"{'identical':>11}{'check':>9}")
    totals = [0.0] * 4
    for task in tasks:
        steps = settings.steps_for(task)
        per_program(programs[:1], task, configs[:2], 3)  # first-use costs (task data, kernels) off the clock
        wall, cpu = [float("inf")] * 2, [float("inf")] * 2
        for _ in range(args.repeats):
            for side in (0, 1):
                start, start_cpu = time.perf_counter(), time.process_time()
                if side == 0:
                    alone = per_program(programs, task, configs, steps, halving)
                else:
                    outcome = train_population(programs, task, configs, steps=steps, max_rows=max_rows, share=args.share,
                                               halving=halving)
                wall[side] = min(wall[side], time.perf_counter() - start)
                cpu[side] = min(cpu[side], time.process_time() - start_cpu)
        same = fingerprint(alone) == fingerprint(outcome.results)
        totals = [t + v for t, v in zip(totals, wall + cpu)]
        print(f"{task.key:<18}{steps:>6}{sum(outcome.shared):>5}/{len(programs):<3}{row(wall)}{row(cpu)}"
              f"{'yes' if same else 'NO':>11}{ {True: 'faster', False: 'slower', None: '-'}[outcome.faster]:>9}",
              flush=True)
    print(f"{'total':<18}{'':>6}{'':>9}{row(totals[:2])}{row(totals[2:])}")


def row(pair: list[float]) -> str:
    """Per-program and population seconds and their ratio."""
    return f"{pair[0]:>9.2f}{pair[1]:>8.2f}{pair[0] / pair[1]:>7.2f}x"


if __name__ == "__main__":
    main()
