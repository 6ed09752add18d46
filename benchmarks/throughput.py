"""Evaluation throughput of the local worker pool, of the same pool with population batching, and
of Ray, side by side on this machine (issue 14: candidates fully scored per hour).

Every executor gets the same number of slots and the same work, and each is measured the same way:

1. start-up: build the executor and wait until every slot has answered a trivial job (for Ray
   this includes starting a local Ray instance and one actor per slot);
2. scheduling overhead: ``--echoes`` trivial ``selftest`` echo jobs, one at a time; the median
   round trip is what the executor adds to every job (the sandbox worker's own pipe included);
3. warm-up: the tuned baselines of both tasks (cached for the timed part, as in a campaign);
4. timed: ``--rounds`` rounds, each of ``--programs`` new mutants of AdamW (offline mutation
   proposer, seeded) evaluated concurrently on ``--tasks`` with a reduced step budget, as a
   campaign batch would be. The run cache is an empty in-memory cache for each executor, so
   every run really executes; evaluations per minute = programs / wall time.

The table ends with the population / local and Ray / local ratios and whether the executors gave
identical fitness for every program (they should: the same sandbox runs the same deterministic
jobs, and population batching is bit-exact on CPU). ``population`` is the local pool wrapped in
:class:`sandbox.population_executor.PopulationExecutor` (a campaign's ``evaluation.population =
"on"``); ``--device cuda`` measures the same on a GPU.

Last, the controller's own overhead per candidate with an instant LLM and instant evaluation,
against archives of ``--controller-sizes`` programs (benchmarks/controller_overhead.py; issue 14
asks for <= 0.03 s per candidate, flat up to 10,000 programs). ``--controller-sizes ''`` skips it.

    python benchmarks/throughput.py [--workers 2] [--programs 8] [--rounds 3] [--steps-scale 0.5]
                                    [--tasks noisy_quadratic,mlp_digits] [--echoes 200]
                                    [--executors local,population,ray] [--device cpu|cuda]
                                    [--controller-sizes 10,1000,10000]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from discover.mutation import MutationError, mutate  # noqa: E402
from sandbox.contract import program_hash  # noqa: E402
from sandbox.evaluate import EvalSettings, Evaluator  # noqa: E402
from sandbox.executor import Executor, make_executor  # noqa: E402
from sandbox.population_executor import PopulationExecutor  # noqa: E402
from sandbox.references import reference_source  # noqa: E402
from sandbox.runcache import MemoryRunCache  # noqa: E402
from sandbox.tasks import get_task  # noqa: E402

LR_GRID = (1e-4, 1e-3, 1e-2, 0.1, 1.0)


def adamw_mutants(count: int, seed: int) -> list[str]:
    """``count`` distinct children of AdamW, two random edits each, from one seeded generator."""
    rng = random.Random(seed)
    parent = reference_source("adamw")
    children: dict[str, str] = {}
    while len(children) < count:
        try:
            child = mutate(parent, rng, n_edits=2)
        except MutationError:
            continue
        children.setdefault(child.hash, child.source)
    return list(children.values())


def echo_round_trips(executor: Executor, count: int) -> list[float]:
    """Seconds per trivial job, submitted one at a time and waited for."""
    times = []
    for i in range(count):
        start = time.perf_counter()
        result = executor.submit("selftest", {"mode": "echo", "value": i}, 10.0).result()
        times.append(time.perf_counter() - start)
        assert result.ok and result.value == i, result
    return times


def measure(kind: str, workers: int, rounds: list[list[str]], settings: EvalSettings, echoes: int) -> dict:
    """Everything the table shows for one executor kind."""
    started = time.perf_counter()
    if kind == "population":  # the local pool, with concurrent jobs on one task merged into one pass
        executor = PopulationExecutor(make_executor("local", size=workers, device=settings.device))
    else:
        executor = make_executor(kind, size=workers, device=settings.device)
    try:
        # Every slot answers once before anything is timed (a slot's first job starts its worker).
        warm = [executor.submit("selftest", {"mode": "sleep", "seconds": 0.5}, 300.0) for _ in range(executor.capacity)]
        assert all(f.result().ok for f in warm)
        startup = time.perf_counter() - started
        echo = echo_round_trips(executor, echoes)

        evaluator = Evaluator(executor, MemoryRunCache(), settings)
        start = time.perf_counter()
        for task in evaluator.tasks_for(settings.suite):
            with ThreadPoolExecutor(max_workers=len(evaluator.baseline_names())) as pool:
                list(pool.map(lambda name: evaluator.baseline_curve(name, task, seeds=settings.measure_seeds),
                              evaluator.baseline_names()))
        baselines = time.perf_counter() - start

        results, timed = [], 0.0
        for programs in rounds:
            start = time.perf_counter()
            with ThreadPoolExecutor(max_workers=len(programs)) as pool:
                results += pool.map(evaluator.evaluate, programs)
            timed += time.perf_counter() - start
        runs = sum(r.runs_executed for r in results)
    finally:
        executor.close()
    return {
        "kind": kind, "slots": executor.capacity, "startup": startup, "echo_median": statistics.median(echo),
        "echo_p90": statistics.quantiles(echo, n=10)[-1], "baselines": baselines, "timed": timed,
        "evals_per_min": 60 * len(results) / timed, "runs_per_min": 60 * runs / timed,
        "fitness": [None if r.failure else round(r.fitness, 9) for r in results],
        "failures": sum(1 for r in results if r.failure),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)),
                        help="slots for each executor (default: this machine's cores)")
    parser.add_argument("--programs", type=int, default=8, help="AdamW mutants per round (default: 8)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds, each with new mutants (default: 3)")
    parser.add_argument("--tasks", default="noisy_quadratic,mlp_digits", help="comma-separated task names")
    parser.add_argument("--steps-scale", type=float, default=0.5, help="fraction of each task's step budget (default: 0.5)")
    parser.add_argument("--echoes", type=int, default=200, help="trivial jobs for the overhead measurement")
    parser.add_argument("--executors", default="local,population,ray",
                        help="which executors to run, in this order (population: the local pool with population "
                             "batching, evaluation.population = on)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the mutants")
    parser.add_argument("--controller-sizes", default="10,1000,10000",
                        help="archive sizes for the controller-overhead table ('' skips it)")
    parser.add_argument("--controller-candidates", type=int, default=40, help="timed candidates per archive size")
    args = parser.parse_args()

    tasks = tuple(t.strip() for t in args.tasks.split(",") if t.strip())
    for name in tasks:
        get_task(name)  # a typo fails now, not after the executors started
    settings = EvalSettings(tasks=tasks, lr_grid=LR_GRID, screen=False, steps_scale=args.steps_scale,
                            device=args.device)
    mutants = adamw_mutants(args.programs * args.rounds, args.seed)
    rounds = [mutants[i::args.rounds] for i in range(args.rounds)]
    runs_per_program = len(tasks) * (len(LR_GRID) * len(settings.selection_seeds) + len(settings.measure_seeds))
    print(f"{args.rounds} round(s) of {args.programs} AdamW mutants on {', '.join(tasks)} (steps x{args.steps_scale:g}, "
          f"{runs_per_program} runs per program; first: {', '.join(program_hash(p)[:8] for p in rounds[0])}); "
          f"{args.workers} slot(s) per executor")

    rows = []
    for kind in [k.strip() for k in args.executors.split(",") if k.strip()]:
        print(f"measuring {kind} ...", flush=True)
        rows.append(measure(kind, args.workers, rounds, settings, args.echoes))

    print()
    print(f"{'executor':<11}{'slots':>6}{'start-up s':>12}{'echo ms (p50/p90)':>20}{'baselines s':>13}"
          f"{'timed s':>9}{'evals/hour':>12}{'runs/min':>10}{'failed':>8}")
    for r in rows:
        echo = f"{1e3 * r['echo_median']:.2f} / {1e3 * r['echo_p90']:.2f}"
        print(f"{r['kind']:<11}{r['slots']:>6}{r['startup']:>12.1f}{echo:>20}{r['baselines']:>13.1f}"
              f"{r['timed']:>9.1f}{60 * r['evals_per_min']:>12.0f}{r['runs_per_min']:>10.0f}{r['failures']:>8}")
    by_kind = {r["kind"]: r for r in rows}
    if {"local", "population"} <= set(by_kind):
        local, population = by_kind["local"], by_kind["population"]
        same = local["fitness"] == population["fitness"]
        print()
        print(f"population / per-program batching ({args.device}): candidates fully scored per hour "
              f"{population['evals_per_min'] / local['evals_per_min']:.2f}x; identical fitness for every program: "
              f"{'yes' if same else 'NO'}")
    if {"local", "ray"} <= set(by_kind):
        local, ray = by_kind["local"], by_kind["ray"]
        print()
        print(f"ray / local: throughput {ray['evals_per_min'] / local['evals_per_min']:.2f}x, "
              f"echo round trip {ray['echo_median'] / local['echo_median']:.1f}x "
              f"(+{1e3 * (ray['echo_median'] - local['echo_median']):.2f} ms per job), "
              f"start-up {ray['startup'] / local['startup']:.1f}x")
        same = local["fitness"] == ray["fitness"]
        print(f"identical fitness for every program: {'yes' if same else 'NO'}")
        if not same:
            for i, (a, b) in enumerate(zip(local["fitness"], ray["fitness"])):
                if a != b:
                    print(f"  program {i}: local {a}, ray {b}")
    sizes = [int(x) for x in args.controller_sizes.split(",") if x.strip()]
    if sizes:
        import controller_overhead  # benchmarks/, next to this file

        print()
        controller_overhead.print_table(controller_overhead.run(sizes, args.controller_candidates, in_flight=4))


if __name__ == "__main__":
    main()
