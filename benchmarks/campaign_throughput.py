"""Candidates per hour of a whole campaign, side by side for several evaluator settings (issue 14).

``benchmarks/throughput.py`` times rounds of concurrent evaluations; this times the thing a user
runs: ``discover run`` with one preset and seed, from an empty run cache each time (so every run,
tuned baselines included, really executes), once per *arm* (a name and ``--set`` overrides). Arms
run interleaved, in ABBA order over ``--repeats``, so a drift in the machine's load falls on every
arm alike. Per arm it prints the median wall time, the candidates evaluated per hour, the CPU
seconds the campaign and its sandbox workers used, and the ratio to the first arm; last, whether
every run archived the same best program with the same fitness (a seeded campaign with the
same evaluator settings must, whatever the executor does).

    python benchmarks/campaign_throughput.py [--preset quick] [--seed 0] [--repeats 2]
        [--arm per-program:evaluation.population=off] [--arm population:evaluation.population=on]
        [--arm "session-start@ef52377"] [--arm now]

An arm is ``NAME[@REV][:KEY=VALUE;...]``: ``--set`` values in ``discover run`` syntax, and
optionally a git revision of this repository whose code runs that arm (checked out once into a
temporary worktree, imported first via PYTHONPATH): how a code change, not a setting, moves a
whole campaign, measured side by side in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ARMS = ("per-program:evaluation.population=off", "population:evaluation.population=on")


def parse_arm(text: str) -> tuple[str, str | None, list[str]]:
    """``NAME[@REV][:KEY=VALUE;...]`` -> (name, the revision or None, the ``--set`` values)."""
    head, _, rest = text.partition(":")
    name, _, rev = head.partition("@")
    sets = [s.strip() for s in rest.split(";") if s.strip()]
    if not name or ("@" in head and not rev) or any("=" not in s for s in sets):
        raise SystemExit(f"campaign_throughput.py: error: bad arm {text!r}; expected NAME[@REV][:KEY=VALUE;...]")
    return name, rev or None, sets


def checkout(rev: str, into: Path) -> Path:
    """A worktree of this repository at ``rev`` (SystemExit naming the revision if git refuses)."""
    done = subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-f", str(into), rev],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"campaign_throughput.py: error: cannot check out {rev!r}: "
                         f"{(done.stderr.strip().splitlines() or ['git failed'])[-1]}")
    return into


def run_once(preset: str, seed: int, sets: list[str], extra: list[str], source: Path | None = None) -> dict:
    """One campaign from an empty run cache (with the code at ``source`` when given); wall and
    CPU seconds and its JSON summary."""
    with tempfile.TemporaryDirectory(prefix="campaign-throughput-") as tmp:
        command = [sys.executable, "-c", "from discover.cli import main; main()", "run", "--preset", preset, "--seed", str(seed),
                   "--output-dir", str(Path(tmp) / "out"), "--json", *extra]
        for value in sets:
            command += ["--set", value]
        env = {**os.environ, "DISCOVER_CACHE_DIR": str(Path(tmp) / "run-cache")}
        if source is not None:  # its packages shadow the installed checkout's, workers included
            env["PYTHONPATH"] = os.pathsep.join([str(source), *filter(None, [os.environ.get("PYTHONPATH")])])
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(command, check=False, env=env, capture_output=True, text=True,
                              cwd=str(source) if source is not None else None)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"campaign_throughput.py: error: {' '.join(command)} exited {done.returncode}: "
                         f"{done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ''}")
    summary = json.loads(done.stdout)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu, "evaluations": summary["spend"]["evaluations"],
            "best": (summary.get("best_id"), round(summary.get("best_fitness") or 0.0, 9))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="quick", help="discover run --preset (default: quick)")
    parser.add_argument("--seed", type=int, default=0, help="campaign seed (default: 0)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per arm, interleaved ABBA (default: 2)")
    parser.add_argument("--arm", action="append", default=[],
                        help=f"NAME[:KEY=VALUE;...] (repeatable; default: {' and '.join(DEFAULT_ARMS)})")
    parser.add_argument("--extra", default="", help="more discover run arguments for every arm, space-separated")
    args = parser.parse_args()
    if args.repeats < 1:
        raise SystemExit("campaign_throughput.py: error: --repeats must be >= 1")
    arms = [parse_arm(a) for a in (args.arm or DEFAULT_ARMS)]
    if len({name for name, _, _ in arms}) < len(arms):
        raise SystemExit("campaign_throughput.py: error: two arms share a name")
    extra = args.extra.split()
    with tempfile.TemporaryDirectory(prefix="campaign-throughput-src-") as src:
        sources = {rev: checkout(rev, Path(src) / f"rev{i}") for i, rev in enumerate(sorted({r for _, r, _ in arms if r}))}
        try:
            runs = measure(args, arms, extra, sources)
        finally:
            for path in sources.values():
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)], capture_output=True, check=False)
    report(args, arms, runs)


def measure(args, arms, extra, sources) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = {name: [] for name, _, _ in arms}
    for repeat in range(args.repeats):
        for name, rev, sets in (arms if repeat % 2 == 0 else arms[::-1]):
            result = run_once(args.preset, args.seed, sets, extra, sources.get(rev))
            runs[name].append(result)
            print(f"{name}: {result['wall']:.1f} s wall, {result['cpu']:.1f} s CPU, {result['evaluations']} evaluations, "
                  f"best #{result['best'][0]} {result['best'][1]:.4f}  (load {os.getloadavg()[0]:.1f})", flush=True)
    return runs


def report(args, arms, runs: dict[str, list[dict]]) -> None:
    print()
    labels = {name: f"{name}@{rev}" if rev else name for name, rev, _ in arms}
    width = max(16, *(len(label) + 2 for label in labels.values()))
    print(f"{'arm':<{width}}{'runs':>5}{'wall s (median)':>17}{'candidates/hour':>17}{'CPU s':>8}{'vs first':>10}")
    first = None
    for name, rev, _ in arms:
        rows = runs[name]
        wall = statistics.median(r["wall"] for r in rows)
        rate = statistics.median(3600 * r["evaluations"] / r["wall"] for r in rows)
        first = first or rate
        print(f"{labels[name]:<{width}}{len(rows):>5}{wall:>17.1f}{rate:>17.0f}{statistics.median(r['cpu'] for r in rows):>8.0f}"
              f"{rate / first:>9.2f}x")
    bests = {r["best"] for rows in runs.values() for r in rows}
    print()
    print(f"preset {args.preset}, seed {args.seed}, {len(os.sched_getaffinity(0))} CPU(s); every run archived the same best "
          f"program: {'yes' if len(bests) == 1 else 'NO: ' + ', '.join(f'#{b[0]} {b[1]:.4f}' for b in sorted(bests))}")


if __name__ == "__main__":
    main()
