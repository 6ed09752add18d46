"""Learning-rate sensitivity: each top program's final value at every learning rate of the
grid, beside tuned AdamW's, one panel per search task.

Nothing is trained here: the grid was already run during LR selection, and
:class:`discover.report_runs.RunReader` reads those runs back (validation values from the run
cache, or the archive's final training losses where the cache is not on this machine). A flat
curve means a rule that works over a wide range of learning rates; a narrow valley, one that
needs its learning rate tuned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from archive.store import ProgramRecord
from discover import report_plots as plots
from discover.report_runs import LRCurve, RunReader
from sandbox.evaluate import REFERENCE_BASELINE

MEASURES = {"validation": "final validation value", "train": "final training loss"}


@dataclass
class SensitivityPanel:
    task: str
    measure: str  # validation | train
    curves: list[LRCurve]
    styles: list[dict] = field(default_factory=list)


def gather(reader: RunReader, programs: Sequence[ProgramRecord], colors: Sequence[str],
           adamw: ProgramRecord | None) -> list[SensitivityPanel]:
    """One panel per search task any of ``programs`` was fully evaluated on. ``adamw``: the
    archived AdamW reference, if the campaign seeded it (else AdamW comes from the run cache)."""
    per_program = [(rec, color, reader.program_curves(rec)) for rec, color in zip(programs, colors)
                   if rec is not adamw]
    tasks = list(dict.fromkeys(t for _, _, curves in per_program for t in curves))
    panels = []
    for task in tasks:
        curves, styles = [], []
        for rec, color, by_task in per_program:
            if task in by_task:
                curves.append(by_task[task])
                styles.append({"color": color, "linewidth": 1.6, "marker": "o", "markersize": 3.5})
        base = (reader.program_curves(adamw).get(task) if adamw is not None else None) \
            or reader.baseline_curve(REFERENCE_BASELINE, task)
        if base is not None:
            base.label = "AdamW (tuned baseline)"
            curves.append(base)
            styles.append({**plots.baseline_style(REFERENCE_BASELINE), "linewidth": 1.4, "marker": "s",
                           "markersize": 3})
        measure = "validation" if all(c.measure == "validation" for c in curves) else "train"
        if measure == "train":  # one measure per panel: re-read every series from the archive
            keep = []
            for curve, style, rec in zip(curves, styles, [r for r, _, bt in per_program if task in bt] + [adamw]):
                if curve.measure == "train":
                    keep.append((curve, style))
                elif rec is not None and task in (again := reader.program_curves(rec, cache=False)):
                    again[task].label = curve.label
                    keep.append((again[task], style))
            curves, styles = [c for c, _ in keep], [s for _, s in keep]
        if curves:
            panels.append(SensitivityPanel(task, measure, curves, styles))
    return panels


def figure(panels: Sequence[SensitivityPanel], ncols: int = 3) -> str:
    """Small multiples: final value against learning rate (log x); the selected learning rate
    is the large marker, a diverged run an x at the top of the axis."""
    fig, axes, ncols = plots.small_multiples(len(panels), ncols, 2.6)
    legend: dict[str, object] = {}
    for i, (ax, panel) in enumerate(zip(axes, panels)):
        values = [v for c in panel.curves for v in c.values if v is not None]
        log = plots.use_log(values)
        lo, hi = plots.robust_limits(values, log) if values else (0.1, 1.0)
        top = hi * 1.4 if log else hi + 0.08 * (hi - lo)
        for curve, style in zip(panel.curves, panel.styles):
            xs = np.asarray(curve.lrs, dtype=np.float64)
            ys = np.asarray([np.nan if v is None else v for v in curve.values], dtype=np.float64)
            (line,) = ax.plot(xs, ys, **style)
            legend.setdefault(curve.label, line)
            if curve.best_lr is not None and curve.best_lr in curve.lrs:
                j = curve.lrs.index(curve.best_lr)
                if np.isfinite(ys[j]):
                    ax.plot([xs[j]], [ys[j]], marker="o", markersize=8, markerfacecolor="none",
                            markeredgecolor=style.get("color", "#333"), markeredgewidth=1.5, linestyle="none")
            if curve.diverged:
                ax.plot(curve.diverged, [top] * len(curve.diverged), marker="x", linestyle="none",
                        color=style.get("color", "#333"), markersize=5, clip_on=False)
        ax.set_xscale("log")
        if log:
            ax.set_yscale("log")
            ax.set_ylim(lo / 1.15, top * 1.1)
        elif values:
            ax.set_ylim(lo - 0.04 * (hi - lo), top + 0.04 * (hi - lo))
        note = plots.clip_note(np.asarray(values), lo, hi) if values else ""
        ax.set_title(panel.task)
        ax.set_xlabel("learning rate" + (f"  ({note})" if note else ""))
        if i % ncols == 0 or panel.measure != panels[i - 1].measure:
            ax.set_ylabel(MEASURES[panel.measure])
    return plots.finish_small_multiples(fig, legend)
