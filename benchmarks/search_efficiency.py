"""Search efficiency: evaluations needed to reach a fitness target, campaign vs random search.

Runs two campaigns with the same budget, seed and evaluation protocol, one after the other:

* ``campaign``: the offline mutation proposer with Pareto parent selection (the default);
* ``control``:  the same mutations applied to the seed (reference) programs only, with no
  selection at all (``search.selection = "random"``).

Then prints the best fitness reached after every N evaluations for both, and, for each target,
how many evaluations each needed to first reach it. Fitness here is the full-suite fitness of
non-reference programs (the references are the same in both runs).

With several seeds (``--seeds 0 1``), each seed's pair is reported, then a summary across seeds
of what each arm's winner scored (measured, on fresh seeds and on the held-out suite), so a gap
between the arms can be told apart from the spread between seeds.

    python benchmarks/search_efficiency.py [--preset quick | --config FILE] [--evaluations 60]
        [--seeds 0 1] [--targets 1.0 1.05 1.1] [--output-dir DIR] [--set a.b=v ...]

Existing campaign directories can be compared without rerunning them (one pair per seed):

    python benchmarks/search_efficiency.py --compare CAMPAIGN_DIR CONTROL_DIR [--compare ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import archive  # noqa: E402
from discover.campaign import Campaign  # noqa: E402
from discover.config import load_config, parse_override  # noqa: E402


def best_so_far(directory: Path) -> list[float]:
    """Best full-suite fitness of a proposed (non-reference) program after each evaluation."""
    with archive.open(directory, readonly=True) as store:
        rows = [p for p in store.programs(sort="date") if p.proposer != "reference"]
    rows.sort(key=lambda p: p.meta.get("proposal_index", 0))
    best, out = float("-inf"), []
    for p in rows:
        if p.status not in ("evaluated", "failed"):
            continue  # duplicates cost no evaluation
        if p.status == "evaluated" and p.stage in ("full", "confirmed") and p.fitness is not None:
            best = max(best, p.fitness)
        out.append(best)
    return out


def evaluations_to_reach(curve: list[float], target: float) -> int | None:
    return next((i + 1 for i, value in enumerate(curve) if value >= target), None)


def run(label: str, args, selection: str, seed: int) -> Path:
    overrides = [parse_override(o) for o in args.set]
    overrides += [{"name": f"{label}-seed{seed}", "seed": seed, "output_dir": args.output_dir,
                   "budget": {"max_evaluations": args.evaluations, "max_seconds": args.max_seconds},
                   "search": {"selection": selection}}]
    config = load_config(args.config, preset=None if args.config else args.preset, overrides=overrides)
    campaign = Campaign.create(config, on_event=lambda e: None)
    try:
        summary = campaign.run()
    finally:
        campaign.close()
    print(f"{label}: {summary.stop_reason}; {summary.spend['evaluations']} evaluated in {summary.seconds:.0f} s "
          f"-> {summary.directory}", flush=True)
    return summary.directory


def report(campaign_dir: Path, control_dir: Path, targets: list[float]) -> None:
    a, b = best_so_far(campaign_dir), best_so_far(control_dir)
    n = max(len(a), len(b))
    print("\nbest fitness after N evaluations (non-reference programs; 1.0 = tuned AdamW)")
    print(f"{'N':>6} {'campaign':>10} {'control':>10}")
    checkpoints = sorted({min(n, k) for k in (5, 10, 20, 40, 60, 100, 150, 200, 300, 400, 600, 800)} | {n})
    for k in checkpoints:
        fa = a[min(k, len(a)) - 1] if a else float("nan")
        fb = b[min(k, len(b)) - 1] if b else float("nan")
        print(f"{k:>6} {fa:>10.3f} {fb:>10.3f}")
    print("\nevaluations needed to reach a fitness target")
    print(f"{'target':>8} {'campaign':>10} {'control':>10} {'control/campaign':>17}  (>1: the campaign got there first)")
    for target in targets:
        ea, eb = evaluations_to_reach(a, target), evaluations_to_reach(b, target)
        ratio = f"{eb / ea:.2f}x" if ea and eb else "-"
        print(f"{target:>8.3f} {ea if ea else 'never':>10} {eb if eb else 'never':>10} {ratio:>17}")


def heldout_table(directory: Path, label: str) -> None:
    """Held-out scores of the programs a campaign validated (its best and the tuned baselines)."""
    with archive.open(directory, readonly=True) as store:
        rows = [p for p in store.programs() if p.heldout_fitness is not None]
    if not rows:
        print(f"\n{label}: nothing was scored on the held-out suite")
        return
    tasks = sorted({t for p in rows for t in (p.meta.get("heldout_scores") or {})})
    print(f"\n{label}: held-out suite (tasks never used for selection; speed-up over tuned AdamW, fresh seeds)")
    head = f"{'program':<22} {'search':>7} {'confirmed':>9} {'held-out':>14} " + " ".join(f"{t[:12]:>12}" for t in tasks)
    print(head)
    for p in sorted(rows, key=lambda r: -r.heldout_fitness):
        name = p.name or f"#{p.id} ({p.proposer})"
        confirmed = p.confirmed_fitness
        spread = p.meta.get("heldout_spread") or 0.0
        cells = " ".join(f"{(p.meta['heldout_scores'].get(t) or {}).get('score', float('nan')):>12.2f}" for t in tasks)
        conf = f"{confirmed:.3f}" if confirmed is not None else "-"
        print(f"{name:<22} {p.fitness:>7.3f} {conf:>9} {p.heldout_fitness:>7.3f} ± {spread:.3f} {cells}")


def winner_row(directory: Path) -> tuple[str, float | None, float | None, float | None]:
    """The campaign's winner (best confirmed proposed program): id, measured, fresh-seed and
    held-out fitness."""
    with archive.open(directory, readonly=True) as store:
        proposed = [p for p in store.programs(status="evaluated")
                    if p.proposer != "reference" and p.confirmed_fitness is not None]
        best = max(proposed, key=lambda p: (p.confirmed_fitness, -p.id), default=None)
    if best is None:
        return "-", None, None, None
    return f"#{best.id}", best.fitness, best.confirmed_fitness, best.heldout_fitness


def summary_across_seeds(pairs: list[tuple[Path, Path]]) -> None:
    def cell(value: float | None) -> str:
        return f"{value:.3f}" if value is not None else "-"

    print("\nwinners across seeds (best confirmed proposed program of each run; 1.0 = tuned AdamW)")
    print(f"{'pair':>4} {'arm':<9} {'winner':>7} {'measured':>9} {'fresh':>7} {'held-out':>9}  campaign")
    for i, pair in enumerate(pairs, 1):
        for arm, directory in zip(("campaign", "control"), pair):
            pid, measured, fresh, heldout = winner_row(directory)
            print(f"{i:>4} {arm:<9} {pid:>7} {cell(measured):>9} {cell(fresh):>7} {cell(heldout):>9}  {directory.name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--config", default=None, help="a campaign TOML file (instead of a preset)")
    parser.add_argument("--evaluations", type=int, default=60)
    parser.add_argument("--max-seconds", type=float, default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one campaign/control pair per seed")
    parser.add_argument("--targets", type=float, nargs="+", default=[0.9, 1.0, 1.05, 1.1, 1.2])
    parser.add_argument("--output-dir", default="campaigns/search-efficiency")
    parser.add_argument("--set", action="append", default=[], help="config override a.b=value")
    parser.add_argument("--compare", nargs=2, action="append", metavar=("CAMPAIGN_DIR", "CONTROL_DIR"),
                        help="report existing runs instead (repeat for one pair per seed)")
    args = parser.parse_args()
    if args.compare:
        pairs = [(Path(a), Path(b)) for a, b in args.compare]
        for a, b in pairs:
            if not (a / "archive.db").is_file() or not (b / "archive.db").is_file():
                parser.error(f"--compare {a} {b}: both must be campaign directories (holding archive.db)")
    else:
        pairs = [(run("campaign", args, "pareto", seed), run("control", args, "random", seed)) for seed in args.seeds]
    for i, (campaign_dir, control_dir) in enumerate(pairs, 1):
        if len(pairs) > 1:
            print(f"\n=== pair {i}: {campaign_dir.name} vs {control_dir.name}")
        report(campaign_dir, control_dir, args.targets)
        heldout_table(campaign_dir, "campaign")
        heldout_table(control_dir, "control")
    summary_across_seeds(pairs)


if __name__ == "__main__":
    main()
