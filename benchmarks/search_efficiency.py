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
    """Best full-suite fitness of a proposed (non-reference) program after each evaluation, counted
    as the campaign's budget counts them: duplicates and programs stopped by the proposal check or
    the probe (which run no task) are not evaluations."""
    with archive.open(directory, readonly=True) as store:
        rows = [p for p in store.programs(sort="date") if p.proposer != "reference"]
        cheap = {p.id for p in rows if p.status == "failed"
                 and all(f.stage in ("proposal", "probe") for f in store.failures(p.id))}
    rows.sort(key=lambda p: p.meta.get("proposal_index", 0))
    best, out = float("-inf"), []
    for p in rows:
        if p.status not in ("evaluated", "failed") or p.id in cheap:
            continue
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


def print_table(title: str, headers: list[str], rows: list[list[str]], markdown: bool) -> None:
    """Print a table as aligned text, or as a GitHub markdown table (``--markdown``)."""
    print(f"\n{title}\n")
    if markdown:
        print("| " + " | ".join(headers) + " |")
        print("|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
        return
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    for line in [headers, *rows]:
        print("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths))))


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None or value != value or value == float("-inf") else f"{value:.{digits}f}"


def report(pairs: list[tuple[Path, Path]], targets: list[float], markdown: bool) -> None:
    """Best fitness after N evaluations, and evaluations to reach each target, per pair."""
    curves = [(best_so_far(a), best_so_far(b)) for a, b in pairs]
    n = max(max(len(a), len(b)) for a, b in curves)
    checkpoints = sorted({min(n, k) for k in (10, 20, 40, 60, 100, 150, 200, 300, 400, 500, 600, 700, 800)} | {n})
    tag = (lambda i: f" (seed pair {i})") if len(pairs) > 1 else (lambda i: "")
    headers = ["evaluations"] + [h for i in range(1, len(pairs) + 1) for h in (f"campaign{tag(i)}", f"control{tag(i)}")]
    rows = []
    for k in checkpoints:
        row = [str(k)]
        for a, b in curves:
            row += [_num(a[k - 1]) if k <= len(a) else "", _num(b[k - 1]) if k <= len(b) else ""]
        rows.append(row)
    print_table("best search fitness after N evaluations (proposed programs, measured; 1.0 = tuned AdamW)",
                headers, rows, markdown)
    headers = ["target"] + [h for i in range(1, len(pairs) + 1) for h in (f"campaign{tag(i)}", f"control{tag(i)}")]
    rows = []
    for target in targets:
        row = [f"{target:.2f}"]
        for a, b in curves:
            row += [str(evaluations_to_reach(x, target) or "never") for x in (a, b)]
        rows.append(row)
    print_table("evaluations needed to reach a search fitness target (fewer is better)", headers, rows, markdown)


def heldout_table(directory: Path, label: str, markdown: bool) -> None:
    """Held-out scores of the programs a campaign validated (its best and the tuned baselines)."""
    with archive.open(directory, readonly=True) as store:
        rows = [p for p in store.programs() if p.heldout_fitness is not None]
    if not rows:
        print(f"\n{label}: nothing was scored on the held-out suite")
        return
    tasks = sorted({t for p in rows for t in (p.meta.get("heldout_scores") or {})})
    headers = ["program", "search", "fresh seeds", "held-out", *tasks]
    body = []
    for p in sorted(rows, key=lambda r: -r.heldout_fitness):
        name = f"{p.name} (tuned)" if p.proposer == "reference" else f"{label} #{p.id}"
        spread = p.meta.get("heldout_spread") or 0.0
        body.append([name, _num(p.fitness), _num(p.confirmed_fitness), f"{p.heldout_fitness:.3f} ± {spread:.3f}",
                     *(_num((p.meta["heldout_scores"].get(t) or {}).get("score"), 2) for t in tasks)])
    print_table(f"{label} ({directory.name}): held-out suite, speed-up over tuned AdamW on tasks never used "
                "for selection (± = spread over seeds 100-101)", headers, body, markdown)


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


def summary_across_seeds(pairs: list[tuple[Path, Path]], markdown: bool) -> None:
    rows = []
    for i, pair in enumerate(pairs, 1):
        for arm, directory in zip(("campaign", "control"), pair):
            pid, measured, fresh, heldout = winner_row(directory)
            rows.append([f"{arm} {pid}", str(i), _num(measured), _num(fresh), _num(heldout), directory.name])
    print_table("winners (the best proposed program confirmed on fresh seeds, per run; 1.0 = tuned AdamW)",
                ["winner", "seed pair", "search", "fresh seeds", "held-out", "run"], rows, markdown)


def plot(pairs: list[tuple[Path, Path]], path: Path) -> None:
    """Best search fitness against evaluations, every run on one figure (PNG or SVG by suffix)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    styles = ["-", "--", ":", "-."]
    for i, (campaign_dir, control_dir) in enumerate(pairs):
        for arm, directory, color in (("campaign (Pareto)", campaign_dir, "tab:blue"),
                                      ("control (random)", control_dir, "tab:orange")):
            curve = best_so_far(directory)
            label = f"{arm}, seed pair {i + 1}" if len(pairs) > 1 else arm
            ax.step(range(1, len(curve) + 1), curve, where="post", color=color,
                    linestyle=styles[i % len(styles)], label=label)
    ax.axhline(1.0, color="0.4", linewidth=0.8)
    ax.text(1, 1.0, " tuned AdamW", va="bottom", fontsize=8, color="0.3")
    ax.set_xlabel("programs evaluated")
    ax.set_ylabel("best search fitness (measured)")
    ax.set_title("search fitness vs evaluations (held-out results: see the tables)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"\nwrote {path}")


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
    parser.add_argument("--plot", type=Path, help="also draw the fitness curves to this PNG/SVG file")
    parser.add_argument("--markdown", action="store_true", help="print the tables as markdown (for results/README.md)")
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
        print(f"\nseed pair {i}: campaign {campaign_dir} vs control {control_dir}")
    report(pairs, args.targets, args.markdown)
    for campaign_dir, control_dir in pairs:
        heldout_table(campaign_dir, "campaign", args.markdown)
        heldout_table(control_dir, "control", args.markdown)
    summary_across_seeds(pairs, args.markdown)
    if args.plot:
        plot(pairs, args.plot)


if __name__ == "__main__":
    main()
