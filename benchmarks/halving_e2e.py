"""What successive halving inside LR selection saves end to end: one candidate's evaluation
(screen, then the full stage on the search tier) with ``EvalSettings.halving`` on and off, each
from a run cache that is cold for the candidate, back to back on this machine.

Both caches start with the tuned baselines' runs copied from ``--source-cache`` (a campaign pays
for those once, not per candidate), so what is timed is the candidate's own work: its screen,
selection and measurement runs. Printed per setting: wall seconds, the workers' CPU seconds,
runs executed, run-steps trained (a pruned run counts the steps it ran), fitness and the
per-task picks; then the on/off ratios. Wall time on a shared machine is noisy: read the CPU
seconds and run-steps beside it.

    python benchmarks/halving_e2e.py [--program adamw:beta2=0.97] [--warmup nadam] [--pairs 2]
                                     [--steps-scale 1.0] [--workers 2]
                                     [--source-cache ~/.cache/optimizer-discovery/runs.sqlite]
"""

from __future__ import annotations

import argparse
import math
import os
import sqlite3
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from sandbox.contract import program_hash
from sandbox.evaluate import EvalSettings, Evaluator
from sandbox.executor import make_executor
from sandbox.halving import RECOMMENDED
from sandbox.references import reference_source, with_hparams
from sandbox.runcache import RECORD_FORMAT, RunCache, default_cache_dir


def program(spec: str) -> str:
    """``name`` or ``name:key=value,key=value`` (a reference with its HPARAMS changed)."""
    name, _, params = spec.partition(":")
    source = reference_source(name)
    if params:
        source = with_hparams(source, {k: float(v) for k, v in (p.split("=") for p in params.split(","))})
    return source


def seed_baselines(source: Path, target: Path, evaluator: Evaluator) -> int:
    """Copy every run of the tuned baselines' programs from ``source`` into a new cache file."""
    hashes = {program_hash(s) for name in evaluator.baseline_names() for s in evaluator.baseline_sources(name)}
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    cache = RunCache(target)
    copied = 0
    for phash in sorted(hashes):
        prefix = f"r{RECORD_FORMAT}|{phash}|"
        rows = src.execute("SELECT key, record FROM runs WHERE key >= ? AND key < ?", (prefix, prefix + "\x7f"))
        with cache._conn:  # one transaction per program
            cache._conn.executemany("INSERT OR REPLACE INTO runs (key, record) VALUES (?, ?)", rows)
        copied += cache._conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] - copied
    src.close()
    cache.close()
    return copied


def trained_steps(result) -> int:
    """Steps the candidate's runs trained (each run once: the full stage re-lists the screen's)."""
    seen = {}
    for rec in result.run_records:
        seen[(rec["task"], rec["lr"], rec["seed"])] = len(rec["losses"])
    return sum(seen.values())


def cpu_seconds() -> float:
    """CPU seconds (user + system) used so far by this process's descendants (the sandbox
    workers), living and reaped, from /proc: what the evaluation cost, whatever else the shared
    machine is doing; NaN where /proc cannot tell."""
    tick = os.sysconf("SC_CLK_TCK")
    total, stack, seen = 0.0, [os.getpid()], set()
    try:
        while stack:
            pid = stack.pop()
            if pid in seen:
                continue
            seen.add(pid)
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            if pid != os.getpid():
                total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
            total += (int(fields[13]) + int(fields[14])) / tick  # cutime, cstime: reaped children
            for task in Path(f"/proc/{pid}/task").iterdir():
                stack.extend(int(c) for c in (task / "children").read_text().split())
    except (OSError, ValueError, IndexError):
        return math.nan
    return total


def job_seconds(result, task: str) -> float:
    """Worker seconds of the candidate's selection jobs (screen included) on ``task``."""
    return sum(j.get("seconds") or 0.0 for j in result.jobs
               if j["task"] == task and j["program"] == result.program_hash and j["stage"] in ("screen", "select")
               and j["runs"])


