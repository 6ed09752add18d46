"""The loss-curve panels: the best programs against the tuned baselines on every tier.

One panel per (tier, task): the search tier's tasks, then the validation tier's (programs that
were confirmed) and the test tier's (scored at the end of the run). Each panel draws the
programs' mean measured curves and the tuned baselines' on the same seeds: from the archived
reference programs when the campaign seeded them and scored them on that tier, else from the
run cache (the evaluator computed them there to score the programs). Validation curves are drawn
when every line of a panel has one (that is what the scores measure, with tuned AdamW's target
as a dotted line); otherwise training-loss curves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from archive.store import ProgramRecord
from discover import report_plots as plots
from discover.report_runs import RunReader
from sandbox.evaluate import BASELINES, BaselineReference

TIERS = (("search", "search"), ("validation", "validation"), ("test", "test"))
POINTS = 64
"""Points kept of a baseline curve read from the run cache (one per step there)."""


def tier_scores(rec: ProgramRecord, tier: str) -> dict:
    """``rec``'s per-task results on ``tier`` (search: its scores; else what its meta holds)."""
    if tier == "search":
        return rec.scores or {}
    key = {"validation": "validation_scores", "test": "heldout_scores"}[tier]
    return (rec.meta or {}).get(key) or {}


def _thin(values: Sequence[float], points: int = POINTS) -> list[float]:
    if len(values) <= points:
        return [float(v) for v in values]
    step = (len(values) - 1) / (points - 1)
    return [float(values[round(i * step)]) for i in range(points)]


def _from_entry(entry: dict, val: bool) -> tuple[list[float], list[float]] | None:
    if val:
        if entry.get("val_curve") and entry.get("val_steps"):
            return list(entry["val_curve"]), [float(s) for s in entry["val_steps"]]
        return None
    return (list(entry["curve"]), []) if entry.get("curve") else None


def _from_reference(ref: BaselineReference, val: bool) -> tuple[list[float], list[float]]:
    if val:
        return list(ref.val_curve), [float(s) for s in ref.val_steps]
    curve = _thin(ref.train_curve)
    return curve, []


def _program_label(rec: ProgramRecord) -> str:
    if rec.proposer == "reference":
        return f"{rec.name or '#' + str(rec.id)} (best program)"
    return f"#{rec.id} ({rec.proposer})"


def curve_panels(shown: Sequence[ProgramRecord], baselines: Mapping[str, ProgramRecord],
                 reader: RunReader, seeds: Mapping[str, tuple[int, ...]]) -> list[plots.Panel]:
    """Panels for the programs ``shown`` (best first) on every tier they have results on.
    ``baselines``: archived references by baseline name; ``seeds``: each tier's measurement
    seeds (the baselines' curves from the run cache are looked up on them)."""
    panels = []
    for tier, suffix in TIERS:
        tasks: dict[str, int] = {}
        for rec in shown:
            for task, entry in tier_scores(rec, tier).items():
                if isinstance(entry, dict) and (entry.get("curve") or entry.get("val_curve")):
                    tasks.setdefault(task, int(entry.get("steps") or len(entry.get("curve") or [])))
        for task, steps in tasks.items():
            panel = _panel(tier, task, steps, shown, baselines, reader, seeds.get(tier, ()))
            if tier != "search":
                panel.title = f"{task} ({suffix})"
            panels.append(panel)
    return panels


def _panel(tier: str, task: str, steps: int, shown: Sequence[ProgramRecord], baselines: Mapping[str, ProgramRecord],
           reader: RunReader, seeds: tuple[int, ...]) -> plots.Panel:
    entries = []  # (label, style, entry-or-reference)
    for rank, rec in enumerate(shown):
        entry = tier_scores(rec, tier).get(task)
        if isinstance(entry, dict):
            entries.append((_program_label(rec), {"color": plots.program_color(rank)}, entry))
    for name in BASELINES:
        ref = baselines.get(name)
        if ref is not None and ref in shown:
            continue
        source = tier_scores(ref, tier).get(task) if ref is not None else None
        if not isinstance(source, dict):
            source = reader.baseline_reference(name, task, seeds) if seeds else None
        if source is not None:
            entries.append((f"{name} (tuned)", {**plots.baseline_style(name), "linewidth": 1.1}, source))
    val = all(isinstance(s, BaselineReference) or _from_entry(s, True) is not None for _, _, s in entries)
    series = []
    for label, style, source in entries:
        got = _from_reference(source, val) if isinstance(source, BaselineReference) else _from_entry(source, val)
        if got is not None:
            series.append(plots.Series(label, got[0], style, got[1]))
    target = None
    if val:
        targets = [s.get("target") for _, _, s in entries if isinstance(s, dict) and s.get("target") is not None]
        target = float(targets[0]) if targets else None
    return plots.Panel(task, steps, series, "validation loss" if val else "training loss", target)
