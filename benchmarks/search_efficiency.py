"""Search efficiency: evaluations needed to reach a fitness target, campaign vs random search.

Runs two campaigns with the same budget, seed and evaluation protocol, one after the other:

* ``campaign``: the offline mutation proposer with Pareto parent selection (the default);
* ``control``:  the same mutations applied to the seed (reference) programs only, with no
  selection at all (``search.selection = "random"``).

Then prints the best fitness reached after every N evaluations for both, and, for each target,
how many evaluations each needed to first reach it. Fitness here is the full-suite fitness of
non-reference programs (the references are the same in both runs).

    python benchmarks/search_efficiency.py [--preset quick] [--evaluations 60] [--seed 0]
        [--targets 1.0 1.05 1.1] [--output-dir /tmp/search-efficiency] [--set a.b=v ...]

Existing campaign directories can be compared without rerunning them:

    python benchmarks/search_efficiency.py --compare CAMPAIGN_DIR CONTROL_DIR
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


def run(label: str, args, selection: str) -> Path:
    overrides = [parse_override(o) for o in args.set]
    overrides += [{"name": f"{label}", "seed": args.seed, "output_dir": args.output_dir,
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
    print(f"{'target':>8} {'campaign':>10} {'control':>10} {'ratio':>8}")
    for target in targets:
        ea, eb = evaluations_to_reach(a, target), evaluations_to_reach(b, target)
        ratio = f"{eb / ea:.2f}x" if ea and eb else "-"
        print(f"{target:>8.3f} {ea if ea else 'never':>10} {eb if eb else 'never':>10} {ratio:>8}")


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--config", default=None, help="a campaign TOML file (instead of a preset)")
    parser.add_argument("--evaluations", type=int, default=60)
    parser.add_argument("--max-seconds", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--targets", type=float, nargs="+", default=[0.9, 1.0, 1.05, 1.1, 1.2])
    parser.add_argument("--output-dir", default="campaigns/search-efficiency")
    parser.add_argument("--set", action="append", default=[], help="config override a.b=value")
    parser.add_argument("--compare", nargs=2, metavar=("CAMPAIGN_DIR", "CONTROL_DIR"))
    args = parser.parse_args()
    if args.compare:
        report(Path(args.compare[0]), Path(args.compare[1]), args.targets)
        heldout_table(Path(args.compare[0]), "campaign")
        heldout_table(Path(args.compare[1]), "control")
        return
    campaign_dir = run("campaign", args, "pareto")
    control_dir = run("control", args, "random")
    report(campaign_dir, control_dir, args.targets)
    heldout_table(campaign_dir, "campaign")
    heldout_table(control_dir, "control")


if __name__ == "__main__":
    main()