def evaluate_once(executor, settings: EvalSettings, source: str, source_cache: Path, path: Path) -> dict:
    """One evaluation of ``source`` from a cache holding only the baselines' runs; timed."""
    seed_baselines(source_cache, path, Evaluator(executor, None, settings))
    evaluator = Evaluator(executor, RunCache(path), settings)
    for task in evaluator.tasks_for(settings.suite):  # the baselines first, untimed (cached, or run here)
        for name in evaluator.baseline_names():
            evaluator.baseline_reference(name, task, seeds=settings.measure_seeds)
        evaluator.baseline_reference("adamw", task, screen=True)
    started, cpu = time.perf_counter(), cpu_seconds()
    result = evaluator.evaluate(source)
    return {"wall": time.perf_counter() - started, "cpu": cpu_seconds() - cpu, "result": result,
            "steps": trained_steps(result)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--program", default="adamw:beta2=0.97", help="reference[:hparam=value,...] (default: %(default)s)")
    parser.add_argument("--warmup", default="nadam", help="a different program evaluated first, untimed, so that "
                        "neither setting pays the workers' first-job costs (default: %(default)s)")
    parser.add_argument("--pairs", type=int, default=2, help="on/off pairs, in alternating order (default: 2)")
    parser.add_argument("--steps-scale", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--source-cache", default=str(default_cache_dir() / "runs.sqlite"),
                        help="where the baselines' runs are copied from")
    args = parser.parse_args()
    source_cache = Path(args.source_cache).expanduser()
    if not source_cache.exists():
        print(f"error: {source_cache} does not exist", file=sys.stderr)
        sys.exit(2)
    if args.pairs < 1:
        print(f"error: --pairs must be at least 1, got {args.pairs}", file=sys.stderr)
        sys.exit(2)
    try:
        source, warmup = program(args.program), program(args.warmup)
    except Exception as exc:  # noqa: BLE001 (a bad --program: one line, exit 2)
        print(f"error: --program/--warmup: {exc}", file=sys.stderr)
        sys.exit(2)
    base = EvalSettings(steps_scale=args.steps_scale)
    settings = {"off": replace(base, halving=None), "on": replace(base, halving=base.halving or RECOMMENDED)}
    executor = make_executor("local", size=args.workers)
    runs: dict[str, list[dict]] = {"off": [], "on": []}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            evaluate_once(executor, settings["off"], warmup, source_cache, Path(tmp) / "warmup.sqlite")
            for pair in range(args.pairs):
                for label in ("off", "on") if pair % 2 == 0 else ("on", "off"):
                    one = evaluate_once(executor, settings[label], source, source_cache,
                                        Path(tmp) / f"{label}{pair}.sqlite")
                    runs[label].append(one)
                    result = one["result"]
                    print(f"halving {label:3}: {one['wall']:6.1f} s wall  {one['cpu']:6.1f} s worker CPU  "
                          f"{result.runs_executed:4d} runs executed  {one['steps']:7d} run-steps  "
                          f"fitness {result.fitness:.4f} ({result.stage})", flush=True)
    finally:
        executor.close()
    off, on = runs["off"], runs["on"]
    ratio = {key: [b[key] / a[key] for a, b in zip(off, on)] for key in ("wall", "cpu")}
    r0, r1 = off[0]["result"], on[0]["result"]
    print(f"on/off per pair: wall {', '.join(f'{x:.2f}x' for x in ratio['wall'])}; worker CPU "
          f"{', '.join(f'{x:.2f}x' for x in ratio['cpu'])}; totals: wall {sum(r['wall'] for r in on) / sum(r['wall'] for r in off):.2f}x, "
          f"worker CPU {sum(r['cpu'] for r in on) / sum(r['cpu'] for r in off):.2f}x; runs executed "
          f"{r1.runs_executed / max(1, r0.runs_executed):.2f}x, run-steps {on[0]['steps'] / max(1, off[0]['steps']):.2f}x; "
          f"fitness {r0.fitness:.4f} -> {r1.fitness:.4f}")
    print("worker seconds per task, select+screen jobs, summed over pairs (off -> on): " + ", ".join(
        f"{t} {sum(job_seconds(r['result'], t) for r in off):.1f} -> {sum(job_seconds(r['result'], t) for r in on):.1f}"
        for t in r0.tasks))
    picks = {t: (r0.tasks[t].best_lr, r1.tasks[t].best_lr) for t in r0.tasks}
    print("picks (off, on): " + ", ".join(f"{t} {a:g}{'' if a == b else f' -> {b:g}'}" for t, (a, b) in picks.items()))


if __name__ == "__main__":
    main()
